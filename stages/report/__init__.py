"""Stage 6, report (every task's): the evaluated runs of a work directory as the task's tables (DESIGN §1).

Reads the output of every complete evaluate stage run of the work directory (``metrics.json`` and
``run.json``) of the config's task and hands them to the task's ``write_report`` (``stages.tasks``): the street
task's Tables 1-4 (``stages/street/report/``), the synapse task's Table 5 (``stages/synapse/report.py``). The
list of those runs is an input of the report's fingerprint: a newly evaluated run makes a new report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.manifest import Manifest
from pipeline.stage import StageContext, StageError, StageResult, stage_dir
from stages.tasks import LEGACY, task_of

NAME = "report"
VERSION = 3  # 2: the evaluated runs are a fingerprint input; mean ± std over seeds; 3: HTML, figures, paper column
INPUTS = ("evaluate",)


def fingerprint_config(cfg: Config) -> dict[str, Any]:
    return task_of(cfg.task).REPORT_KEYS(cfg)


def evaluated(manifest: Manifest | None, workdir: Path) -> list[str]:
    """Fingerprints of the complete evaluate runs whose outputs are in ``workdir``, oldest first."""
    runs = manifest.stage_runs("evaluate", status="complete") if manifest else []
    fps = [r.fingerprint for r in reversed(runs) if (stage_dir(workdir, "evaluate", r.fingerprint) / "run.json").exists()]
    return list(dict.fromkeys(fps))


def workdir_inputs(manifest: Manifest | None, workdir: Path) -> dict[str, Any]:
    return {"evaluated runs": evaluated(manifest, workdir)}


def collect_runs(workdir: Path, fingerprints: list[str]) -> list[dict[str, Any]]:
    """These evaluated runs: each one's run.json merged with its metrics.json, and where its outputs are."""
    runs = []
    for fp in fingerprints:
        out = stage_dir(workdir, "evaluate", fp)
        runs.append({**json.loads((out / "run.json").read_text()), **json.loads((out / "metrics.json").read_text()),
                     "evaluate_dir": str(out)})
    return runs


def run(ctx: StageContext) -> StageResult:
    """The task's report (``write_report(ctx, runs)`` of its package) over its evaluated runs in the work directory."""
    runs = [r for r in collect_runs(ctx.workdir, evaluated(ctx.manifest, ctx.workdir))
            if r.get("task", LEGACY) == ctx.cfg.task]  # a work directory may hold several tasks' runs
    if not runs:
        raise StageError(f"{ctx.workdir}: no evaluated run of task {ctx.cfg.task} to report")
    return task_of(ctx.cfg.task).write_report(ctx, runs)
