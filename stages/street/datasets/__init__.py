"""The registry of the street task's datasets (DESIGN §7): the only list of them, one line per dataset.

A dataset module defines ``LAYOUT`` (what its root holds, for errors), ``ROLES`` (source, target or both),
``samples(root, name, domain) -> [Sample]`` (every image in its official layout, with the label file it should
have; ``domain``: the ``data.<role>`` section, e.g. ``domain.subsets``, ACDC's conditions, None for all),
``read_raw(path)`` (a label file as stored), ``to_train_ids(raw)`` (into the task's class ids, 255 ignored) and
``MAX_LABEL_ID`` (a larger stored value is a corrupt file); optionally ``EVAL_SETS`` (the class-set sizes reported
when it is the source; 19), ``encode_prediction(train_ids)`` and ``prediction_name(stem)`` (the format and file
name predictions are written in; Cityscapes labelIds by default), ``PAPER_TABLE3`` (the paper's published Table 3
rows with it as source), ``NEEDS_ROOT`` (false for a generated dataset) and ``LAYOUTS`` (role -> the registered
dataset whose layout a generated dataset is written in), ``KEYS`` (the ``data.<role>`` keys of its own, e.g. the
folder's ``images``, ``masks``, ``classes``; ``REQUIRED`` among them), ``labels(data, role)`` (a codec of its own
instead of the functions above: ``read``, ``read_raw``, ``problem``, ``encode``, ``name``; the folder's),
``class_set(domain)`` (as the target, the task's classes instead of Cityscapes' 19; with it
``prediction_format(domain)`` and ``from_prediction_format(kept)``, what a checkpoint keeps to write predictions)
and ``domain_keys(data, role)``
(what ingest's fingerprint reads of the domain besides its root). Nothing outside this package compares dataset
names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from models.registry import Entry, Registry
from stages.tasks import ClassSet
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
    "folder": "stages.street.datasets.folder",
}, {"EVAL_SETS": (19,), "encode_prediction": to_label_ids, "prediction_name": label_ids_name, "PAPER_TABLE3": {},
    "NEEDS_ROOT": True, "LAYOUTS": {}, "SUBSETS": (), "SCENE_DESCRIPTIONS": False, "prepare": lambda workdir, data: None,
    "fingerprint_keys": lambda data: {}, "KEYS": (), "REQUIRED": (), "labels": None, "class_set": None,
    "domain_keys": lambda data, role: {}, "prediction_format": None, "from_prediction_format": None})
register, names = DATASETS.register, DATASETS.names
CITYSCAPES = ClassSet(CLASSES, PALETTE, IGNORE, dict(CLASS_SETS))
DOMAIN_KEYS = ("images", "masks", "classes")  # data.<role> keys that only some datasets read (their KEYS)


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


def check_domain(role: str, name: str, root: Path | None, subsets: tuple[str, ...] | None = None,
                 domain: Any = None) -> None:
    """ValueError naming ``<role>.<key>`` when the dataset is not registered, cannot play ``role``, needs a
    root (or a key of its own) it was not given, or is given a key it does not read."""
    try:
        spec = dataset(name)
    except ValueError as err:
        raise ValueError(f"{role}.{err}") from None
    for key in DOMAIN_KEYS:
        given = getattr(domain, key, None) is not None
        if given and key not in spec.KEYS:
            raise ValueError(f"{role}.{key}: dataset '{name}' does not read it (only {_readers(key)} reads it)")
        if not given and key in spec.REQUIRED:
            raise ValueError(f"{role}.{key}: required for dataset '{name}' ({spec.LAYOUT})")
    if role not in spec.ROLES:
        can = " or ".join(n for n in names() if role in dataset(n).ROLES)
        raise ValueError(f"{role}.name: {name} cannot be the {role} (the {role} must be {can})")
    unknown = sorted(set(subsets or ()) - set(spec.SUBSETS))
    if unknown:
        raise ValueError(f"{role}.subsets: {', '.join(unknown)} not among {name}'s ({', '.join(spec.SUBSETS) or 'none'})")
    if spec.NEEDS_ROOT and root is None:
        raise ValueError(f"{role}.root: required for dataset '{name}' (a {name} root holds {spec.LAYOUT})")


def _readers(key: str) -> str:
    return ", ".join(n for n in names() if key in dataset(n).KEYS) or "no dataset"


def list_samples(layout: str, root: Path, domain: Any = None, prefix: str | None = None) -> list[Sample]:
    """Every image of a dataset in its official layout (``domain``: its ``data.<role>`` section, e.g. its
    ``subsets``), with the label file it should have; image ids start with ``prefix`` (default: the layout)."""
    return dataset(layout).samples(root, prefix or layout, domain)


def read_raw_label(path: Path, layout: str) -> np.ndarray:
    """The label file's values as stored."""
    return dataset(layout).read_raw(Path(path))


def to_train_ids(raw: np.ndarray, layout: str) -> np.ndarray:
    return dataset(layout).to_train_ids(raw)


def load_label(path: Path | str, layout: str) -> np.ndarray:
    """A label file of dataset ``layout`` as the task's class ids: uint8 (H, W), 255 = ignore."""
    return to_train_ids(read_raw_label(Path(path), layout), layout)


class Labels:
    """How a domain's label files read into the task's class ids and how predictions are written in its format:
    a registered dataset module's functions (picklable: it holds the layout's name). A dataset with a codec of
    its own (``labels(data, role)``: the folder's) gives that instead (``labels()`` below)."""

    def __init__(self, layout: str):
        self.layout = layout

    def read_raw(self, path: Path | str) -> np.ndarray:
        return read_raw_label(Path(path), self.layout)

    def to_ids(self, raw: np.ndarray) -> np.ndarray:
        return to_train_ids(raw, self.layout)

    def read(self, path: Path | str) -> np.ndarray:
        return load_label(path, self.layout)

    def problem(self, raw: np.ndarray) -> str | None:
        top = dataset(self.layout).MAX_LABEL_ID
        return f"label value {int(raw.max())} outside the {self.layout} id range 0..{top}" \
            if raw.size and int(raw.max()) > top else None

    def encode(self, pred: np.ndarray) -> np.ndarray:
        return dataset(self.layout).encode_prediction(pred)

    def name(self, stem: str) -> str:
        return dataset(self.layout).prediction_name(stem)


def labels(data: Any, role: str) -> Any:
    """The label codec of ``data.<role>`` (``Labels``, or the dataset's own)."""
    name = getattr(data, role).name
    layout = layout_of(name, role)
    own = dataset(layout).labels
    return own(data, role) if own is not None else Labels(layout)


def class_set(data: Any) -> ClassSet:
    """The street task's classes: the target dataset's own (a folder's class file), else Cityscapes' 19."""
    own = dataset(layout_of(data.target.name, "target")).class_set
    return own(data.target) if own is not None else CITYSCAPES


def prediction_format(data: Any) -> dict[str, Any]:
    """What a checkpoint keeps of its target, to write predictions in its format and colours without its files."""
    name = data.target.name
    spec = dataset(layout_of(name, "target"))
    own = spec.prediction_format(data.target) if spec.prediction_format is not None else {}
    return {"dataset": layout_of(name, "target"), **own}


def from_prediction_format(kept: dict[str, Any] | None) -> tuple[ClassSet, Any]:
    """The class set and label codec a checkpoint's ``prediction_format`` describes (a checkpoint from before
    it kept one: Cityscapes')."""
    kept = kept or {"dataset": "cityscapes"}
    spec = dataset(kept["dataset"])
    own = spec.from_prediction_format
    return own(kept) if own is not None else (CITYSCAPES, Labels(kept["dataset"]))


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
