"""The registry of the street task's datasets (DESIGN §7): the only list of them, one line per dataset.

A dataset module defines ``LAYOUT`` (what its root holds, for errors), ``ROLES`` (source, target or both),
``samples(root, name, subsets) -> [Sample]`` (every image in its official layout, with the label file it should
have; ``subsets``: ``data.<role>.subsets``, e.g. ACDC's conditions, None for all),
``read_raw(path)`` (a label file as stored), ``to_train_ids(raw)`` (into the task's class ids, 255 ignored) and
``MAX_LABEL_ID`` (a larger stored value is a corrupt file); optionally ``EVAL_SETS`` (the class-set sizes reported
when it is the source; 19), ``encode_prediction(train_ids)`` and ``prediction_name(stem)`` (the format and file
name predictions are written in; Cityscapes labelIds by default), ``PAPER_TABLE3`` (the paper's published Table 3
rows with it as source), ``NEEDS_ROOT`` (false for a generated dataset) and ``LAYOUTS`` (role -> the registered
dataset whose layout a generated dataset is written in). Nothing outside this package compares dataset names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from models.registry import Entry, Registry
from stages.street.datasets.classes import (  # noqa: F401  (the class set, for the modules that read it from here)
    CITYSCAPES_ID_TO_TRAIN,
    CITYSCAPES_LUT,
    CLASS_SETS,
    CLASSES,
    IGNORE,
    PALETTE,
    TRAIN_TO_CITYSCAPES_ID,
    Sample,
    colourise,
    label_ids_name,
    to_label_ids,
)

DATASETS = Registry("dataset", "name", {
    "cityscapes": "stages.street.datasets.cityscapes",
    "gta5": "stages.street.datasets.gta5",
    "synthia": "stages.street.datasets.synthia",
    "acdc": "stages.street.datasets.acdc",
    "bdd100k": "stages.street.datasets.bdd100k",
    "demo": "stages.street.datasets.demo",
}, {"EVAL_SETS": (19,), "encode_prediction": to_label_ids, "prediction_name": label_ids_name, "PAPER_TABLE3": {},
    "NEEDS_ROOT": True, "LAYOUTS": {}, "SUBSETS": (), "SCENE_DESCRIPTIONS": False, "prepare": lambda workdir, data: None,
    "fingerprint_keys": lambda data: {}})
register, names = DATASETS.register, DATASETS.names


def dataset(name: str) -> Entry:
    return DATASETS.get(name)


def layout_of(name: str, role: str) -> str:
    """The registered dataset whose files a domain's root holds: itself, or for a generated dataset the layout it
    is written in for ``role``."""
    return dataset(name).LAYOUTS.get(role, name)


def domain_root(name: str, root: Path | None, role: str, workdir: Path) -> Path:
    """The absolute root of a domain: the configured one, or where a generated dataset writes it."""
    spec = dataset(name)
    return Path(root).expanduser().resolve() if spec.NEEDS_ROOT else spec.root(workdir, role)


def check_domain(role: str, name: str, root: Path | None, subsets: tuple[str, ...] | None = None) -> None:
    """ValueError naming ``<role>.<key>`` when the dataset is not registered, cannot play ``role`` or needs a
    root it was not given."""
    try:
        spec = dataset(name)
    except ValueError as err:
        raise ValueError(f"{role}.{err}") from None
    if role not in spec.ROLES:
        can = " or ".join(n for n in names() if role in dataset(n).ROLES)
        raise ValueError(f"{role}.name: {name} cannot be the {role} (the {role} must be {can})")
    unknown = sorted(set(subsets or ()) - set(spec.SUBSETS))
    if unknown:
        raise ValueError(f"{role}.subsets: {', '.join(unknown)} not among {name}'s ({', '.join(spec.SUBSETS) or 'none'})")
    if spec.NEEDS_ROOT and root is None:
        raise ValueError(f"{role}.root: required for dataset '{name}' (a {name} root holds {spec.LAYOUT})")


def list_samples(layout: str, root: Path, subsets: tuple[str, ...] | None = None) -> list[Sample]:
    """Every image of a dataset in its official layout (of ``subsets`` only, where given), with the label file it
    should have."""
    return dataset(layout).samples(root, layout, subsets)


def read_raw_label(path: Path, layout: str) -> np.ndarray:
    """The label file's values as stored."""
    return dataset(layout).read_raw(Path(path))


def to_train_ids(raw: np.ndarray, layout: str) -> np.ndarray:
    return dataset(layout).to_train_ids(raw)


def load_label(path: Path | str, layout: str) -> np.ndarray:
    """A label file of dataset ``layout`` as the task's class ids: uint8 (H, W), 255 = ignore."""
    return to_train_ids(read_raw_label(Path(path), layout), layout)


def eval_class_sets(source: str) -> tuple[int, ...]:
    """The class-set sizes reported for a source: 19 for GTA5, 16 and 13 for SYNTHIA."""
    return tuple(dataset(source).EVAL_SETS)


def paper_table3(source: str, target: str) -> dict[str, Any]:
    """The paper's Table 3 for this benchmark: {"labelled": counts, "rows": {components: mIoUs}}, or {}."""
    return dataset(source).PAPER_TABLE3.get(target, {}) if source in names() else {}


def dataset_roots(data: Any, workdir: Path) -> dict[str, Path]:
    """Absolute root of the source and target datasets (the demo world lives in the work directory)."""
    return {role: domain_root(dom.name, dom.root, role, workdir)
            for role, dom in (("source", data.source), ("target", data.target))}
