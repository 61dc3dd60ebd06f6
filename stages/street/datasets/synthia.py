"""SYNTHIA-RAND-CITYSCAPES (Ros et al., CVPR 2016), a synthetic source: ``RGB/*.png`` with ``GT/LABELS/*.png``,
16-bit PNGs whose first channel is the class id (as the download unpacks; DAFormer's loader reads it so).
Reported over 16 and 13 classes (no terrain, truck, train; and no wall, fence, pole)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from stages.street.datasets.classes import Sample, flat_samples, lut

LAYOUT = "RGB/*.png with GT/LABELS/*.png"
ROLES = ("source",)
MAX_LABEL_ID = 22
EVAL_SETS = (16, 13)
# SYNTHIA-RAND-CITYSCAPES class id (first channel of the 16-bit label) -> trainId.
SYNTHIA_ID_TO_TRAIN = {3: 0, 4: 1, 2: 2, 21: 3, 5: 4, 7: 5, 15: 6, 9: 7, 6: 8, 1: 10, 10: 11, 17: 12, 8: 13,
                       19: 15, 12: 17, 11: 18}
SYNTHIA_LUT = lut(SYNTHIA_ID_TO_TRAIN, 65536)
PAPER_TABLE3 = {"cityscapes": {"labelled": (100, 200, 500, 1000), "rows": {
    (True, False, False, False): (60.2, 65.3, 71.5, 72.0), (True, True, False, False): (68.7, 70.1, 72.2, 74.7),
    (True, False, True, False): (71.9, 73.0, 74.7, 75.9), (True, False, True, True): (74.9, 76.8, 77.7, 79.2),
    (True, True, True, True): (76.9, 77.2, 78.6, 79.7)}}}


def samples(root: Path, name: str, domain: Any = None) -> list[Sample]:
    return flat_samples(root, name, "RGB", "GT/LABELS")


def read_raw(path: Path) -> np.ndarray:
    """The 16-bit label's first channel (OpenCV reads it unchanged; PIL would make it 8-bit)."""
    import cv2

    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise ValueError("label does not decode")
    return raw[:, :, 2] if raw.ndim == 3 else raw  # OpenCV is BGR(A): the first channel is index 2


def to_train_ids(raw: np.ndarray) -> np.ndarray:
    return SYNTHIA_LUT[raw]
