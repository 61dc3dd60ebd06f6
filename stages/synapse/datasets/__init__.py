"""The registry of the synapse task's datasets (DESIGN §7): the only list of them, one line per dataset.

A dataset module defines ``NEEDS_ROOT``, ``root(cfg, workdir) -> Path`` (where its cases lie), ``prepare(root,
cfg, lists)`` (a generated dataset writes its cases; optional), ``layout(root, requested) -> str`` (which of
``stages.synapse.cases.LAYOUTS`` its files are in) and ``fingerprint_keys(cfg)`` (what ingest's fingerprint
reads of it besides the root). Nothing outside this package compares dataset names.
"""

from __future__ import annotations

from models.registry import Entry, Registry

VOLUME_DATASETS = Registry("dataset", "volumes.data.name", {
    "synapse": "stages.synapse.datasets.synapse",
    "demo": "stages.synapse.datasets.demo",
}, {"NEEDS_ROOT": True, "prepare": lambda root, cfg, lists: None, "fingerprint_keys": lambda cfg: {}})
register, names = VOLUME_DATASETS.register, VOLUME_DATASETS.names


def volume_dataset(name: str) -> Entry:
    return VOLUME_DATASETS.get(name)
