"""Stage evaluate of the volumetric task: the trained method on the test cases -> DSC and ASD per case and
organ (DHC's protocol, DESIGN §7).

Sliding windows of ``volumes.patch`` with DHC's strides (``volumes.stride``: 32 in-plane, 16 in depth), the
softmax averaged where windows overlap, on the preprocessed grid (in-plane halved), in a Ray task (on a GPU
worker when ``execution.eval.num_gpus`` > 0). Metrics: ``stages.synapse.metrics`` (medpy's DSC and one-way ASD, DHC's rules
for an organ missing from prediction or ground truth). Outputs: ``metrics.json``, ``per_case.parquet``,
``run.json``, predictions as NIfTI (``predictions/<case>.nii.gz``) and example slices for the report.
"""

from __future__ import annotations

from typing import Any

from pipeline.config import Config
from pipeline.stage import StageContext, StageResult

NAME = "evaluate"
VERSION = 2  # 2: the best checkpoint on the eval cases by default (volumes.checkpoint)
INPUTS = ("ingest", "train")
INPUT_DIGESTS = {"ingest": "index"}


def fingerprint_config(cfg: Config) -> dict[str, Any]:
    v = cfg.volumes
    return {"volumes": {"patch": list(v.patch), "stride": list(v.stride), "save_slices": v.save_slices,
                        "checkpoint": v.checkpoint}}


def run(ctx: StageContext) -> StageResult:
    from stages.synapse.evaluate.evaluator import evaluate

    return evaluate(ctx)
