"""Stage 6, evaluate: the trained model on the target val split -> per-class IoU and mIoU (19/16/13).

The model runs in a Ray actor (on a GPU worker when ``execution.eval.num_gpus`` > 0), never in the driver
(``evaluator.py``). Inference is by sliding windows of the training crop size (2/3 overlap stride), with
the predictions taken at the label's resolution. Outputs: ``metrics.json``, ``per_class.parquet``,
``confusion.npy``, ``run.json`` and a few colourised prediction PNGs in ``predictions/``.

This module is the stage's interface and imports nothing heavy; ``run`` loads the rest.
"""

from __future__ import annotations

from typing import Any

from pipeline.config import Config
from pipeline.stage import StageContext, StageResult

NAME = "evaluate"
VERSION = 5  # 2: run.json for the report; 3: relative index paths, run.json from train's setup; 4: examples; 5: labelId PNGs
INPUTS = ("ingest", "embed_text", "train")
INPUT_DIGESTS = {"ingest": "index"}


def fingerprint_config(cfg: Config) -> dict[str, Any]:
    return {"eval": cfg.eval.model_dump(mode="json"),
            "train": {"target_size": cfg.train.target_size, "crop_size": cfg.train.crop_size}}


def run(ctx: StageContext) -> StageResult:
    from stages.street.evaluate.evaluator import evaluate

    return evaluate(ctx)
