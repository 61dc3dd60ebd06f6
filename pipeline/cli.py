"""The `semidavil` command: thin typer commands, all work in ``pipeline.runner``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pipeline.config import DEFAULT_CONFIG, Config, ConfigError, load_config
from pipeline.lock import WorkdirBusy
from pipeline.progress import console as err_console
from pipeline.runner import (
    check_config,
    complete_output,
    fingerprints,
    rejected_files,
    run_pipeline,
    stage_dir,
    stages_of,
    status_rows,
)
from pipeline.stage import StageError
from stages.tasks import LEGACY, all_stage_names, task_of
from stages.tasks import names as task_names

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="SemiDAViL: language-guided semi-supervised domain adaptation for semantic segmentation.")
out = Console()


@app.callback()
def main_options(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Ray's own output (its "
                                                         "warnings, its workers' lines) on the terminal too.")]
                 = False) -> None:
    """SemiDAViL: language-guided semi-supervised domain adaptation for semantic segmentation."""
    from pipeline.progress import QUIET

    QUIET["on"] = not verbose

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config (default configs/demo.yaml).")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", help="Override: section.key=value (repeatable).")]
AddressOpt = Annotated[str | None, typer.Option(help="Ray cluster to join: 'auto' or HOST:PORT.")]
WorkdirOpt = Annotated[Path | None, typer.Option(help="Work directory (paths.workdir).")]


def _config(config: Path | None, overrides: list[str] | None, address: str | None = None,
            workdir: Path | None = None, strict: bool = False) -> Config:
    extra = [f"cluster.address={address}"] if address else []
    extra += [f"paths.workdir={workdir}"] if workdir else []
    extra += ["data.strict=true"] if strict else []
    try:
        return check_config(load_config(config, [*(overrides or []), *extra]), str(config or DEFAULT_CONFIG))
    except ConfigError as err:
        err_console.print(f"[red]error:[/] {err}", soft_wrap=True)
        raise typer.Exit(2) from None


def _execute(cfg: Config, only: list[str] | None) -> None:
    try:
        run_pipeline(cfg, only)
    except (WorkdirBusy, StageError) as err:
        err_console.print(f"[red]error:[/] {err}", soft_wrap=True)
        raise typer.Exit(1) from None


def print_results(cfg: Config) -> None:
    """The per-class IoU table and the mIoU of this config's evaluation."""
    fps = fingerprints(cfg)
    if fps["evaluate"] is None:
        return
    path = stage_dir(Path(cfg.paths.workdir), "evaluate", fps["evaluate"]) / "metrics.json"
    if not path.exists():
        return
    for item in task_of(cfg.task).results(json.loads(path.read_text())):  # the task's tables and figures
        out.print(item)
    print_report_path(cfg, fps)


def print_report_path(cfg: Config, fps: dict[str, str | None] | None = None) -> None:
    fp = (fps or fingerprints(cfg))["report"]
    report = stage_dir(Path(cfg.paths.workdir), "report", fp) / "index.html" if fp else None
    if report is not None and report.exists():
        out.print(f"report: {report}")


@app.command()
def run(config: ConfigOpt = None, set_: SetOpt = None, address: AddressOpt = None, workdir: WorkdirOpt = None,
        strict: Annotated[bool, typer.Option(help="Fail ingest on any broken file.")] = False) -> None:
    """Run the whole pipeline: ingest, caption, embed_text, train, evaluate, report. Complete stages are skipped."""
    cfg = _config(config, set_, address, workdir, strict)
    _execute(cfg, None)
    print_results(cfg)


@app.command()
def stage(name: Annotated[str, typer.Argument(help=f"One of the task's stages: {', '.join(all_stage_names())} "
                                                     "(task synapse: no caption, embed_text).")],
          config: ConfigOpt = None, set_: SetOpt = None, address: AddressOpt = None, workdir: WorkdirOpt = None,
          strict: Annotated[bool, typer.Option(help="Fail ingest on any broken file.")] = False) -> None:
    """Run one stage; its inputs must be complete."""
    cfg = _config(config, set_, address, workdir, strict)
    if name not in stages_of(cfg):
        err_console.print(f"[red]error:[/] unknown stage {name!r} for task {cfg.task}; stages: "
                          f"{', '.join(stages_of(cfg))}")
        raise typer.Exit(2)
    _execute(cfg, [name])
    if name == "evaluate":
        print_results(cfg)


def _short_path(path: str | None) -> str:
    """A path relative to the current directory when it lies below it."""
    if not path:
        return "-"
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


def language_lines(rows: list[dict]) -> list[str]:
    """What the captions say about themselves (caption and embed_text stages' records)."""
    d = {r["stage"]: r.get("details") or {} for r in rows}
    lines = []
    if "distinct" in (c := d.get("caption", {})):
        lines.append(f"captions ({c.get('source', '?')}): {c['captions']} images, {c['empty']} empty, "
                     f"{c['distinct']} distinct, {c['mean_words']} words on average")
    if "mean_tokens" in (e := d.get("embed_text", {})):
        lines.append(f"text embeddings: {e['mean_tokens']:.1f} tokens on average, {e.get('truncated', 0)} "
                     "captions cut to the text tower's context")
    return lines


@app.command()
def status(config: ConfigOpt = None, set_: SetOpt = None, workdir: WorkdirOpt = None) -> None:
    """One row per stage for this config, and the files that ingest or captioning rejected."""
    cfg = _config(config, set_, workdir=workdir)
    table = Table(title=f"{cfg.paths.workdir}")
    for col in ("stage", "status", "fingerprint", "rows", "duration", "output"):
        table.add_column(col, justify="right" if col in ("rows", "duration") else "left",
                         overflow="fold", no_wrap=col != "output")
    rows = status_rows(cfg)
    for r in rows:
        seconds = f"{r['seconds']:.1f} s" if r["seconds"] is not None else "-"
        table.add_row(r["stage"], r["status"], r["fingerprint"], "-" if r["rows"] is None else str(r["rows"]),
                      seconds, _short_path(r["output"]))
    out.print(table)
    for line in language_lines(rows):
        out.print(line, soft_wrap=True, highlight=False)
    for r in rows:
        if r["error"]:
            out.print(f"[red]{r['stage']}[/]: {r['error'].splitlines()[0]}", soft_wrap=True)
    rejected = rejected_files(cfg)
    if rejected:
        out.print(f"Rejected files ({len(rejected)}):")
        for stage_name, path, reason in rejected:
            out.print(f"  [{stage_name}] {path}: {reason}", soft_wrap=True, highlight=False)


@app.command()
def plan(config: ConfigOpt = None, set_: SetOpt = None, workdir: WorkdirOpt = None) -> None:
    """What `run` would reuse and what it would run, and why. Does no work and writes nothing."""
    from pipeline.plan import plan as make_plan

    cfg = _config(config, set_, workdir=workdir)
    table = Table(title=f"plan for {cfg.paths.workdir}")
    for col in ("stage", "action", "fingerprint", "why"):
        table.add_column(col, overflow="fold", no_wrap=col != "why")
    for row in make_plan(cfg):
        colour = {"reuse": "green", "run": "yellow", "resume": "cyan"}.get(row.action, "white")
        table.add_row(row.stage, f"[{colour}]{row.action}[/]", row.fingerprint[:12] if row.fingerprint else "-",
                      row.reason)
    out.print(table)


def _grid(config: Path | None, set_: list[str] | None, address: str | None, workdir: Path | None,
          cells_of: Callable[[Config], list]) -> None:
    from pipeline.experiments import run_grid

    cfg = _config(config, set_, address, workdir)
    extra = [f"cluster.address={address}"] if address else []
    extra += [f"paths.workdir={workdir}"] if workdir else []
    try:
        last = run_grid(config, [*(set_ or []), *extra], cells_of(cfg))
    except (WorkdirBusy, StageError) as err:
        err_console.print(f"[red]error:[/] {err}", soft_wrap=True)
        raise typer.Exit(1) from None
    except ConfigError as err:
        err_console.print(f"[red]error:[/] {err}", soft_wrap=True)
        raise typer.Exit(2) from None
    print_report_path(last)


@app.command()
def sweep(labelled: Annotated[str, typer.Option(help="Labelled target counts, e.g. 0,100,200,500,1000,all.")],
          seeds: Annotated[str, typer.Option(help="Seeds of the split and the training, e.g. 0,1,2.")] = "0",
          selection: Annotated[str, typer.Option(help="How the labelled images are chosen, e.g. random,diverse,"
                                                 "uncertainty: random draws them from the seed; a `select` "
                                                 "strategy chooses them (uncertainty and mixed under a run with "
                                                 "no labelled target image at that seed).")] = "random",
          config: ConfigOpt = None, set_: SetOpt = None, address: AddressOpt = None,
          workdir: WorkdirOpt = None) -> None:
    """The paper's Tables 1-2: one run per labelled count, seed and selection, then the report (mean ± std over
    seeds; the selection as a column where there are several)."""
    from pipeline.experiments import parse_labelled, parse_seeds, parse_selection, sweep_cells

    try:
        counts, seed_list = parse_labelled(labelled), parse_seeds(seeds)
    except ValueError as err:
        err_console.print(f"[red]error:[/] {err}")
        raise typer.Exit(2) from None

    def cells(cfg: Config) -> list:
        if (refusal := task_of(cfg.task).SWEEP_LABELLED) is not None:
            err_console.print(f"[red]error:[/] {refusal}", soft_wrap=True)
            raise typer.Exit(2)
        try:
            strategies = parse_selection(selection, counts, cfg)
        except ValueError as err:
            err_console.print(f"[red]error:[/] {err}", soft_wrap=True)
            raise typer.Exit(2) from None
        return sweep_cells(counts, seed_list, strategies)

    _grid(config, set_, address, workdir, cells)


@app.command()
def ablate(config: ConfigOpt = None, set_: SetOpt = None, address: AddressOpt = None,
           workdir: WorkdirOpt = None) -> None:
    """The paper's Table 3 (CT only; CT+DyCE; CT+VLP; CT+VLP+DLG; all; all with shuffled captions), or with a
    `task: synapse` config Table 5 (every registered 3D method, each with CE and with DyCE); then the
    report."""
    from pipeline.experiments import ablation_cells

    def cells(cfg: Config) -> list:
        for note in task_of(cfg.task).notes(cfg):
            err_console.print(f"[yellow]note:[/] {note}")
        return ablation_cells(cfg)

    _grid(config, set_, address, workdir, cells)




def _checkpoint_file(path: Path) -> tuple[Path, str]:
    """A training run directory's checkpoint, or the file given, and its task: one whose task predicts (its
    ``PREDICTS``: the street task's; predict, export)."""
    from stages.checkpoint import CheckpointError, read_meta
    from stages.trained import CHECKPOINT

    path = path / CHECKPOINT if path.is_dir() else path
    try:
        task = read_meta(path).get("task", LEGACY)
    except CheckpointError as err:
        err_console.print(f"[red]error:[/] {err}", soft_wrap=True)
        raise typer.Exit(1) from None
    if task not in task_names() or not task_of(task).PREDICTS:
        err_console.print(f"[red]error:[/] {path}: a {task} checkpoint; predict and export serve the street task (the "
                          f"{task} task's predictions are NIfTI files in evaluate/<fingerprint>/predictions/)",
                          soft_wrap=True)
        raise typer.Exit(1)
    return path, task


@app.command()
def predict(checkpoint: Annotated[Path, typer.Argument(help="A training run directory (train/<fingerprint>), its "
                                                            "checkpoint, or an exported model file.")],
            images: Annotated[list[str], typer.Argument(help="Image files, folders or globs.")],
            out_dir: Annotated[Path, typer.Option("--out", help="Where the predictions go.")] = Path("predictions"),
            model: Annotated[str | None, typer.Option("--model", help="teacher or student (default: a checkpoint's "
                                                      "teacher, or the network an exported file holds).")] = None,
            set_: SetOpt = None,
            batch_size: Annotated[int, typer.Option(help="Images captioned together.")] = 8,
            format_: Annotated[str, typer.Option("--format", help="colour (prediction and overlay PNGs); dataset "
                                                 "(also the prediction in the target dataset's own format in masks/: "
                                                 "Cityscapes labelIds, a folder's mask values); or labelids (also "
                                                 "Cityscapes labelId PNGs in labelIds/, named after each image, for "
                                                 "cityscapesscripts and the benchmark server).")] = "colour",
            ) -> None:
    """Segment your own images: caption and embed each one with the run's language models, then predict."""
    checkpoint_file, task = _checkpoint_file(checkpoint)
    predicting = task_of(task).predictor()  # the task's own predict module
    try:
        if format_ not in predicting.FORMATS:
            raise ValueError(f"--format: {format_!r} is not one of {', '.join(predicting.FORMATS)}")
        paths = predicting.expand_images(images)
        predictor = predicting.load_predictor(checkpoint_file, model, set_ or [])
        predicting.check_format(predictor, format_)
    except (ValueError, OSError, ConfigError) as err:
        err_console.print(f"[red]error:[/] {err}", soft_wrap=True)
        raise typer.Exit(1) from None
    result = predicting.predict_images(predictor, paths, out_dir, batch_size, fmt=format_)
    out.print(f"{len(result.written)} images predicted into {out_dir}" +
              (f"; {len(result.skipped)} skipped" if result.skipped else ""))
    if not result.written:
        raise typer.Exit(1)


@app.command()
def select(budget: Annotated[int, typer.Option(help="How many new target images to label.")],
           out_file: Annotated[Path, typer.Option("--out", help="The split file to write (data.split_file reads "
                                                  "it); the ranking goes beside it as .csv.")],
           strategy: Annotated[str, typer.Option(help="random (the default: needs no model; uncertainty measured "
                                                 "+2.7 mIoU19 over it at 8, docs/BENCHMARKS.md), uncertainty (RIPU's score under "
                                                 "--from's teacher), diverse (k-centre over caption embeddings) or "
                                                 "mixed (the most uncertain of each cluster).")] = "random",
           from_: Annotated[Path | None, typer.Option("--from", help="A train directory or checkpoint whose teacher "
                                                      "scores the images (uncertainty, mixed).")] = None,
           html: Annotated[bool, typer.Option("--html", help="Also a page for the labellers: the chosen images "
                                              "with their score, caption and the teacher's prediction.")] = False,
           config: ConfigOpt = None, set_: SetOpt = None, workdir: WorkdirOpt = None) -> None:
    """Propose which target train images to label next: the labelled split kept, BUDGET new ones chosen by
    STRATEGY, written as a split file for data.split_file."""
    cfg = _config(config, set_, workdir=workdir)
    if task_of(cfg.task).selector is None:
        err_console.print(f"[red]error:[/] task: the {cfg.task} task has no select", soft_wrap=True)
        raise typer.Exit(2)
    selecting = task_of(cfg.task).selector()  # the task's own select module
    try:
        pool = selecting.open_pool(cfg, {stage: complete_output(cfg, stage) for stage in ("ingest", "embed_text")})
        selecting.check_request(pool, budget, strategy, from_)
        checkpoint = selecting.model_file(from_) if from_ is not None else None
        chosen = selecting.choose(cfg, pool, budget, strategy, checkpoint)
    except (ValueError, StageError) as err:
        err_console.print(f"[red]error:[/] {err}", soft_wrap=True)
        raise typer.Exit(1) from None
    ranking = selecting.write_selection(out_file, pool, chosen, strategy, budget)
    if html:
        out.print(f"page: {selecting.write_page(cfg, out_file, pool, chosen, strategy, checkpoint)}")
    out.print(f"{budget} new of {len(pool.candidates)} unlabelled ({strategy}), {len(pool.labelled)} kept: "
              f"{out_file}; ranking: {ranking}", soft_wrap=True)


@app.command()
def verify(config: ConfigOpt = None, set_: SetOpt = None, workdir: WorkdirOpt = None) -> None:
    """Check every stage output of the work directory against what its stage recorded (sizes, Parquet
    footers) and name every missing or damaged file; exit 1 if there is one."""
    from pipeline.outputs import verify_workdir

    cfg = _config(config, set_, workdir=workdir)
    bad, intact, unfinished = verify_workdir(Path(cfg.paths.workdir), all_stage_names())  # every task's stages
    for problem in bad:
        out.print(f"[red]damaged[/] {problem}", soft_wrap=True, highlight=False)
    out.print(f"{intact} complete stage output(s) intact, {len(bad)} damaged or missing file(s), "
              f"{unfinished} unfinished stage directory(ies) (no completion record)")
    if bad:
        out.print("The next `semidavil run` redoes the damaged shards or stages.")
        raise typer.Exit(1)


@app.command()
def export(source: Annotated[Path, typer.Argument(help="A training run directory (train/<fingerprint>) or its "
                                                       "checkpoint file.")],
           out_file: Annotated[Path, typer.Option("--out", help="The model file to write (.safetensors).")],
           model: Annotated[str, typer.Option("--model", help="teacher (default) or student.")] = "teacher") -> None:
    """Write the teacher (or student) weights alone, with the config that rebuilds them, for `predict`."""
    from stages.checkpoint import CheckpointError, export_model

    path, _ = _checkpoint_file(source)
    try:
        export_model(path, model, out_file)
    except (CheckpointError, ValueError) as err:
        err_console.print(f"[red]error:[/] {err}", soft_wrap=True)
        raise typer.Exit(1) from None
    out.print(f"{model} of {path} written to {out_file}")


def main() -> None:  # pragma: no cover
    from pipeline.manifest import ManifestError

    try:
        app(prog_name="semidavil")
    except ManifestError as err:  # one line that names the file and what to do, not a traceback
        err_console.print(f"[red]error:[/] {err}", soft_wrap=True, highlight=False)
        raise SystemExit(1) from None
