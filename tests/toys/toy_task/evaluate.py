"""The toy task's evaluation: the mean of the numbers, as metrics.json and run.json for the report."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from pipeline.stage import StageContext, StageResult

NAME, VERSION, INPUTS = "evaluate", 1, ("ingest",)


def fingerprint_config(cfg: Any) -> dict[str, Any]:
    return {}


def run(ctx: StageContext) -> StageResult:
    score = float(np.load(ctx.inputs["ingest"] / "numbers.npy").mean())
    (ctx.out_dir / "metrics.json").write_text(json.dumps({"score": score}))
    (ctx.out_dir / "run.json").write_text(json.dumps({"task": "toy", "seed": ctx.cfg.train.seed}))
    return StageResult(1, {"score": score})
