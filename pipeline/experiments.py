"""`semidavil sweep` and `semidavil ablate`: the paper's Tables 1-3 (and 5) as grids of ordinary runs.

Every cell is a ``run_pipeline`` of the base config with a few keys set, in one work directory, so each
stage that cells share (ingest, caption, embed_text; the split for equal labelled counts) runs once and
a crashed grid resumes where it stopped. The report runs once at the end, over every evaluated run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from models.volumes import methods
from pipeline.config import Config, load_config
from pipeline.progress import console
from pipeline.runner import run_pipeline


@dataclass(frozen=True)
class Cell:
    name: str
    overrides: tuple[str, ...]


def parse_labelled(text: str) -> list[int | str]:
    """``"0,100,all"`` -> [0, 100, "all"]."""
    values: list[int | str] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        if part != "all" and not part.isdigit():
            raise ValueError(f"--labelled: {part!r} is not a count or 'all'")
        values.append(part if part == "all" else int(part))
    if not values:
        raise ValueError("--labelled: no value given")
    return values


def parse_seeds(text: str) -> list[int]:
    try:
        return [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise ValueError(f"--seeds: {text!r} is not a comma-separated list of integers") from None


def sweep_cells(labelled: list[int | str], seeds: list[int]) -> list[Cell]:
    """Tables 1-2: one run per (labelled count, seed); the seed draws the split and the training."""
    return [Cell(f"labelled={n} seed={s}", (f"data.labelled_target={n}", f"data.seed={s}", f"train.seed={s}"))
            for n in labelled for s in seeds]


def volume_ablation_cells(names: tuple[str, ...] | None = None) -> list[Cell]:
    """Table 5's rows: each registered method (``models.volumes.methods``) with plain CE and with DyCE in its
    supervised terms."""
    return [Cell(f"{m} + {'DyCE' if dyce else 'CE'}", (f"volumes.method={m}", f"loss.dyce={str(dyce).lower()}"))
            for m in names or methods.names() for dyce in (False, True)]


def ablation_cells(cfg: Config) -> list[Cell]:
    """The task's ablation: Table 5's methods × {CE, DyCE} for the volumetric task, else Table 3.

    Table 3's rows: CT only; CT+DyCE; CT+VLP; CT+VLP+DLG; all; and the caption-content control: all, with
    DLG fed another image's caption (``model.dlg_captions=shuffled``), so that the report shows whether what a
    caption says matters. Without VLP the image tower starts from ImageNet (``model.imagenet_checkpoint``, as
    the paper) or, without that file, at random."""
    if cfg.task == "synapse":
        return volume_ablation_cells()
    no_vlp = "imagenet" if cfg.model.imagenet_checkpoint is not None else "random"
    rows = (("CT", False, False, False, "own"), ("CT+DyCE", True, False, False, "own"),
            ("CT+VLP", False, True, False, "own"), ("CT+VLP+DLG", False, True, True, "own"),
            ("CT+DyCE+VLP+DLG", True, True, True, "own"),
            ("CT+DyCE+VLP+DLG, shuffled captions", True, True, True, "shuffled"))
    return [Cell(name, ("train.consistency=true", f"loss.dyce={str(dyce).lower()}",
                        f"model.vision_init={'clip' if vlp else no_vlp}", f"model.dlg={str(dlg).lower()}",
                        f"model.dlg_captions={captions}"))
            for name, dyce, vlp, dlg, captions in rows]


def run_grid(config_path: Path | None, overrides: list[str], cells: list[Cell],
             run: Callable[..., object] = run_pipeline) -> Config:
    """Run each cell up to evaluate, then the report of the last one (which shows them all)."""
    cfg = None
    for k, cell in enumerate(cells, 1):
        console.print(f"[bold]■ cell {k}/{len(cells)}: {cell.name}[/]")
        cfg = load_config(config_path, [*overrides, *cell.overrides])
        run(cfg, skip=("report",))
    run(cfg, only=["report"])
    return cfg


def vlp_warning(cfg: Config) -> str | None:
    """The VLP rows equal the non-VLP rows when the image tower has no pretrained weights to start from."""
    if cfg.task == "street" and cfg.model.vision_pretrained == "none":
        return ("model.vision_pretrained is none: the 'VLP' cells start from random weights too, and the report "
                "marks them without VLP")
    return None
