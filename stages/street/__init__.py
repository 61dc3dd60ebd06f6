"""The street task (DESIGN §7): semi-supervised domain adaptation on street scenes, 2D RGB, the paper's Tables
1-4. Its stages ingest, caption, embed_text, train and evaluate live here; ``split`` and ``report`` serve every
task. Its datasets are ``stages.street.datasets``'s registry; its networks ``models.street``."""

from __future__ import annotations

from typing import Any

from stages.street.config import StreetConfig
from stages.street.datasets import CITYSCAPES, class_set  # noqa: F401  (CITYSCAPES: the built-in class set)
from stages.tasks import ClassSet

CONFIG = StreetConfig  # its sections beside the shared ones
STAGES = {"ingest": "stages.street.ingest", "split": "stages.split", "caption": "stages.street.caption",
          "embed_text": "stages.street.embed_text", "train": "stages.street.train",
          "evaluate": "stages.street.evaluate", "report": "stages.report"}
PREDICTS = True  # `semidavil predict` and `export` read its checkpoints
# (name, dyce, vlp, dlg, whose captions DLG reads): the paper's Table 3, and the caption-content control
TABLE3 = (("CT", False, False, False, "own"), ("CT+DyCE", True, False, False, "own"),
          ("CT+VLP", False, True, False, "own"), ("CT+VLP+DLG", False, True, True, "own"),
          ("CT+DyCE+VLP+DLG", True, True, True, "own"),
          ("CT+DyCE+VLP+DLG, shuffled captions", True, True, True, "shuffled"))


def classes(cfg: Any) -> ClassSet:
    """The target's classes: Cityscapes' 19 (every built-in street dataset reads its labels into them), or a
    folder target's class file."""
    return class_set(cfg.data)


def ablation(cfg: Any) -> list[tuple[str, tuple[str, ...]]]:
    """Table 3's rows: CT only; CT+DyCE; CT+VLP; CT+VLP+DLG; all; and the caption-content control: all, with DLG
    fed another image's caption (``model.dlg_captions=shuffled``), so that the report shows whether what a caption
    says matters. Without VLP the image tower starts from ImageNet (``model.imagenet_checkpoint``, as the paper)
    or, without that file, at random."""
    no_vlp = "imagenet" if cfg.model.imagenet_checkpoint is not None else "random"
    return [(name, ("train.consistency=true", f"loss.dyce={str(dyce).lower()}",
                    f"model.vision_init={'clip' if vlp else no_vlp}", f"model.dlg={str(dlg).lower()}",
                    f"model.dlg_captions={captions}"))
            for name, dyce, vlp, dlg, captions in TABLE3]


def notes(cfg: Any) -> list[str]:
    """The VLP rows equal the non-VLP rows when the image tower has no pretrained weights to start from."""
    if cfg.model.vision_pretrained == "none":
        return ["model.vision_pretrained is none: the 'VLP' cells start from random weights too, and the report "
                "marks them without VLP"]
    return []


def REPORT_KEYS(cfg: Any) -> dict[str, Any]:  # noqa: N802  (the registry's name for it)
    return {}  # the street task's reports keep the fingerprint they had before there were tasks


def write_report(ctx: Any, runs: list[dict[str, Any]]) -> Any:
    from stages.street.report import report as street_report

    return street_report(ctx, runs)


def results(metrics: dict[str, Any]) -> list[Any]:
    """What ``semidavil run`` prints of an evaluation: per-class IoU, then mIoU 19/16/13."""
    import math

    from rich.table import Table

    table = Table(title=f"Target val IoU ({metrics['images']} images)")
    table.add_column("class")
    table.add_column("IoU %", justify="right")
    for name, iou in metrics["per_class"].items():
        table.add_row(name, "-" if math.isnan(iou) else f"{100 * iou:.1f}")
    return [table, *(f"{key}: {100 * metrics[key]:.2f}" for key in metrics if key.startswith("mIoU"))]


def selector() -> Any:
    """The module ``semidavil select`` runs for this task (``stages.street.select``)."""
    from stages.street import select

    return select


def predictor() -> Any:
    """The module ``semidavil predict`` runs for this task's checkpoints (``stages.street.predict``)."""
    from stages.street import predict

    return predict
