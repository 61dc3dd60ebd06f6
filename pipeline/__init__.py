"""Orchestration: config, manifest, stores, runner, CLI."""

import os
import sys

# Ray's `uv run` hook would upload this checkout as every worker's working_dir and start workers through
# `uv run`. Workers here share the driver's environment (locally) or install the project (cluster.yaml).
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

# Keep compiled modules (.pyc). Where PYTHONDONTWRITEBYTECODE is set, as in many containers, every process
# (each Ray worker, each CLI call) would compile torch, transformers and open_clip from source again, about
# 5 s each; with .pyc kept, only the first does. (uv's compile-bytecode setting does the same at install,
# but then walks all 16,000 files on every `uv run`, which costs `semidavil --help` 0.7 s.)
sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # for the processes this one starts, Ray's workers included
