"""`semidavil sweep` and `semidavil ablate`: the paper's Tables 1-3 (and 5) as grids of ordinary runs.

Every cell is a ``run_pipeline`` of the base config with a few keys set, in one work directory, so each
stage that cells share (ingest, caption, embed_text; the split for equal labelled counts) runs once and
a crashed grid resumes where it stopped. The report runs once at the end, over every evaluated run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from pipeline.config import Config, load_config
from pipeline.progress import console
from pipeline.runner import run_pipeline
from stages.tasks import task_of


@dataclass(frozen=True)
class Cell:
    name: str
    overrides: tuple[str, ...]
    prepare: Callable[..., tuple[str, ...]] | None = None  # (config maker, run) -> more overrides, before the run


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


def parse_selection(text: str, labelled: list[int | str], cfg: Config) -> list[str]:
    """``"random,diverse"`` -> ["random", "diverse"]; ValueError naming ``--selection`` for a strategy the task's
    ``select`` does not know, or a strategy with a labelled count of ``all``."""
    strategies = [p.strip() for p in text.split(",") if p.strip()] or ["random"]
    selector = task_of(cfg.task).selector
    known = selector().STRATEGIES if selector is not None else ("random",)
    if unknown := [s for s in strategies if s not in known]:
        raise ValueError(f"--selection: {unknown[0]!r} is not one of {', '.join(known)}")
    if "all" in labelled and strategies != ["random"]:
        raise ValueError("--selection: a strategy chooses some of the images; --labelled all labels every one")
    return strategies


def sweep_cells(labelled: list[int | str], seeds: list[int], selection: list[str] = ("random",)) -> list[Cell]:
    """Tables 1-2: one run per (labelled count, seed, selection); the seed draws the split (random) and the
    training; another selection's split is chosen by ``select`` just before its run."""
    cells = []
    for n in labelled:
        for s in seeds:
            for how in selection:
                if how == "random":
                    cells.append(Cell(f"labelled={n} seed={s}", (f"data.labelled_target={n}", f"data.seed={s}",
                                                                 f"train.seed={s}")))
                else:
                    cells.append(Cell(f"labelled={n} seed={s} selection={how}", (f"data.seed={s}", f"train.seed={s}"),
                                      partial(selected_split, how, n)))
    return cells


def selected_split(strategy: str, budget: int, make: Callable[..., Config], run: Callable[..., object]
                   ) -> tuple[str, ...]:
    """The split file ``select`` writes for ``budget`` images by ``strategy``, with none labelled before (the
    stages it reads run first: ingest to embed_text, and for a model the run with no labelled target image)."""
    from pipeline.runner import complete_output

    start = make("data.labelled_target=0")
    selecting = task_of(start.task).selector()
    if strategy in selecting.NEEDS_MODEL:
        run(start, skip=("report",))
    else:
        run(start, only=[s for s in ("ingest", "split", "caption", "embed_text") if s in task_of(start.task).STAGES])
    pool = selecting.open_pool(start, {s: complete_output(start, s) for s in ("ingest", "embed_text")})
    model = selecting.model_file(complete_output(start, "train")) if strategy in selecting.NEEDS_MODEL else None
    path = Path(start.paths.workdir) / "select" / f"{strategy}_{budget}_seed{start.train.seed}.txt"
    selecting.check_request(pool, budget, strategy, model)
    selecting.write_selection(path, pool, selecting.choose(start, pool, budget, strategy, model), strategy, budget)
    return (f"data.split_file={path}",)


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
        extra = cell.prepare(lambda *more: load_config(config_path, [*overrides, *cell.overrides, *more]), run) \
            if cell.prepare else ()
        cfg = load_config(config_path, [*overrides, *cell.overrides, *extra])
        run(cfg, skip=("report",))
    run(cfg, only=["report"])
    return cfg
