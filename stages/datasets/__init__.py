"""What the field knows about GTA5, SYNTHIA and Cityscapes: class sets, id maps, official layouts (DESIGN §6).

Used by ingest (layouts, label checks), train and evaluate (label reading, class names and sets).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

IGNORE = 255

CLASSES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)  # Cityscapes trainIds 0..18

# Cityscapes labelId -> trainId; GTA5 labels are Cityscapes labelIds.
CITYSCAPES_ID_TO_TRAIN = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
                          25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
# SYNTHIA-RAND-CITYSCAPES class id (first channel of the 16-bit label) -> trainId.
SYNTHIA_ID_TO_TRAIN = {3: 0, 4: 1, 2: 2, 21: 3, 5: 4, 7: 5, 15: 6, 9: 7, 6: 8, 1: 10, 10: 11, 17: 12, 8: 13,
                       19: 15, 12: 17, 11: 18}
MAX_LABEL_ID = {"cityscapes": 33, "gta5": 33, "demo": 33, "synthia": 22}  # larger ids are corrupt files

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


def colourise(pred: np.ndarray) -> np.ndarray:
    """(H, W) trainIds -> (H, W, 3) uint8 in the Cityscapes palette; ignored or unknown ids black."""
    return np.where((pred < len(PALETTE))[..., None], PALETTE[np.minimum(pred, len(PALETTE) - 1)], 0).astype(np.uint8)


def to_label_ids(pred: np.ndarray) -> np.ndarray:
    """(H, W) trainIds -> Cityscapes labelIds (uint8), as ``cityscapesscripts``' evaluator and the benchmark
    server read predictions; an ignored or unknown id becomes 0 (unlabeled)."""
    return np.where(pred < len(TRAIN_TO_CITYSCAPES_ID), TRAIN_TO_CITYSCAPES_ID[np.minimum(pred, 18)], 0).astype(np.uint8)


def label_ids_name(stem: str) -> str:
    """The file name of a labelId prediction: the image's own name, ``<city>_<seq>_<frame>_leftImg8bit.png``
    for a Cityscapes image (a stem already ending so keeps it)."""
    stem = stem.removesuffix("_leftImg8bit")
    return f"{stem}_leftImg8bit.png"


def eval_class_sets(source: str) -> tuple[int, ...]:
    """The class-set sizes reported for a source: 19 for GTA5, 16 and 13 for SYNTHIA."""
    return (16, 13) if source == "synthia" else (19,)


def _lut(mapping: dict[int, int], size: int) -> np.ndarray:
    lut = np.full(size, IGNORE, dtype=np.uint8)
    for label_id, train_id in mapping.items():
        lut[label_id] = train_id
    return lut


CITYSCAPES_LUT = _lut(CITYSCAPES_ID_TO_TRAIN, 256)
SYNTHIA_LUT = _lut(SYNTHIA_ID_TO_TRAIN, 65536)
TRAIN_TO_CITYSCAPES_ID = np.array([k for k, _ in sorted(CITYSCAPES_ID_TO_TRAIN.items(), key=lambda kv: kv[1])],
                                  dtype=np.uint8)


def read_raw_label(path: Path, dataset: str) -> np.ndarray:
    """The label file's class ids as stored: 8-bit labelIds, or SYNTHIA's 16-bit first channel."""
    if dataset == "synthia":
        import cv2  # PIL turns 16-bit colour PNGs into 8-bit; OpenCV reads them unchanged

        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if raw is None:
            raise ValueError("label does not decode")
        return raw[:, :, 2] if raw.ndim == 3 else raw  # OpenCV is BGR(A): the first channel is index 2
    with Image.open(path) as im:
        return np.asarray(im)


def to_train_ids(raw: np.ndarray, dataset: str) -> np.ndarray:
    lut = SYNTHIA_LUT if dataset == "synthia" else CITYSCAPES_LUT
    return lut[raw]


def load_label(path: Path | str, dataset: str) -> np.ndarray:
    """A label file as Cityscapes trainIds: uint8 (H, W), 0..18, 255 = ignore.

    ``dataset`` is ``cityscapes``, ``gta5``, ``demo`` (Cityscapes labelIds) or ``synthia`` (16-bit PNG,
    class id in the first channel).
    """
    return to_train_ids(read_raw_label(Path(path), dataset), dataset)


@dataclass(frozen=True)
class Sample:
    image_id: str
    split: str
    image_path: Path
    label_path: Path | None


def _cityscapes(root: Path, name: str) -> list[Sample]:
    samples = []
    for split in ("train", "val"):
        for img in sorted((root / "leftImg8bit" / split).glob("*/*_leftImg8bit.png")):
            stem = img.name.removesuffix("_leftImg8bit.png")
            label = root / "gtFine" / split / img.parent.name / f"{stem}_gtFine_labelIds.png"
            samples.append(Sample(f"{name}/{split}/{stem}", split, img, label))
    return samples


def _flat(root: Path, name: str, images: str, labels: str) -> list[Sample]:
    return [
        Sample(f"{name}/train/{img.stem}", "train", img, root / labels / img.name)
        for img in sorted((root / images).glob("*.png"))
    ]


def list_samples(dataset: str, root: Path) -> list[Sample]:
    """Every image of a dataset in its official layout, with the label file it should have."""
    if dataset == "cityscapes":
        return _cityscapes(root, dataset)
    if dataset == "gta5":
        return _flat(root, dataset, "images", "labels")
    if dataset == "synthia":
        return _flat(root, dataset, "RGB", "GT/LABELS")
    raise ValueError(f"unknown dataset {dataset!r}")
