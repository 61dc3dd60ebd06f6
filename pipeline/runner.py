"""Runs stages in DAG order, skipping those already complete with the same fingerprint (DESIGN §1)."""

from __future__ import annotations

import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import Config
from pipeline.lock import WorkdirLock
from pipeline.manifest import Manifest, StageRun
from pipeline.progress import console
from pipeline.stage import StageContext, StageError, StageModule, fingerprint, stage_dir
from stages import caption, embed_text, evaluate, ingest, report, train

STAGES: dict[str, StageModule] = {m.NAME: m for m in (ingest, caption, embed_text, train, evaluate, report)}
MANIFEST_FILE = "manifest.duckdb"


class MissingInputs(StageError):
    """A single stage was asked for before the stages it reads."""


def fingerprints(cfg: Config) -> dict[str, str]:
    """Every stage's fingerprint for this config, inputs first."""
    fps: dict[str, str] = {}
    for name, stage in STAGES.items():
        fps[name] = fingerprint(name, stage.VERSION, stage.fingerprint_config(cfg), [fps[i] for i in stage.INPUTS])
    return fps


def open_manifest(cfg: Config) -> Manifest:
    return Manifest(Path(cfg.paths.workdir) / MANIFEST_FILE)


def completed(manifest: Manifest, name: str, fp: str) -> StageRun | None:
    """The complete run of (stage, fingerprint) whose output is still on disk."""
    record = manifest.latest_stage_run(name, fp, status="complete")
    if record is None or record.output_path is None or not Path(record.output_path).exists():
        return None
    return record


@dataclass(frozen=True)
class Outcome:
    stage: str
    skipped: bool
    record: StageRun


def run_pipeline(cfg: Config, only: list[str] | None = None) -> list[Outcome]:
    """Run every stage (or ``only`` these, whose inputs must then be complete); return what happened."""
    workdir = Path(cfg.paths.workdir).resolve()  # Ray workers run elsewhere: every path they get is absolute
    names = list(STAGES) if only is None else only
    for name in names:
        if name not in STAGES:
            raise StageError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
    with WorkdirLock(workdir):
        manifest = open_manifest(cfg)
        fps = fingerprints(cfg)
        run_id = manifest.start_run(" ".join(sys.argv[1:]) or "run_pipeline")
        outcomes: list[Outcome] = []
        try:
            for name in names:
                outcomes.append(_run_one(cfg, manifest, run_id, name, fps, require_inputs=only is not None))
        except BaseException as err:
            manifest.end_run(run_id, "failed", f"{type(err).__name__}: {err}")
            raise
        manifest.end_run(run_id, "complete")
        return outcomes


def _run_one(cfg: Config, manifest: Manifest, run_id: str, name: str, fps: dict[str, str],
             require_inputs: bool) -> Outcome:
    stage, fp = STAGES[name], fps[name]
    workdir = Path(cfg.paths.workdir).resolve()
    if (done := completed(manifest, name, fp)) is not None:
        console.print(f"[green]✓[/] {name}: complete with fingerprint {fp[:12]}, skipped")
        return Outcome(name, True, done)
    missing = [i for i in stage.INPUTS if completed(manifest, i, fps[i]) is None]
    if missing:  # within a full run the inputs ran first, so only a single stage gets here
        raise MissingInputs(f"stage {name} needs {', '.join(missing)} complete first "
                            f"(run `semidavil stage {missing[0]}` or `semidavil run`)")
    out_dir = stage_dir(workdir, name, fp)
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = StageContext(cfg, name, fp, out_dir, {i: stage_dir(workdir, i, fps[i]) for i in stage.INPUTS},
                       manifest, workdir)
    console.print(f"[bold]▶ {name}[/] (fingerprint {fp[:12]}) → {out_dir}")
    stage_run_id = manifest.start_stage(run_id, name, fp, out_dir)
    try:
        result = stage.run(ctx)
    except BaseException as err:
        status = "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
        detail = str(err) if isinstance(err, StageError) else traceback.format_exc(limit=8)
        manifest.end_stage(stage_run_id, status, error=f"{type(err).__name__}: {detail}"[:4000])
        if isinstance(err, Exception) and not isinstance(err, StageError):
            first_line = (str(err).strip().splitlines() or [""])[-1][:400]
            raise StageError(f"stage {name} failed: {type(err).__name__}: {first_line} "
                             f"(the traceback is in {workdir / MANIFEST_FILE}; `semidavil status` shows it)") from err
        raise
    manifest.end_stage(stage_run_id, "complete", rows=result.rows, details=result.details)
    record = manifest.latest_stage_run(name, fp)
    console.print(f"[green]✓[/] {name}: {result.rows} rows in {record.seconds:.1f} s")
    return Outcome(name, False, record)


def status_rows(cfg: Config) -> list[dict[str, object]]:
    """One row per stage for this config: status, fingerprint, rows, duration, output path."""
    manifest_path = Path(cfg.paths.workdir) / MANIFEST_FILE
    manifest = Manifest(manifest_path) if manifest_path.exists() else None
    rows = []
    for name, fp in fingerprints(cfg).items():
        record = manifest.latest_stage_run(name, fp) if manifest else None
        if record is not None and record.status == "complete" and completed(manifest, name, fp) is None:
            status = "output missing"
        else:
            status = record.status if record else "pending"
        rows.append({"stage": name, "status": status, "fingerprint": fp[:12],
                     "rows": record.rows if record else None, "seconds": record.seconds if record else None,
                     "output": record.output_path if record else None,
                     "error": record.error if record and record.status != "complete" else None})
    return rows


def rejected_files(cfg: Config) -> list[tuple[str, str, str]]:
    manifest_path = Path(cfg.paths.workdir) / MANIFEST_FILE
    if not manifest_path.exists():
        return []
    fps = fingerprints(cfg)
    manifest = Manifest(manifest_path)
    return [r for name in STAGES for r in manifest.rejected(name, fps[name])]
