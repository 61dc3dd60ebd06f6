"""Stage 5, train: the SSDA student and EMA teacher (paper §3.3-3.4, DESIGN §4-5) under Ray Train.

``loop.py`` holds the method: the per-worker function ``train_func`` (build, resume, a loop of
``train_step``, checkpoints) and the step itself. This module is the stage's interface and imports nothing
heavy; ``run`` loads the rest.
"""

from __future__ import annotations

from typing import Any

from pipeline.config import Config, uses_consistency
from pipeline.stage import StageContext, StageResult

NAME = "train"
VERSION = 3  # 2: the labelled split is an input of its own; 3: OpenCV loader, per-step batches, safetensors
INPUTS = ("ingest", "split", "embed_text")
INPUT_DIGESTS = {"ingest": "index", "split": "labelled"}  # image set and labels; the labelled ids themselves
EXECUTION_KEYS = {"log_every", "loader_workers", "use_gpu", "cpus_per_worker", "checkpoint_every", "max_failures"}
# Keys added after runs existed, at the value that trains exactly as before the key: left out of the
# fingerprint at that value, so those runs stay valid (a sweep reuses them).
INERT = {"feature_perturbation": 0.0, "dlg_captions": "own", "pasted_gt": "ct", "dlg_pixel_text": False,
         "strong_blur": 0.5}
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
                "train": cfg.train.model_dump(mode="json", exclude=EXECUTION_KEYS)}
    return {name: {k: v for k, v in keys.items()
                   if not (k in INERT and v == INERT[k]) and (uses_ct or k not in CT_KEYS.get(name, ()))
                   and k not in unused}
            for name, keys in sections.items()}


def run(ctx: StageContext) -> StageResult:
    from stages.street.train.loop import train_on_ray

    return train_on_ray(ctx)
