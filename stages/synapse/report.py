"""The volumetric task's report: the paper's Table 5 for the evaluated runs of a work directory.

Rows: method × {CE, DyCE} (runs that differ only in their seed share a row, as mean ± std), columns: mean DSC
and ASD over the test cases and organs, then the DSC of each organ, and the paper's published mean DSC / ASD
in a column of its own. Below: training curves and example slices image | ground truth | prediction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.volumes import methods
from pipeline.stage import StageContext, StageResult
from pipeline.store import write_atomic, write_parquet
from stages.records import records_table
from stages.reporting import Table, mean_std
from stages.synapse import SYNAPSE

ORGANS = [SYNAPSE.names[o] for o in SYNAPSE.subsets["organs"]]
TEMPLATE = Path(__file__).with_name("report.html.j2")
CURVES = (("loss", "total loss"), ("loss_sup", "supervised"), ("loss_unsup", "unsupervised"), ("lr", "learning rate"),
          ("eval_dsc", "mean DSC on the eval cases (model selection)"))


def row_key(run: dict[str, Any]) -> tuple[str, bool]:
    return run["method"], bool(run["dyce"])


def grouped(runs: list[dict[str, Any]]) -> list[tuple[str, bool, list[dict[str, Any]]]]:
    """Runs that differ only in their seed, as (method, DyCE, runs), in the registry's order, CE first."""
    groups: dict[tuple[str, bool], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault(row_key(r), []).append(r)
    order = sorted(groups, key=lambda k: (methods.names().index(k[0]), k[1]))
    return [(method, dyce, groups[(method, dyce)]) for method, dyce in order]


def row_name(method: str, dyce: bool) -> str:
    return f"{methods.spec(method).DISPLAY}{' + DyCE' if dyce else ''}"


LEGEND = "Organs: " + ", ".join(f"{short} {name}" for short, name in zip(SYNAPSE.short[1:], ORGANS, strict=True)) + "."


def table5(runs: list[dict[str, Any]]) -> Table:
    rows = []
    for method, dyce, rs in grouped(runs):
        paper = methods.spec(method).PAPER.get(dyce)  # as the paper's Table 5 publishes it (20 % labelled Synapse)
        rows.append([row_name(method, dyce), str(len(rs)),
                     mean_std([r["mean_dsc"] for r in rs]), mean_std([r["mean_asd"] for r in rs], 1.0),
                     *(mean_std([r["per_class"][o]["dsc"] for r in rs]) for o in ORGANS),
                     f"{paper[0]:.1f} / {paper[1]:.1f}" if paper else "-"])
    header = ["method", "runs", "mean DSC ↑", "ASD ↓", *SYNAPSE.short[1:], "paper: DSC / ASD"]
    return Table("table-5", "DyCE as a plug-in for semi-supervised 3D segmentation (paper Table 5)", header, rows,
                 "DSC in %, ASD in voxels of the evaluated grid, on the test cases; mean over cases, then organs "
                 "(DHC's rules for an organ missing from prediction or ground truth). Several runs (seeds) of a row: "
                 "mean ± std. The paper column is Synapse at 20 % labelled, as published; the rest was measured on "
                 "these runs. " + LEGEND)


def organ_distances(runs: list[dict[str, Any]]) -> Table:
    """ASD per organ in voxels (DHC's figure) and, where the CT's voxel size is known, ASD and HD95 in mm."""
    rows = []
    for method, dyce, rs in grouped(runs):
        for key, unit in (("asd", "ASD (voxels)"), ("asd_mm", "ASD (mm)"), ("hd95_mm", "HD95 (mm)")):
            cells = [mean_std([r["per_class"][o].get(key, float("nan")) for r in rs], 1.0) for o in ORGANS]
            if any(c != "-" for c in cells):
                rows.append([row_name(method, dyce), unit, *cells])
    return Table("table-5-distances", "Surface distances per organ", ["method", "measure", *SYNAPSE.short[1:]], rows,
                 "Mean over the test cases (an organ in prediction or ground truth only: 128 voxels by DHC's rule, "
                 "left out in mm). " + LEGEND)


def run_name(r: dict[str, Any]) -> str:
    return f"{row_name(r['method'], r['dyce'])} (seed {r.get('seed', 0)})"


def report(ctx: StageContext, runs: list[dict[str, Any]]) -> StageResult:
    import pyarrow as pa

    from stages.reporting import curves_figure, render_template
    from stages.trained import read_metrics

    tables = [table5(runs), organ_distances(runs)]
    curves = curves_figure([(run_name(r), read_metrics(Path(r["train_dir"]))) for r in runs],
                           ctx.out_dir / "curves.png", CURVES)
    text = "\n\n".join([f"# SemiDAViL report (Synapse task): {ctx.workdir}",
                        f"{len(runs)} evaluated run(s).", *(t.markdown() for t in tables), "## Training curves",
                        f"![training curves]({curves})"]) + "\n"
    write_atomic(ctx.out_dir / "report.md", lambda tmp: tmp.write_text(text))
    examples = [{"name": run_name(r), "rows": [[_copy(e[k], ctx.out_dir, f"run{i}") for k in ("image", "label", "prediction")]
                                               + [f"case {e['case']}, slice {e['slice']}"] for e in r.get("examples", [])]}
                for i, r in enumerate(runs)]
    render_template(TEMPLATE, {"workdir": str(ctx.workdir), "runs": runs, "tables": tables, "curves": curves,
                               "examples": examples}, ctx.out_dir / "index.html")
    flat = [{"method": r["method"], "dyce": r["dyce"], "seed": r.get("seed", 0), "mean_dsc": r["mean_dsc"],
             "mean_asd": r["mean_asd"], **{f"dsc_{o}": r["per_class"][o]["dsc"] for o in ORGANS}} for r in runs]
    fields = {"method": pa.string(), "dyce": pa.bool_(), "seed": pa.int64(), "mean_dsc": pa.float64(),
              "mean_asd": pa.float64(), **{f"dsc_{o}": pa.float64() for o in ORGANS}}
    write_parquet(records_table(flat, fields), ctx.out_dir / "runs.parquet")
    return StageResult(len(runs), {"report": str(ctx.out_dir / "index.html")})


def _copy(path: str, out_dir: Path, key: str) -> str:
    import shutil

    target = out_dir / "slices" / f"{key}_{Path(path).name}"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, target)
    return f"slices/{target.name}"
