"""The small interface every stage module has, and the fingerprint rule (DESIGN §1).

A stage module defines ``NAME``, ``VERSION``, ``INPUTS`` (names of the stages it reads),
``fingerprint_config(cfg) -> dict`` (the part of the config that changes its output, nested by config
section so that a changed key can be named) and ``run(ctx: StageContext) -> StageResult``.

Optional:
- ``INPUT_DIGESTS``: {input stage: digest name}. A stage depends on an input's *fingerprint* by default;
  with a digest name it depends instead on that digest of the input's output, recorded when the input
  completed (``StageResult.digests``). Caption depends on ingest's ``images`` digest (which images, by
  path relative to their dataset root, and their content), so moving a dataset or changing the labelled
  split leaves captions alone.
- ``workdir_inputs(manifest, workdir) -> dict``: inputs read from the work directory as a whole (the
  report's list of evaluated runs).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pipeline.config import Config
from pipeline.manifest import Manifest


class StageError(RuntimeError):
    """A stage that cannot finish; the message says what failed and where."""


@dataclass(frozen=True)
class StageContext:
    cfg: Config
    name: str
    fingerprint: str
    out_dir: Path  # <workdir>/<stage>/<fingerprint[:12]>: this stage's outputs
    inputs: dict[str, Path]  # input stage name -> its out_dir
    manifest: Manifest
    workdir: Path


@dataclass
class StageResult:
    rows: int
    details: dict[str, Any] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)  # content digests later stages may depend on


class StageModule(Protocol):
    NAME: str
    VERSION: int
    INPUTS: tuple[str, ...]

    def fingerprint_config(self, cfg: Config) -> dict[str, Any]: ...

    def run(self, ctx: StageContext) -> StageResult: ...


def payload(stage: str, version: int, config_slice: dict[str, Any], inputs: dict[str, str],
            workdir_inputs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything a stage's output depends on: hashed into its fingerprint, kept in the manifest for `plan`."""
    return json.loads(json.dumps({"stage": stage, "version": version, "config": config_slice, "inputs": inputs,
                                  "workdir": workdir_inputs or {}}, sort_keys=True, default=str))


def digest(items: Any) -> str:
    """sha256 of any JSON-able value: the content digests of stage outputs, and fingerprints."""
    return hashlib.sha256(json.dumps(items, sort_keys=True, default=str).encode()).hexdigest()


def fingerprint(stage_payload: dict[str, Any]) -> str:
    """A stage's fingerprint: the digest of its payload (name, version, config slice, input digests)."""
    return digest(stage_payload)


def stage_dir(workdir: Path, stage: str, fp: str) -> Path:
    return Path(workdir) / stage / fp[:12]
