"""A user's own domain as plain folders, source or target (README, "Your own data"): images found by a glob under
the root (``data.<role>.images``, e.g. ``frames/{split}/**/*.jpg``; ``{split}`` stands for train and val, and
without it every image is a train image), each image's mask by a pattern (``data.<role>.masks``, e.g.
``masks/{split}/{stem}.png``; ``{stem}``, ``{name}``, ``{split}`` and ``{dir}``, the image's folder under the
root), and a class file (``data.<role>.classes``, ``classfile.py``) that says what the mask values mean. An image
without a mask is unlabelled. As the target, the class file's classes are the task's; a source's classes map to the
target's by name (or the class file's ``target:``), and a source class the target lacks is ignored. Predictions
are written in the masks' own values (or colours)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from stages.street.datasets.classes import IGNORE, Sample, png_name
from stages.street.datasets.classfile import ClassFile, parse_class_file, read_class_file
from stages.tasks import ClassSet

LAYOUT = "images matching data.<role>.images, masks matching data.<role>.masks, classes in data.<role>.classes"
ROLES = ("source", "target")
KEYS = ("images", "masks", "classes")  # the data.<role> keys it reads; images and classes are required
REQUIRED = ("images", "classes")
MAX_LABEL_ID = 255
SPLITS = ("train", "val")
UNKNOWN = -1  # a mask value the class file does not name


def samples(root: Path, name: str, domain: Any = None) -> list[Sample]:
    """Every image the glob matches, with the mask the pattern names (None where there is no such file);
    ValueError naming the key for a glob that matches nothing or two images with one stem."""
    pattern = domain.images
    splits = SPLITS if "{split}" in pattern else ("train",)
    out, stems = [], {}
    for split in splits:
        images = sorted(p for p in root.glob(pattern.replace("{split}", split)) if p.is_file())
        for img in images:
            key = (split, img.stem)
            if key in stems:
                raise ValueError(f"images: two images with the stem {img.stem!r}: {stems[key]} and {img}")
            stems[key] = img
            out.append(Sample(f"{name}/{split}/{img.stem}", split, img, _mask(root, img, split, domain.masks)))
    if not out:
        raise ValueError(f"images: {pattern!r} matches no file under {root}")
    return out


def _mask(root: Path, img: Path, split: str, pattern: str | None) -> Path | None:
    if pattern is None:
        return None
    path = root / pattern.format(stem=img.stem, name=img.name, split=split, dir=img.parent.relative_to(root).as_posix())
    return path if path.exists() else None


@dataclass(frozen=True)
class FolderLabels:
    """A folder domain's masks read into the task's class ids and predictions written back in the masks' values
    (picklable: ingest's processes and the loader's workers hold one)."""

    path: str  # the class file, for messages
    rgb: bool
    keys: np.ndarray  # sorted known mask values (rgb: packed 0xRRGGBB)
    ids: np.ndarray  # the class id of each key (int16; IGNORE for an ignored value)
    written: np.ndarray  # class id -> the mask value (or colour) a prediction is written as

    def read_raw(self, path: Path | str) -> np.ndarray:
        """The mask as stored (rgb: (H, W, 3)); ValueError naming the file for a mask of the wrong kind."""
        with Image.open(path) as im:
            if self.rgb:
                if im.mode not in ("RGB", "RGBA", "P"):
                    raise ValueError(f"{path}: a {im.mode} image, not an RGB colour mask (the class file "
                                     f"{self.path} says masks: rgb)")
                return np.asarray(im.convert("RGB"))
            if im.mode not in ("L", "P"):
                raise ValueError(f"{path}: a {im.mode} image, not a mask of values 0-255 (a colour mask needs "
                                 f"masks: rgb in {self.path})")
            return np.asarray(im)

    def _lookup(self, raw: np.ndarray) -> np.ndarray:
        flat = _packed(raw) if self.rgb else raw.astype(np.int64)
        pos = np.clip(np.searchsorted(self.keys, flat), 0, len(self.keys) - 1)
        return np.where(self.keys[pos] == flat, self.ids[pos], UNKNOWN)

    def to_ids(self, raw: np.ndarray) -> np.ndarray:
        """Class ids (uint8, 255 ignored; an unknown value ignored too)."""
        ids = self._lookup(raw)
        return np.where(ids < 0, IGNORE, ids).astype(np.uint8)

    def read(self, path: Path | str) -> np.ndarray:
        return self.to_ids(self.read_raw(path))

    def problem(self, raw: np.ndarray) -> str | None:
        """What is wrong with a mask: the values the class file does not know, each with its pixel count."""
        unknown = self._lookup(raw) == UNKNOWN
        if not unknown.any():
            return None
        values, counts = np.unique((_packed(raw) if self.rgb else raw)[unknown], return_counts=True)
        shown = ", ".join(f"{_show(int(v), self.rgb)} ({int(c)} pixels)" for v, c in zip(values[:5], counts[:5],
                                                                                         strict=True))
        return f"mask value(s) not in the class file {self.path}: {shown}" + (" …" if len(values) > 5 else "")

    def encode(self, pred: np.ndarray) -> np.ndarray:
        """Class ids -> the masks' own values (rgb: colours); an ignored id -> the first ignored value (or 0)."""
        return self.written[np.minimum(pred, len(self.written) - 1)]

    def name(self, stem: str) -> str:
        return png_name(stem)


def _packed(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def _show(value: int, rgb: bool) -> str:
    return str([value >> 16, (value >> 8) & 255, value & 255]) if rgb else str(value)


def _key(value: int | tuple, rgb: bool) -> int:
    return (value[0] << 16) | (value[1] << 8) | value[2] if rgb else int(value)


def labels(data: Any, role: str) -> FolderLabels:
    """The codec of ``data.<role>``'s masks into the task's classes (the target's, whatever its dataset)."""
    from stages.street.datasets import class_set

    dom = getattr(data, role)
    return codec(read_class_file(dom.classes), str(dom.classes), class_set(data).names)


def codec(spec: ClassFile, path: str, names: tuple[str, ...]) -> FolderLabels:
    """The codec of masks described by ``spec`` (read from ``path``) into the classes ``names``."""
    rgb = spec.masks == "rgb"
    table: dict[int, int] = {_key(v, rgb): IGNORE for v in spec.ignore}
    for k in range(len(spec.classes)):
        target = spec.target_of(k)
        for v in spec.values_of(k):
            table[_key(v, rgb)] = names.index(target) if target in names else IGNORE
    keys = np.array(sorted(table), dtype=np.int64)
    return FolderLabels(path, rgb, keys, np.array([table[k] for k in keys], dtype=np.int16),
                        _written(spec, rgb, names))


def _written(spec: ClassFile, rgb: bool, names: tuple[str, ...]) -> np.ndarray:
    """Class id of the task -> the first mask value of the class file's class that counts as it; the last row,
    for ignored ids: the first ignored value (or 0)."""
    blank = spec.ignore[0] if spec.ignore else ((0, 0, 0) if rgb else 0)
    out = [blank] * (len(names) + 1)
    for k in range(len(spec.classes)):
        target = spec.target_of(k)
        if target in names and out[names.index(target)] == blank:
            out[names.index(target)] = spec.values_of(k)[0]
    return np.array(out, dtype=np.uint8)


def class_set(domain: Any) -> ClassSet:
    """The class file's classes as the task's: names, colours, 255 ignored, mIoU over all and over each subset."""
    return classes_of(read_class_file(domain.classes))


def classes_of(spec: ClassFile) -> ClassSet:
    names = spec.names
    subsets: dict[str | int, tuple[int, ...]] = {len(names): tuple(range(len(names)))}
    subsets.update({key: tuple(names.index(m) for m in members) for key, members in spec.subsets.items()})
    return ClassSet(names, np.array([c.colour for c in spec.classes], dtype=np.uint8), IGNORE, subsets)


def prediction_format(domain: Any) -> dict[str, Any]:
    """What a checkpoint keeps of its target to write predictions without the files: the class file's text."""
    return {"classes": Path(domain.classes).read_text(), "classes_path": str(domain.classes)}


def from_prediction_format(kept: dict[str, Any]) -> tuple[ClassSet, FolderLabels]:
    """The class set and the codec a checkpoint's ``prediction_format`` describes."""
    spec = parse_class_file(kept["classes"], kept["classes_path"])
    classes = classes_of(spec)
    return classes, codec(spec, kept["classes_path"], classes.names)


def domain_keys(data: Any, role: str) -> dict[str, Any]:
    """What ingest's fingerprint reads of a folder domain: its patterns and its class file's content."""
    from pipeline.store import content_hash

    dom = getattr(data, role)
    return {"images": dom.images, "masks": dom.masks,
            "classes": "content blake2b:" + content_hash(Path(dom.classes).read_bytes())}
