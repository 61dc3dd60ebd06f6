"""Cityscapes (Cordts et al., CVPR 2016), the target of the paper's benchmarks: ``leftImg8bit/{train,val}/<city>/
<city>_<seq>_<frame>_leftImg8bit.png`` with ``gtFine/{train,val}/<city>/<same>_gtFine_labelIds.png`` (labelIds,
as the official download and ``cityscapesscripts`` lay them out). Predictions are written as labelIds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from stages.street.datasets.classes import CITYSCAPES_LUT, Sample, label_ids_name, read_png, to_label_ids

LAYOUT = "leftImg8bit/{train,val}/<city>/*_leftImg8bit.png with gtFine/{train,val}/<city>/*_gtFine_labelIds.png"
ROLES = ("target",)
MAX_LABEL_ID = 33  # larger ids are corrupt files
read_raw = read_png
encode_prediction = to_label_ids  # labelIds, as the benchmark server reads them
prediction_name = label_ids_name


def samples(root: Path, name: str, domain: Any = None) -> list[Sample]:
    out = []
    for split in ("train", "val"):
        for img in sorted((root / "leftImg8bit" / split).glob("*/*_leftImg8bit.png")):
            stem = img.name.removesuffix("_leftImg8bit.png")
            label = root / "gtFine" / split / img.parent.name / f"{stem}_gtFine_labelIds.png"
            out.append(Sample(f"{name}/{split}/{stem}", split, img, label))
    return out


def to_train_ids(raw: np.ndarray) -> np.ndarray:
    return CITYSCAPES_LUT[raw]
