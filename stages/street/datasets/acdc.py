"""ACDC, the Adverse Conditions Dataset with Correspondences (Sakaridis et al., ICCV 2021), a target of MIC, HRDA and
Rein: ``rgb_anon/<condition>/<split>/<sequence>/<stem>_rgb_anon.png`` with
``gt/<condition>/<split>/<sequence>/<stem>_gt_labelTrainIds.png`` (Cityscapes trainIds, 255 ignored), conditions fog,
night, rain and snow (``data.target.subsets`` picks some; all by default). Layout as the download unpacks and as
Rein's and MIC's mmsegmentation configs read it (``img_path="rgb_anon/fog/train"``, ``seg_map_suffix=
"_gt_labelTrainIds.png"``). Predictions are written as Cityscapes labelIds, as its benchmark takes them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stages.street.datasets.classes import Sample, as_class_ids, read_png, to_label_ids

LAYOUT = ("rgb_anon/<condition>/{train,val}/<sequence>/*_rgb_anon.png with "
          "gt/<condition>/{train,val}/<sequence>/*_gt_labelTrainIds.png")
ROLES = ("source", "target")
SUBSETS = ("fog", "night", "rain", "snow")  # the conditions
MAX_LABEL_ID = 255  # trainIds 0..18 and 255
read_raw = read_png
to_train_ids = as_class_ids  # the gt files hold trainIds
encode_prediction = to_label_ids


def samples(root: Path, name: str, domain: Any = None) -> list[Sample]:
    out = []
    for condition in getattr(domain, "subsets", None) or SUBSETS:
        for split in ("train", "val"):
            for img in sorted((root / "rgb_anon" / condition / split).glob("*/*_rgb_anon.png")):
                stem = img.name.removesuffix("_rgb_anon.png")
                label = root / "gt" / condition / split / img.parent.name / f"{stem}_gt_labelTrainIds.png"
                out.append(Sample(f"{name}/{split}/{stem}", split, img, label))
    return out


def prediction_name(stem: str) -> str:
    return f"{stem}_rgb_anon.png"
