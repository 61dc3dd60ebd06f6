"""The street task's report: its evaluated runs as the paper's Tables 1-4 (DESIGN §1).

Runs with other settings (labelled counts, DyCE on/off, DLG, VLP) line up as in the paper; runs that differ only
in their seeds share a cell, shown as mean ± std.

- Tables 1/2: mIoU per method (rows) and number of labelled target images (columns), per benchmark;
- Table 3: the ablation of CT, DyCE, VLP and DLG, with the paper's published figures (the source dataset's
  ``PAPER_TABLE3``) in a column of their own, marked as the paper's;
- Table 4: per-class IoU of each run;
- training curves (every loss term, learning rate, pseudo-labelled share), a per-class IoU bar chart,
  confusion matrices and example rows image | ground truth | prediction (| the same without DyCE).

Writes ``index.html`` (jinja2, self-contained with its figures and ``examples/``; ``html.py``),
``report.md`` (the same tables), ``runs.parquet`` and the figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.stage import StageContext, StageResult
from pipeline.store import write_atomic, write_parquet
from stages.records import records_table
from stages.reporting import Table, mean_std, pct
from stages.street.datasets import eval_class_sets, paper_table3

LABELLED_COLUMNS = (0, 100, 200, 500, 1000, "all")


def run_fields(classes: tuple[str, ...], mious: tuple[str, ...] = ()) -> dict[str, pa.DataType]:
    """The street task's run record (``runs.parquet``): what evaluate and train's setup write, each key typed, so
    that runs of any settings tabulate together (a run without consistency training has no colour jitter)."""
    text, flag, whole, real = pa.string(), pa.bool_(), pa.int64(), pa.float64()
    return {"source": text, "target": text, "labelled_target": text, "split_file": text, "selection": text,
            "seed": pa.list_(whole),
            "ct": flag, "mixing": text, "colour_jitter": real, "pasted_gt": text, "dyce": flag, "dlg": flag,
            "dlg_captions": text, "vlp": flag, "vision_init": text, "vision_model": text, "iterations": whole,
            "labelled_target_images": whole, "unlabelled_images": whole, "source_images": whole,
            "mIoU19": real, "mIoU16": real, "mIoU13": real, "images": whole, "evaluate_fingerprint": text,
            "train_dir": text, "evaluate_dir": text, "headline": text, **{k: real for k in mious},
            **{f"iou_{c}": real for c in classes}}


def check(flag: bool) -> str:
    return "✓" if flag else "-"


def headline(run: dict[str, Any]) -> tuple[str, str]:
    """The class set a run is judged on (its evaluation says which: a folder target's own classes; mIoU16 for
    SYNTHIA; mIoU19 otherwise)."""
    key = run.get("headline") or f"mIoU{eval_class_sets(run['source'])[0]}"
    return key, pct(run[key])


def class_names(runs: list[dict[str, Any]]) -> list[str]:
    """Every class the runs were scored on, in their order (one target's classes; a work directory that holds
    runs on other targets lists each target's)."""
    return list(dict.fromkeys(c for r in runs for c in r["per_class"]))


COMPONENTS = (("CT", "ct"), ("DyCE", "dyce"), ("VLP", "vlp"), ("DLG", "dlg"))


def captions_of(run: dict[str, Any]) -> str:
    """Whose captions DLG read: own, shuffled or empty ("-" without DLG; runs from before the key: own)."""
    return run.get("dlg_captions", "own") if run["dlg"] else "-"


def method_name(run: dict[str, Any]) -> str:
    """``SemiDAViL`` with all four components; otherwise the ones used, e.g. ``CT+DyCE (random init)``; DLG fed
    other images' captions or none says so: ``SemiDAViL, shuffled captions``."""
    used = [name for name, key in COMPONENTS if run[key]]
    name = "SemiDAViL" if len(used) == len(COMPONENTS) else "+".join(used) or "supervised"
    name = name if run["vlp"] else f"{name} ({run['vision_init']} init)"
    return name if captions_of(run) in ("own", "-") else f"{name}, {captions_of(run)} captions"


def run_name(run: dict[str, Any]) -> str:
    return f"{method_name(run)}, N={run['labelled_target']}, seed {run['seed'][-1]}"


def selection(run: dict[str, Any]) -> str:
    """How the run's labelled target images were chosen (runs from before the key: the seeded draw)."""
    return run.get("selection") or "random"


def benchmark_tables(runs: list[dict[str, Any]]) -> list[Table]:
    """Tables 1/2: one per source → target, methods × labelled target images; with a column of how the labelled
    images were chosen where runs chose them differently (``semidavil select``)."""
    out = []
    for bench in sorted({(r["source"], r["target"]) for r in runs}):
        group = [r for r in runs if (r["source"], r["target"]) == bench]
        key, chosen = headline(group[0])[0], len({selection(r) for r in group}) > 1
        cols = [c for c in LABELLED_COLUMNS if any(r["labelled_target"] == c for r in group)]
        cols += sorted({r["labelled_target"] for r in group} - set(cols), key=str)
        rows = []
        for method, how in sorted({(method_name(r), selection(r)) for r in group}):
            match = [[r for r in group if (method_name(r), selection(r)) == (method, how) and r["labelled_target"] == c]
                     for c in cols]
            rows.append([method, *([how] if chosen else []), *(mean_std([r[key] for r in m]) if m else "" for m in match)])
        out.append(Table(f"table-{bench[0]}-{bench[1]}", f"{bench[0]} → {bench[1]}: {key} by labelled target "
                         "images (paper Tables 1-2)", ["method", *(["labelled images chosen by"] if chosen else []),
                                                       *map(str, cols)], rows))
    return out


def paper_value(components: tuple[bool, ...], source: str, target: str, labelled: Any) -> str:
    """The paper's Table 3 figure for this cell (the source dataset's ``PAPER_TABLE3``), or "-" where it has none."""
    table = paper_table3(source, target)
    published = table.get("rows", {}).get(components)
    if published is None or labelled not in table["labelled"]:
        return "-"
    return f"{published[table['labelled'].index(labelled)]:.1f}"


def ablation_table(runs: list[dict[str, Any]]) -> Table:
    """Table 3: CT, DyCE, VLP, DLG against mIoU; runs that differ only in seed share a row."""
    cells: dict[tuple, list[float]] = {}
    for r in runs:
        row = (r["ct"], r["dyce"], r["vlp"], r["dlg"], captions_of(r), r["source"], r["target"], r["labelled_target"],
               headline(r)[0])
        cells.setdefault(row, []).append(r[row[-1]])
    rows = [[*map(check, row[:4]), row[4], f"{row[5]}→{row[6]}", str(row[7]), row[8], mean_std(values),
             str(len(values)), paper_value(row[:4], row[5], row[6], row[7]) if row[4] in ("own", "-") else "-"]
            for row, values in sorted(cells.items(), key=lambda kv: [str(k) for k in kv[0]])]
    return Table("table-3", "Components (paper Table 3)",
                 ["CT", "DyCE", "VLP", "DLG", "DLG captions", "benchmark", "labelled", "class set", "mIoU", "runs",
                  "paper (published)"],
                 rows, "The last column is the paper's published mIoU for the same components, benchmark and "
                 "labelled count (GTA5/SYNTHIA → Cityscapes only), not a measurement of ours. 'DLG captions': "
                 "each image's own caption, another image's (shuffled) or none (empty): where own beats shuffled, "
                 "what a caption says changes the segmentation.")


def class_table(runs: list[dict[str, Any]]) -> Table:
    """Table 4: per-class IoU of each run, with the strong views its consistency training actually ran."""
    names = class_names(runs)
    rows = [[run_name(r), r.get("mixing", "-"), *(pct(r["per_class"].get(c, float("nan"))) for c in names),
             headline(r)[1]] for r in runs]
    return Table("table-4", "Per-class IoU (paper Table 4)", ["run", "CT's strong views", *names, "mIoU"], rows,
                 "'CT's strong views': which mixing ran (train/<fp>/setup.json); the shares of strong-view pixels "
                 "taught by pasted ground truth and by pseudo-labels are in the training curves.")


def figures(runs: list[dict[str, Any]], out_dir: Path) -> dict[str, Any]:
    from stages.reporting import confusion_figure, curves_figure, per_class_figure
    from stages.street.report.html import CURVES
    from stages.trained import read_metrics

    names = [run_name(r) for r in runs]
    confusions = []
    for k, (r, name) in enumerate(zip(runs, names, strict=True)):
        path = Path(r["evaluate_dir"]) / "confusion.npy"
        if path.exists():
            confusions.append({"name": name, "path": confusion_figure(np.load(path), list(r["per_class"]), name,
                                                                      out_dir / f"confusion_{k}.png")})
    return {"curves": curves_figure([(n, read_metrics(Path(r["train_dir"]))) for r, n in zip(runs, names, strict=True)],
                                    out_dir / "curves.png", CURVES),
            "per_class": per_class_figure([(n, r["per_class"]) for r, n in zip(runs, names, strict=True)],
                                          class_names(runs), out_dir / "per_class.png"),
            "confusion": confusions}


def without_dyce(run: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The run that is this one but for DyCE (the paper's Figure 4 pairing), if there is one."""
    same = ("ct", "vlp", "dlg", "source", "target", "labelled_target", "vision_init")
    if not run["dyce"]:
        return None
    return next((r for r in runs if not r["dyce"] and all(r[k] == run[k] for k in same)
                 and captions_of(r) == captions_of(run)), None)


def example_groups(runs: list[dict[str, Any]], out_dir: Path) -> list[dict[str, Any]]:
    """Per run with saved predictions: rows image | ground truth | prediction (| prediction without DyCE), each
    with the caption DLG read for the image."""
    from stages.street.report.html import example_cells

    groups = []
    for k, r in enumerate(runs):
        partner = without_dyce(r, runs)
        theirs = {e["image_id"]: e for e in partner.get("examples", [])} if partner else {}
        rows = []
        for e in r.get("examples", []):
            cells = example_cells(e, out_dir, f"run{k}")
            if partner:
                other = theirs.get(e["image_id"])
                cells.append(example_cells(other, out_dir, f"run{runs.index(partner)}")[2] if other else "")
            rows.append({"cells": cells, "caption": caption_text(e, r)})
        if rows:
            header = ["image", "ground truth", "prediction"] + (["prediction without DyCE"] if partner else [])
            groups.append({"name": run_name(r), "header": header, "rows": rows})
    return groups


def caption_text(example: dict[str, Any], run: dict[str, Any]) -> str:
    """What the report prints under an example: the caption DLG read, quoted, or why there is none."""
    if not run["dlg"]:
        return "(no DLG: no caption read)"
    caption = example.get("caption")
    if caption is None:
        return "(caption not recorded)"
    return f"“{caption}”" if caption else "(empty caption)"


def legend(cfg: Any) -> list[dict[str, str]]:
    """The target's classes and their colours in the example panels."""
    from stages.street.datasets import class_set

    classes = class_set(cfg.data)
    return [{"name": n, "colour": "#{:02x}{:02x}{:02x}".format(*map(int, c))}
            for n, c in zip(classes.names, classes.palette, strict=True)]


def report(ctx: StageContext, runs: list[dict[str, Any]]) -> StageResult:
    """The street task's report of its evaluated ``runs``: report.md, index.html with its figures, runs.parquet."""
    from stages.street.report.html import render

    tables = [*benchmark_tables(runs), ablation_table(runs), class_table(runs)]
    figs = figures(runs, ctx.out_dir)
    text = "\n\n".join([
        f"# SemiDAViL report: {ctx.workdir}",
        f"{len(runs)} evaluated run(s) in this work directory. mIoU in %, on the target val split. "
        "`index.html` beside this file has the same tables with figures and examples.",
        *(t.markdown() for t in tables),
        "## Training curves", f"![training curves]({figs['curves']})",
    ]) + "\n"
    write_atomic(ctx.out_dir / "report.md", lambda tmp: tmp.write_text(text))
    render({"workdir": str(ctx.workdir), "runs": runs, "tables": tables, "figures": figs, "legend": legend(ctx.cfg),
            "examples": example_groups(runs, ctx.out_dir)}, ctx.out_dir / "index.html")
    names = class_names(runs)
    flat = [{k: v for k, v in r.items() if k not in ("per_class", "examples")}
            | {f"iou_{c}": r["per_class"].get(c) for c in names} for r in runs]
    mious = tuple(sorted({k for r in runs for k in r if k.startswith("mIoU")}))
    write_parquet(records_table(flat, run_fields(tuple(names), mious)), ctx.out_dir / "runs.parquet")
    return StageResult(len(runs), {"report": str(ctx.out_dir / "index.html")})
