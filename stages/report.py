"""Stage 6, report: the evaluated runs of a work directory as the paper's tables (DESIGN §1).

Reads the output of every complete evaluate stage run of the work directory (``metrics.json`` and
``run.json``), so runs with other settings (labelled counts, DyCE on/off, DLG, VLP) line up as in the
paper. The list of those runs is an input of the report's fingerprint: a newly evaluated run makes a new
report. Runs that differ only in their seeds share a cell, shown as mean ± std.

- Tables 1/2: mIoU per method (rows) and number of labelled target images (columns), per benchmark;
- Table 3: the ablation of CT, DyCE, VLP and DLG;
- Table 4: per-class IoU of each run;
- ``loss.png``: the training loss of each run.

Writes ``report.md``, ``runs.parquet`` and ``loss.png``.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline.config import Config
from pipeline.manifest import Manifest
from pipeline.stage import StageContext, StageError, StageResult, stage_dir
from pipeline.store import atomic_path, write_atomic, write_parquet
from stages.datasets import CLASSES, eval_class_sets

NAME = "report"
VERSION = 2  # 2: the evaluated runs are a fingerprint input; mean ± std over seeds
INPUTS = ("evaluate",)
LABELLED_COLUMNS = (0, 100, 200, 500, 1000, "all")


def fingerprint_config(cfg: Config) -> dict[str, Any]:
    return {}


def evaluated(manifest: Manifest | None, workdir: Path) -> list[str]:
    """Fingerprints of the complete evaluate runs whose outputs are in ``workdir``, oldest first."""
    runs = manifest.stage_runs("evaluate", status="complete") if manifest else []
    fps = [r.fingerprint for r in reversed(runs) if (stage_dir(workdir, "evaluate", r.fingerprint) / "run.json").exists()]
    return list(dict.fromkeys(fps))


def workdir_inputs(manifest: Manifest | None, workdir: Path) -> dict[str, Any]:
    return {"evaluated runs": evaluated(manifest, workdir)}


def collect_runs(workdir: Path, fingerprints: list[str]) -> list[dict[str, Any]]:
    """These evaluated runs: each one's run.json merged with its metrics.json."""
    runs = []
    for fp in fingerprints:
        out = stage_dir(workdir, "evaluate", fp)
        runs.append({**json.loads((out / "run.json").read_text()), **json.loads((out / "metrics.json").read_text())})
    return runs


def pct(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"


def mean_std(values: list[float]) -> str:
    """One value as ``71.1``; several (seeds) as ``71.1 ± 0.4`` (sample std); NaNs left out."""
    finite = [v for v in values if v is not None and not math.isnan(v)]
    if len(finite) < 2:
        return pct(finite[0] if finite else None)
    return f"{pct(statistics.mean(finite))} ± {100 * statistics.stdev(finite):.1f}"


def check(flag: bool) -> str:
    return "✓" if flag else "-"


def headline(run: dict[str, Any]) -> tuple[str, str]:
    """The class set a run is judged on: mIoU16 for SYNTHIA, mIoU19 otherwise."""
    key = f"mIoU{eval_class_sets(run['source'])[0]}"
    return key, pct(run[key])


COMPONENTS = (("CT", "ct"), ("DyCE", "dyce"), ("VLP", "vlp"), ("DLG", "dlg"))


def method_name(run: dict[str, Any]) -> str:
    """``SemiDAViL`` with all four components; otherwise the ones used, e.g. ``CT+DyCE (random init)``."""
    used = [name for name, key in COMPONENTS if run[key]]
    name = "SemiDAViL" if len(used) == len(COMPONENTS) else "+".join(used) or "supervised"
    return name if run["vlp"] else f"{name} ({run['vision_init']} init)"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(r) + " |" for r in rows)])


def benchmark_tables(runs: list[dict[str, Any]]) -> str:
    """Tables 1/2: one per source → target, methods × labelled target images."""
    out = []
    for bench in sorted({(r["source"], r["target"]) for r in runs}):
        group = [r for r in runs if (r["source"], r["target"]) == bench]
        key = headline(group[0])[0]
        cols = [c for c in LABELLED_COLUMNS if any(r["labelled_target"] == c for r in group)]
        cols += sorted({r["labelled_target"] for r in group} - set(cols), key=str)
        rows = []
        for method in sorted({method_name(r) for r in group}):
            cells = []
            for col in cols:
                match = [r for r in group if method_name(r) == method and r["labelled_target"] == col]
                cells.append(mean_std([r[key] for r in match]) if match else "")
            rows.append([method, *cells])
        out.append(f"### {bench[0]} → {bench[1]} ({key}, labelled target images)\n\n"
                   + table(["method", *map(str, cols)], rows))
    return "\n\n".join(out)


def ablation_table(runs: list[dict[str, Any]]) -> str:
    """Table 3: CT, DyCE, VLP, DLG against mIoU; runs that differ only in seed share a row."""
    cells: dict[tuple, list[float]] = {}
    for r in runs:
        row = (check(r["ct"]), check(r["dyce"]), check(r["vlp"]), check(r["dlg"]), f"{r['source']}→{r['target']}",
               str(r["labelled_target"]), headline(r)[0])
        cells.setdefault(row, []).append(r[row[-1]])
    rows = [[*row[:-1], mean_std(values), str(len(values))] for row, values in cells.items()]
    return table(["CT", "DyCE", "VLP", "DLG", "benchmark", "labelled", "mIoU", "runs"], rows)


def class_table(runs: list[dict[str, Any]]) -> str:
    """Table 4: per-class IoU of each run."""
    rows = [[f"{method_name(r)}, N={r['labelled_target']}, seed {r['seed'][-1]}", *(pct(r["per_class"][c]) for c in CLASSES),
             headline(r)[1]] for r in runs]
    return table(["run", *CLASSES, "mIoU"], rows)


def loss_plot(runs: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from stages.trained import read_metrics

    fig, ax = plt.subplots(figsize=(7, 4))
    for r in runs:
        metrics = read_metrics(Path(r["train_dir"]))
        if metrics:
            ax.plot([m["step"] for m in metrics], [m["loss"] for m in metrics],
                    label=f"{method_name(r)}, N={r['labelled_target']}")
    ax.set_xlabel("iteration")
    ax.set_ylabel("training loss (L_sup + λ·L_CT)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def run(ctx: StageContext) -> StageResult:
    runs = collect_runs(ctx.workdir, evaluated(ctx.manifest, ctx.workdir))
    if not runs:
        raise StageError(f"{ctx.workdir}: no evaluated run to report")
    text = "\n\n".join([
        f"# SemiDAViL report: {ctx.workdir}",
        f"{len(runs)} evaluated run(s) in this work directory. mIoU in %, on the target val split.",
        "## mIoU by labelled target images (paper Tables 1-2)", benchmark_tables(runs),
        "## Components (paper Table 3)", ablation_table(runs),
        "## Per-class IoU (paper Table 4)", class_table(runs),
        "## Training loss", "![training loss](loss.png)",
    ]) + "\n"
    write_atomic(ctx.out_dir / "report.md", lambda tmp: tmp.write_text(text))
    flat = [{k: v for k, v in r.items() if k != "per_class"} | {f"iou_{c}": r["per_class"][c] for c in CLASSES}
            for r in runs]
    write_parquet(pa.Table.from_pylist([{k: str(v) if k == "labelled_target" else v for k, v in f.items()}
                                        for f in flat]), ctx.out_dir / "runs.parquet")
    loss_plot(runs, ctx.out_dir / "loss.png")
    return StageResult(len(runs), {"report": str(ctx.out_dir / "report.md")})
