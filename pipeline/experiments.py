"""`semidavil sweep` and `semidavil ablate`: the paper's Tables 1-3 (and 5) as grids of ordinary runs.

Every cell is a ``run_pipeline`` of the base config with a few keys set, in one work directory, so each
stage that cells share (ingest, caption, embed_text; the split for equal labelled counts) runs once and
a crashed grid resumes where it stopped. The report runs once at the end, over every evaluated run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import Config, load_config
from pipeline.progress import console
from pipeline.runner import run_pipeline
from stages.tasks import task_of


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


def ablation_cells(cfg: Config) -> list[Cell]:
    """The task's ablation (``ablation(cfg)`` of its package, ``stages.tasks``): Table 3 for the street task,
    Table 5's methods × {CE, DyCE} for the synapse task."""
    return [Cell(name, tuple(overrides)) for name, overrides in task_of(cfg.task).ablation(cfg)]


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
