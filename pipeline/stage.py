"""The small interface every stage module has, and the fingerprint rule (DESIGN §1).

A stage module defines ``NAME``, ``VERSION``, ``INPUTS`` (names of the stages it reads),
``fingerprint_config(cfg) -> dict`` (the part of the config that changes its output) and
``run(ctx: StageContext) -> StageResult``.
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


class StageModule(Protocol):
    NAME: str
    VERSION: int
    INPUTS: tuple[str, ...]

    def fingerprint_config(self, cfg: Config) -> dict[str, Any]: ...

    def run(self, ctx: StageContext) -> StageResult: ...


def fingerprint(stage: str, version: int, config_slice: dict[str, Any], input_fingerprints: list[str]) -> str:
    """sha256 of (stage name, version, the config slice it reads, its inputs' fingerprints)."""
    payload = json.dumps(
        {"stage": stage, "version": version, "config": config_slice, "inputs": input_fingerprints},
        sort_keys=True, default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def stage_dir(workdir: Path, stage: str, fp: str) -> Path:
    return Path(workdir) / stage / fp[:12]
