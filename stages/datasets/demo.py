"""The built-in demo world (``stages.demo_world``): generated under ``<workdir>/data/demo``, its source in GTA5's
layout and its target in Cityscapes', each read by that dataset's module. It ships its scene descriptions, which
``caption.captions_file: demo`` reads."""

from __future__ import annotations

LAYOUTS = {"source": "gta5", "target": "cityscapes"}  # role -> the dataset whose layout it is written in
ROLES = ("source", "target")
NEEDS_ROOT = False  # generated in the work directory
GENERATED = True
