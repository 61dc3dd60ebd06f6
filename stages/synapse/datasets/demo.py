"""The demo volumes (``stages.synapse.demo``): CT-like abdomens generated under ``<workdir>/data/demo/synapse`` in
the ``imagesTr/``+``labelsTr/`` layout, with GenericSSL's case ids."""

from __future__ import annotations

from pathlib import Path
from typing import Any

NEEDS_ROOT = False


def root(cfg: Any, workdir: Path) -> Path:
    from stages.index import DEMO_DIR

    variant = cfg.volumes.demo.variant
    return Path(workdir).resolve() / DEMO_DIR / ("synapse" if variant == "default" else f"synapse-{variant}")


def prepare(root: Path, cfg: Any, lists: dict[str, list[str]]) -> None:
    from stages.synapse import demo

    d = cfg.volumes.demo
    demo.generate(root, [c for ids in lists.values() for c in ids], (d.depth, d.height, d.width), d.seed, d.noise,
                  d.variant)


def layout(root: Path, requested: str) -> str:
    return "nifti"


def fingerprint_keys(cfg: Any) -> dict[str, Any]:
    keys = cfg.volumes.demo.model_dump(mode="json")
    return {"demo": keys if keys["variant"] != "default" else {k: v for k, v in keys.items() if k != "variant"}}
