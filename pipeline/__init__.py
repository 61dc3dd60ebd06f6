"""Orchestration: config, manifest, stores, runner, CLI."""

import os

# Ray's `uv run` hook would upload this checkout as every worker's working_dir and start workers through
# `uv run`. Workers here share the driver's environment (locally) or install the project (cluster.yaml).
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
