"""Cityscapes' 19 classes, the class set of every built-in street dataset (GTA5, SYNTHIA, Cityscapes and the demo
world read their labels into these trainIds), and what the dataset modules share (DESIGN §6)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from stages.tasks import colourise as colour_ids

IGNORE = 255

CLASSES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)  # Cityscapes trainIds 0..18

# Cityscapes labelId -> trainId; GTA5 labels are Cityscapes labelIds.
CITYSCAPES_ID_TO_TRAIN = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
                          25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}

# Evaluation class sets: 19 (GTA5), 16 (SYNTHIA: no terrain, truck, train), 13 (also no wall, fence, pole).
CLASS_SETS: dict[int, tuple[int, ...]] = {
    19: tuple(range(19)),
    16: tuple(c for c in range(19) if c not in (9, 14, 16)),
    13: tuple(c for c in range(19) if c not in (3, 4, 5, 9, 14, 16)),
}

# Cityscapes colour palette for prediction PNGs.
PALETTE = np.array([
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
    (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
], dtype=np.uint8)


def colourise(pred: np.ndarray, palette: np.ndarray = PALETTE) -> np.ndarray:
    """(...) class ids -> (..., 3) uint8 colours of ``palette`` (Cityscapes'); ignored or unknown ids black."""
    return colour_ids(pred, palette)


def lut(mapping: dict[int, int], size: int) -> np.ndarray:
    """A look-up table raw id -> trainId, every id not in ``mapping`` ignored."""
    table = np.full(size, IGNORE, dtype=np.uint8)
    for label_id, train_id in mapping.items():
        table[label_id] = train_id
    return table


CITYSCAPES_LUT = lut(CITYSCAPES_ID_TO_TRAIN, 256)
TRAIN_TO_CITYSCAPES_ID = np.array([k for k, _ in sorted(CITYSCAPES_ID_TO_TRAIN.items(), key=lambda kv: kv[1])],
                                  dtype=np.uint8)


def to_label_ids(pred: np.ndarray) -> np.ndarray:
    """(H, W) trainIds -> Cityscapes labelIds (uint8), as ``cityscapesscripts``' evaluator and the benchmark
    server read predictions; an ignored or unknown id becomes 0 (unlabeled)."""
    return np.where(pred < len(TRAIN_TO_CITYSCAPES_ID), TRAIN_TO_CITYSCAPES_ID[np.minimum(pred, 18)], 0).astype(np.uint8)


def label_ids_name(stem: str) -> str:
    """The file name of a labelId prediction: the image's own name, ``<city>_<seq>_<frame>_leftImg8bit.png``
    for a Cityscapes image (a stem already ending so keeps it)."""
    stem = stem.removesuffix("_leftImg8bit")
    return f"{stem}_leftImg8bit.png"


def read_png(path: Path) -> np.ndarray:
    """An 8-bit label PNG as stored."""
    with Image.open(path) as im:
        return np.asarray(im)


@dataclass(frozen=True)
class Sample:
    image_id: str
    split: str
    image_path: Path
    label_path: Path | None


def flat_samples(root: Path, name: str, images: str, labels: str) -> list[Sample]:
    """A flat layout: every ``<images>/*.png`` a train image, its label ``<labels>/<same name>``."""
    return [Sample(f"{name}/train/{img.stem}", "train", img, root / labels / img.name)
            for img in sorted((root / images).glob("*.png"))]


def as_class_ids(values: np.ndarray) -> np.ndarray:
    """Masks (or predictions) that hold class ids as they are (trainIds, 255 ignored): read and written unchanged."""
    return values.astype(np.uint8)


def png_name(stem: str) -> str:
    """A prediction named after its image: ``<stem>.png``."""
    return f"{stem}.png"
