"""Stage train of the volumetric task: a semi-supervised method of Table 5 (supervised-only V-Net, UA-MT, URPC,
DePL, DHC), with CE or DyCE in its supervised terms, under Ray Train (DESIGN §7).

``loop.py`` holds the worker function and the data; the rank, device, checkpoints, resume, failure handling and
the driver's progress are ``stages.training``'s, the same as the SSDA trainer's. This module is the stage's
interface and imports nothing heavy.
"""

from __future__ import annotations

from typing import Any

from models.volumes.methods import spec as method_spec
from pipeline.config import Config, ConfigError
from pipeline.stage import StageContext, StageResult

NAME = "train"
VERSION = 2  # 2: model selection on the eval cases (best.safetensors, selection.json, early stop)
INPUTS = ("ingest", "split")
INPUT_DIGESTS = {"ingest": "index", "split": "labelled"}
TRAIN_KEYS = ("iterations", "batch_size", "lr", "weight_decay", "lr_power", "seed", "amp", "workers")
UNSUP_KEYS = ("unsup_weight", "rampup")
SELECTION_KEYS = ("eval_every", "patience", "stride")  # which networks are kept as the best, and when training stops


def fingerprint_config(cfg: Config) -> dict[str, Any]:
    """The method, its network and its own keys (another method's keys change nothing), the loss and the run."""
    v = cfg.volumes
    kind = method_spec(v.method)
    keys = ("method", "n_filters", "dropout", "patch", "momentum", *kind.KEYS, *(UNSUP_KEYS if kind.SEMI else ()),
            *SELECTION_KEYS)
    loss = {"dyce": cfg.loss.dyce, **({"hard_ratio": cfg.loss.hard_ratio, "omega": cfg.loss.omega,
                                       **kind.loss_keys(v)} if cfg.loss.dyce else {})}
    version = {"method_version": kind.VERSION} if kind.VERSION != 1 else {}  # version 1: the fingerprints of before
    return {"volumes": {k: v.model_dump(mode="json")[k] for k in keys}, "loss": loss,
            "train": {k: getattr(cfg.train, k) for k in TRAIN_KEYS}, **version}


def check_config(cfg: Config) -> None:
    """The method's own checks of the settings it cannot train (its module loads: ``models.volumes.methods``)."""
    try:
        method_spec(cfg.volumes.method).check(cfg.volumes)
    except ValueError as err:
        raise ConfigError(f"volumes.{err}") from None


def run(ctx: StageContext) -> StageResult:
    from stages.synapse.train.loop import train_on_ray

    return train_on_ray(ctx)
