"""Stage 5, train: the SSDA student and EMA teacher (paper §3.3-3.4, DESIGN §4-5) under Ray Train.

``loop.py`` holds the method: the per-worker function ``train_func`` (build, resume, a loop of
``train_step``, checkpoints) and the step itself. This module is the stage's interface and imports nothing
heavy; ``run`` loads the rest.
"""

from __future__ import annotations

from typing import Any

from pipeline.config import Config
from pipeline.stage import StageContext, StageResult
from stages.street.config import uses_consistency

NAME = "train"
VERSION = 4  # 2: the labelled split is an input of its own; 3: OpenCV loader, per-step batches, safetensors;
# 4: every key in the fingerprint with its resolved value (colour_jitter, pasted_gt), execution keys in a section of their own
INPUTS = ("ingest", "split", "embed_text")
INPUT_DIGESTS = {"ingest": "index", "split": "labelled"}  # image set and labels; the labelled ids themselves
# Keys that only shape consistency training: without it they change nothing, so they leave the fingerprint
# and every CT variant of a sweep shares one no-CT baseline.
CT_KEYS = {"train": {"mix", "mix_from", "cross_domain_ratio", "colour_jitter", "strong_blur",
                     "feature_perturbation"},
           "loss": {"confidence_threshold", "class_thresholds", "class_threshold_quantile", "class_threshold_cap",
                    "consistency_omega", "pasted_gt"}}


def unused_keys(cfg: Config) -> set[str]:
    """Keys that change nothing with this mix: the cross-domain share without ``both``, and where pasted ground
    truth is counted when nothing pastes ground truth."""
    unused = set() if cfg.train.mix_from == "both" else {"cross_domain_ratio"}
    return unused | ({"pasted_gt"} if cfg.train.mix_from == "unlabelled" or cfg.train.mix == "none" else set())


def fingerprint_config(cfg: Config) -> dict[str, Any]:
    uses_ct, unused = uses_consistency(cfg), unused_keys(cfg)
    sections = {"model": cfg.model.model_dump(mode="json"), "loss": cfg.loss.model_dump(mode="json"),
                "train": cfg.train.model_dump(mode="json")}
    return {name: {k: v for k, v in keys.items()
                   if (uses_ct or k not in CT_KEYS.get(name, ())) and k not in unused}
            for name, keys in sections.items()}


def run(ctx: StageContext) -> StageResult:
    from stages.street.train.loop import train_on_ray

    return train_on_ray(ctx)
