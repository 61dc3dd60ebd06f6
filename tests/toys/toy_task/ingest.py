"""The toy task's first stage: 100 numbers drawn from ``train.seed``."""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.stage import StageContext, StageResult, digest

NAME, VERSION, INPUTS = "ingest", 1, ()


def fingerprint_config(cfg: Any) -> dict[str, Any]:
    return {"train": {"seed": cfg.train.seed}}


def run(ctx: StageContext) -> StageResult:
    numbers = np.random.default_rng(ctx.cfg.train.seed).random(100)
    np.save(ctx.out_dir / "numbers.npy", numbers)
    return StageResult(100, digests={"numbers": digest(numbers.round(6).tolist())})
