"""Synapse multi-organ CT (MICCAI 2015 Multi-Atlas Labeling Beyond the Cranial Vault), in any of the layouts its
users keep it in (``stages.synapse.cases.LAYOUTS``): the download as it unpacks (``RawData/Training/img/
img00XX.nii.gz``, ``RawData/Training/label/label00XX.nii.gz``; ``root`` may be the folder holding ``RawData/``,
``RawData/`` itself or ``Training/``), the renamed ``imagesTr/``+``labelsTr/`` that MONAI's model zoo and DHC's
``code/data/preprocess.py`` read, or DHC's ``npy/00XX_image.npy`` + ``00XX_label.npy`` that it writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stages.synapse.cases import detect_layout


def root(cfg: Any, workdir: Path) -> Path:
    return Path(cfg.volumes.data.root).expanduser().resolve()


def layout(root: Path, requested: str) -> str:
    return detect_layout(root, requested)
