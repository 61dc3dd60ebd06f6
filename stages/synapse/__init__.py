"""The synapse task (DESIGN §7): semi-supervised 3D abdominal CT segmentation, the paper's Table 5 — background and
13 organs, DHC's protocol, DyCE as a plug-in of the registered 3D methods (``models.volumes.methods``). No language
stages. Its stages ingest, train and evaluate live here; ``split`` and ``report`` serve every task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from stages.synapse.config import SynapseConfig
from stages.tasks import ClassSet

CONFIG = SynapseConfig  # its sections beside the shared ones
STAGES = {"ingest": "stages.synapse.ingest", "split": "stages.split", "train": "stages.synapse.train",
          "evaluate": "stages.synapse.evaluate", "report": "stages.report"}
DEFAULT_SPLIT_FILE = Path(__file__).parent / "splits" / "labeled_0.2.txt"  # GenericSSL's 20 % (4 of 20 cases)
SWEEP_LABELLED = ("sweep --labelled: the synapse task's labelled cases are a split file (data.split_file; default "
                  "GenericSSL's 20 %), not a count; run `ablate` per split file and seed (--set data.split_file=... "
                  "--set train.seed=...)")
ORGANS = ("spleen", "right kidney", "left kidney", "gallbladder", "esophagus", "liver", "stomach", "aorta",
          "inferior vena cava", "portal & splenic veins", "pancreas", "right adrenal gland", "left adrenal gland")
SYNAPSE = ClassSet(
    ("background", *ORGANS),
    np.array([(0, 0, 0), (255, 127, 80), (0, 191, 255), (30, 144, 255), (50, 205, 50), (238, 130, 238),
              (178, 34, 34), (255, 215, 0), (220, 20, 60), (72, 61, 139), (0, 206, 209), (218, 165, 32),
              (139, 69, 19), (255, 105, 180)], dtype=np.uint8),
    255,
    {"organs": tuple(range(1, 14))},
    ("bg", "Sp", "RK", "LK", "Ga", "Es", "Li", "St", "Ao", "IVC", "PSV", "PA", "RAG", "LAG"),
)


def classes(cfg: Any) -> ClassSet:
    return SYNAPSE


def ablation(cfg: Any) -> list[tuple[str, tuple[str, ...]]]:
    """Table 5's rows: each registered method (``models.volumes.methods``) with plain CE and with DyCE in its
    supervised terms."""
    from models.volumes import methods

    return [(f"{m} + {'DyCE' if dyce else 'CE'}", (f"volumes.method={m}", f"loss.dyce={str(dyce).lower()}"))
            for m in methods.names() for dyce in (False, True)]


def REPORT_KEYS(cfg: Any) -> dict[str, Any]:  # noqa: N802  (the registry's name for it)
    return {"task": cfg.task}


def write_report(ctx: Any, runs: list[dict[str, Any]]) -> Any:
    from stages.synapse.report import report as table5_report

    return table5_report(ctx, runs)


def results(metrics: dict[str, Any]) -> list[Any]:
    """What ``semidavil run`` prints of an evaluation: DSC and ASD per organ on the test cases, and their means."""
    from rich.table import Table

    table = Table(title=f"Test DSC and ASD ({metrics['cases']} cases)")
    for column in ("organ", "DSC %", "ASD (voxels)", "ASD (mm)", "HD95 (mm)"):
        table.add_column(column, justify="left" if column == "organ" else "right")
    for name, scores in metrics["per_class"].items():
        mm = [f"{scores.get(k, float('nan')):.2f}".replace("nan", "-") for k in ("asd_mm", "hd95_mm")]
        table.add_row(name, f"{100 * scores['dsc']:.1f}", f"{scores['asd']:.2f}", *mm)
    return [table, f"mean DSC: {100 * metrics['mean_dsc']:.2f}  mean ASD: {metrics['mean_asd']:.2f}"]
