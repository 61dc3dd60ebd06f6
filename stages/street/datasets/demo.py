"""The built-in demo world (``stages.street.demo_world``): generated under ``<workdir>/data/demo``, its source in GTA5's
layout and its target in Cityscapes', each read by that dataset's module. It ships its scene descriptions, which
``caption.captions_file: demo`` reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

LAYOUTS = {"source": "gta5", "target": "cityscapes"}  # role -> the dataset whose layout it is written in
ROLES = ("source", "target")
NEEDS_ROOT = False  # generated in the work directory
SCENE_DESCRIPTIONS = True  # what caption.captions_file: demo reads


def root(workdir: Path, role: str) -> Path:
    """Where the world's ``role`` half is written: ``<workdir>/data/demo/<layout>``."""
    from stages.index import DEMO_DIR

    return Path(workdir).resolve() / DEMO_DIR / LAYOUTS[role]


def prepare(workdir: Path, data: Any) -> None:
    """Generate the world (once: an existing world of the same keys is kept) before ingest lists it."""
    from stages.index import DEMO_DIR
    from stages.street import demo_world

    d = data.demo
    demo_world.generate(Path(workdir) / DEMO_DIR, d.n_source, d.n_target_train, d.n_target_val, d.height, d.width,
                        seed=d.seed, gap=d.gap, alike=d.lookalike)


def fingerprint_keys(data: Any) -> dict[str, Any]:
    """What ingest's fingerprint reads of it: the world's own keys."""
    from stages.street import demo_world

    return demo_world.world_keys(data.demo)
