"""GTA5 (Richter et al., ECCV 2016), a synthetic source: ``images/*.png`` with ``labels/*.png`` of the same name,
Cityscapes labelIds (as the download unpacks; DAFormer's and HRDA's loaders read it so)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from stages.street.datasets.classes import CITYSCAPES_LUT, Sample, flat_samples, read_png

LAYOUT = "images/*.png with labels/*.png"
ROLES = ("source",)
MAX_LABEL_ID = 33
EVAL_SETS = (19,)  # the class sets reported when it is the source
read_raw = read_png
# (CT, DyCE, VLP, DLG) -> labelled target images -> mIoU, as the paper's Table 3 publishes it (→ Cityscapes)
PAPER_TABLE3 = {"cityscapes": {"labelled": (100, 200, 500, 1000), "rows": {
    (True, False, False, False): (54.5, 58.2, 62.3, 64.6), (True, True, False, False): (63.3, 64.5, 65.9, 68.2),
    (True, False, True, False): (65.6, 66.8, 69.1, 69.9), (True, False, True, True): (70.3, 71.6, 72.1, 73.9),
    (True, True, True, True): (71.1, 72.5, 72.9, 74.8)}}}


def samples(root: Path, name: str, domain: Any = None) -> list[Sample]:
    return flat_samples(root, name, "images", "labels")


def to_train_ids(raw: np.ndarray) -> np.ndarray:
    return CITYSCAPES_LUT[raw]
