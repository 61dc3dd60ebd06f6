"""A toy street dataset: ``frames/<split>/<stem>.png`` with ``masks/<split>/<stem>.png`` holding class ids as
they are (Cityscapes trainIds, 255 ignored); predictions written the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from stages.street import datasets
from stages.street.datasets.classes import Sample, as_class_ids, png_name

LAYOUT = "frames/<split>/*.png with masks/<split>/*.png (class ids)"
ROLES = ("source", "target")
MAX_LABEL_ID = 255


def samples(root: Path, name: str, domain: Any = None) -> list[Sample]:
    return [Sample(f"{name}/{p.parent.name}/{p.stem}", p.parent.name, p, root / "masks" / p.parent.name / p.name)
            for p in sorted((root / "frames").glob("*/*.png"))]


def read_raw(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


to_train_ids = encode_prediction = as_class_ids  # the masks hold class ids; predictions are written the same way
prediction_name = png_name


datasets.register("flat_frames", __name__)
