"""Runs stages in DAG order, skipping those already complete with the same fingerprint (DESIGN §1).

A stage's fingerprint hashes its payload: name, version, config slice, and its inputs — an input's
fingerprint, or a content digest of the input's output (``INPUT_DIGESTS``), known once that input is
complete. So a fingerprint may be unknown until the stages before it have run; the runner computes each
one just before the stage would run, and ``plan`` says which input it waits for.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from pipeline.config import Config, ConfigError
from pipeline.lock import WorkdirLock
from pipeline.manifest import MANIFEST_FILE, Manifest, StageRun
from pipeline.outputs import COMPLETE_FILE, Problem, check_outputs, read_record, write_record
from pipeline.progress import console
from pipeline.stage import StageContext, StageError, StageModule, fingerprint, payload, stage_dir
from stages.tasks import task_of


def stages_of(cfg: Config) -> tuple[str, ...]:
    """The stages of the config's task, inputs first (the volumetric task has no caption or embed_text)."""
    try:
        return tuple(task_of(cfg.task).STAGES)
    except ValueError as err:
        raise ConfigError(str(err)) from None


@cache
def stage_module(name: str, task: str) -> StageModule:
    """The task's module for stage ``name`` (its ``STAGES``, ``stages.tasks``), imported on first use: a
    stage module is its interface (name, version, inputs, fingerprint slice) and imports nothing heavy; its
    ``run`` loads the rest."""
    modules = task_of(task).STAGES
    if name not in modules:
        raise StageError(f"unknown stage {name!r} for task {task}; stages: {', '.join(modules)}")
    return importlib.import_module(modules[name])


class MissingInputs(StageError):
    """A single stage was asked for before the stages it reads."""


def open_manifest(cfg: Config, read_only: bool = False) -> Manifest | None:
    """The work directory's manifest; read-only, None when there is none yet (nothing is created)."""
    path = Path(cfg.paths.workdir) / MANIFEST_FILE
    if read_only and not path.exists():
        return None
    return Manifest(path, read_only=read_only)


def completed(manifest: Manifest | None, workdir: Path, name: str, fp: str | None) -> StageRun | None:
    """The complete run of (stage, fingerprint) whose output is still in this work directory."""
    if manifest is None or fp is None:
        return None
    record = manifest.latest_stage_run(name, fp, status="complete")
    if record is None or not stage_dir(workdir, name, fp).exists():
        return None
    return record


def complete_output(cfg: Config, stage: str) -> Path | None:
    """The output folder of the config's complete run of ``stage`` in its work directory, or None."""
    manifest = open_manifest(cfg, read_only=True)
    fp = fingerprints(cfg, manifest).get(stage) if manifest else None
    return stage_dir(cfg.paths.workdir, stage, fp) if completed(manifest, Path(cfg.paths.workdir), stage, fp) else None


def stage_payload(cfg: Config, manifest: Manifest | None, name: str, fps: dict[str, str | None]
                  ) -> dict[str, Any] | None:
    """What stage ``name``'s fingerprint hashes, or None while an input's digest is not known yet."""
    stage, workdir = stage_module(name, cfg.task), Path(cfg.paths.workdir)
    inputs = {}
    for inp in stage.INPUTS:
        key = getattr(stage, "INPUT_DIGESTS", {}).get(inp)
        if key is None:  # depends on the input's fingerprint
            value = fps[inp]
        else:  # depends on a digest of the input's output
            record = completed(manifest, workdir, inp, fps[inp])
            value = record.digests.get(key) if record else None
        if value is None:
            return None
        inputs[inp if key is None else f"{inp}.{key}"] = value
    extra = stage.workdir_inputs(manifest, workdir) if hasattr(stage, "workdir_inputs") else None
    return payload(name, stage.VERSION, stage.fingerprint_config(cfg), inputs, extra)


def check_config(cfg: Config, source: str = "") -> Config:
    """Each stage's own checks of what its plug-ins allow (``check_config``: registered datasets in their roles, a
    method's settings): a ConfigError naming ``source`` (the config file) and the key."""
    try:
        for name in stages_of(cfg):
            getattr(stage_module(name, cfg.task), "check_config", lambda _: None)(cfg)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}" if source else str(err)) from None
    return cfg


def fingerprints(cfg: Config, manifest: Manifest | None = None) -> dict[str, str | None]:
    """Every stage's fingerprint for this config, inputs first; None where an input must run first. Each stage's
    ``check_config`` runs first."""
    check_config(cfg)
    if manifest is None:
        manifest = open_manifest(cfg, read_only=True)
    fps: dict[str, str | None] = {}
    for name in stages_of(cfg):
        p = stage_payload(cfg, manifest, name, fps)
        fps[name] = None if p is None else fingerprint(p)
    return fps


@dataclass(frozen=True)
class Outcome:
    stage: str
    skipped: bool
    record: StageRun


def run_pipeline(cfg: Config, only: list[str] | None = None, skip: tuple[str, ...] = ()) -> list[Outcome]:
    """Run every stage but ``skip`` (or ``only`` these, whose inputs must then be complete); say what happened."""
    workdir = Path(cfg.paths.workdir).resolve()  # Ray workers run elsewhere: every path they get is absolute
    known = stages_of(cfg)
    names = [n for n in known if n not in skip] if only is None else only
    for name in names:
        if name not in known:
            raise StageError(f"unknown stage {name!r} for task {cfg.task}; stages: {', '.join(known)}")
    with WorkdirLock(workdir):
        manifest = open_manifest(cfg)
        run_id = manifest.start_run(" ".join(sys.argv[1:]) or "run_pipeline")
        outcomes: list[Outcome] = []
        try:
            for name in names:
                outcomes.append(_run_one(cfg, manifest, run_id, name))
        except BaseException as err:
            manifest.end_run(run_id, "failed", f"{type(err).__name__}: {err}")
            raise
        manifest.end_run(run_id, "complete")
        return outcomes


def completion(name: str, fp: str, stage_pl: dict[str, Any], rows: int | None, details: dict[str, Any],
               digests: dict[str, str]) -> dict[str, Any]:
    """What a completion record (``pipeline.outputs``) holds besides the outputs: what the manifest records."""
    return {"stage": name, "fingerprint": fp, "payload": stage_pl, "rows": rows, "details": details,
            "digests": digests}


def repair(manifest: Manifest, stage: StageModule, name: str, fp: str, out_dir: Path, problems: list[Problem]) -> None:
    """A complete stage whose outputs were damaged or deleted since: its record is withdrawn, and either only
    its damaged shards are removed (sharded stages redo just those) or its directory is, and it runs again."""
    import shutil

    manifest.withdraw_stage(name, fp)
    shards = [p for p in problems if p.path.name.startswith("shard-")]
    found = "; ".join(map(str, problems[:3])) + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else "")
    if getattr(stage, "SHARDED", False) and len(shards) == len(problems):
        for p in shards:
            p.path.unlink(missing_ok=True)
        (out_dir / COMPLETE_FILE).unlink(missing_ok=True)
        console.print(f"[yellow]![/] {name}: damaged output of a complete run: {found}; redoing "
                      f"{len(shards)} shard(s)", highlight=False, soft_wrap=True)
        return
    shutil.rmtree(out_dir, ignore_errors=True)
    console.print(f"[yellow]![/] {name}: damaged output of a complete run: {found}; running the stage again",
                  highlight=False, soft_wrap=True)


def adopt(manifest: Manifest, run_id: str, stage: StageModule, name: str, fp: str, stage_pl: dict[str, Any],
          out_dir: Path) -> StageRun | None:
    """A stage the manifest has no complete record of (it was deleted, or the run died between the two writes),
    whose outputs are on disk with this fingerprint and intact: recorded as complete instead of run again."""
    record = read_record(out_dir)
    if record is None or record.get("fingerprint") != fp or check_outputs(out_dir):
        return None
    stage_run_id = manifest.start_stage(run_id, name, fp, out_dir, stage_pl)
    if getattr(stage, "SHARDED", False):
        for rel, entry in record["outputs"].items():
            if rel.startswith("shard-") and rel.endswith((".parquet", ".arrow")):
                manifest.record_shard(name, fp, int(rel[6:11]), "complete", rows=entry.get("rows"), path=out_dir / rel)
    manifest.end_stage(stage_run_id, "complete", rows=record.get("rows"), details=record.get("details"),
                       digests=record.get("digests"))
    console.print(f"[green]✓[/] {name}: complete on disk with fingerprint {fp[:12]} and intact, adopted "
                  "(the manifest had no record of it)", soft_wrap=True)
    return manifest.latest_stage_run(name, fp)


def _run_one(cfg: Config, manifest: Manifest, run_id: str, name: str) -> Outcome:
    stage, workdir = stage_module(name, cfg.task), Path(cfg.paths.workdir).resolve()
    fps = fingerprints(cfg, manifest)
    missing = [i for i in stage.INPUTS if completed(manifest, workdir, i, fps[i]) is None]
    if missing:  # within a full run the inputs ran first, so only a single stage gets here
        raise MissingInputs(f"stage {name} needs {', '.join(missing)} complete first "
                            f"(run `semidavil stage {missing[0]}` or `semidavil run`)")
    stage_pl = stage_payload(cfg, manifest, name, fps)
    fp = fingerprint(stage_pl)
    out_dir = stage_dir(workdir, name, fp)
    if (done := completed(manifest, workdir, name, fp)) is not None:
        if not (out_dir / COMPLETE_FILE).exists():  # completed by a version that did not record its outputs
            write_record(out_dir, completion(name, fp, stage_pl, done.rows, done.details, done.digests))
        if not (problems := check_outputs(out_dir)):
            console.print(f"[green]✓[/] {name}: complete with fingerprint {fp[:12]}, skipped")
            return Outcome(name, True, done)
        repair(manifest, stage, name, fp, out_dir, problems)
    elif (adopted := adopt(manifest, run_id, stage, name, fp, stage_pl, out_dir)) is not None:
        return Outcome(name, True, adopted)
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = StageContext(cfg, name, fp, out_dir, {i: stage_dir(workdir, i, fps[i]) for i in stage.INPUTS},
                       manifest, workdir)
    console.print(f"[bold]▶ {name}[/] (fingerprint {fp[:12]}) → {out_dir}")
    stage_run_id = manifest.start_stage(run_id, name, fp, out_dir, stage_pl)
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
    write_record(out_dir, completion(name, fp, stage_pl, result.rows, result.details, result.digests))
    manifest.end_stage(stage_run_id, "complete", rows=result.rows, details=result.details, digests=result.digests)
    record = manifest.latest_stage_run(name, fp)
    console.print(f"[green]✓[/] {name}: {result.rows} rows in {record.seconds:.1f} s")
    return Outcome(name, False, record)


def status_rows(cfg: Config) -> list[dict[str, object]]:
    """One row per stage for this config: status, fingerprint, rows, duration, output path."""
    manifest = open_manifest(cfg, read_only=True)
    workdir = Path(cfg.paths.workdir)
    rows = []
    for name, fp in fingerprints(cfg, manifest).items():
        record = manifest.latest_stage_run(name, fp) if manifest and fp else None
        if fp is None:
            status = "pending"
        elif record is not None and record.status == "complete" and completed(manifest, workdir, name, fp) is None:
            status = "output missing"
        else:
            status = record.status if record else "pending"
        rows.append({"stage": name, "status": status, "fingerprint": fp[:12] if fp else "-",
                     "rows": record.rows if record else None, "seconds": record.seconds if record else None,
                     "output": record.output_path if record else None,
                     "details": record.details if record and record.status == "complete" else {},
                     "error": record.error if record and record.status != "complete" else None})
    return rows


def rejected_files(cfg: Config) -> list[tuple[str, str, str]]:
    manifest = open_manifest(cfg, read_only=True)
    if manifest is None:
        return []
    fps = fingerprints(cfg, manifest)
    return [r for name in stages_of(cfg) if fps[name] for r in manifest.rejected(name, fps[name])]
