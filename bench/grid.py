"""What the grid benchmarks (``consistency.py``, ``language.py``) share: a variant trained and evaluated as an
ordinary run of one work directory, its training run in this process, and the Markdown table of results.

Every variant is a ``run_pipeline`` of the demo config with a few keys set, so the world, its captions and
text embeddings are made once per work directory, and a variant already evaluated is read back, not redone.
"""

from __future__ import annotations

import json
import statistics
import time

from pipeline.config import load_config
from pipeline.runner import fingerprints, run_pipeline, stage_dir
from stages.street.datasets import CLASSES


def train_in_process() -> None:
    """Each trainer's own worker function, run in this process instead of under Ray Train: the same training,
    without Ray Train's start-up for each of the many short runs (both tasks: ``stages.training`` fits them)."""
    import stages.training

    stages.training.fit_on_ray = lambda config, t, name, func: func({**config, "use_ray": False})


def evaluate_variant(base: list[str], extra: list[str], seed: int) -> dict:
    """Train and evaluate one variant at ``train.seed`` = seed; its metrics, seconds and pseudo-label shares."""
    cfg = load_config(None, [*base, *extra, f"train.seed={seed}"])
    t0 = time.perf_counter()
    run_pipeline(cfg, skip=("report",))
    fps = fingerprints(cfg)
    metrics = json.loads((stage_dir(cfg.paths.workdir, "evaluate", fps["evaluate"]) / "metrics.json").read_text())
    log = [json.loads(line) for line in (stage_dir(cfg.paths.workdir, "train", fps["train"]) /
                                         "metrics.jsonl").read_text().splitlines()]
    first_pass = next((e["step"] for e in log if e.get("ct_passed", 0) > 0), None)
    return {**metrics, "seconds": time.perf_counter() - t0, "first_pass": first_pass,
            "final_pass": log[-1].get("ct_passed"), "log": log}


def pct(v: float) -> str:
    return "-" if v != v else f"{100 * v:.1f}"


def mean_of(runs: list[dict], key: str) -> float:
    return statistics.mean(r[key] for r in runs)


def class_mean(runs: list[dict], name: str) -> float:
    return statistics.mean(r["per_class"][name] for r in runs)


def per_class_header(extra: list[str]) -> str:
    cols = ["variant", "mIoU19", "per seed", *extra, *CLASSES]
    return "| " + " | ".join(cols) + " |\n" + "|---" * len(cols) + "|"


def per_class_row(name: str, runs: list[dict], extra: list[str]) -> str:
    cells = [name, pct(mean_of(runs, "mIoU19")), " / ".join(pct(r["mIoU19"]) for r in runs), *extra,
             *(pct(class_mean(runs, c)) for c in CLASSES)]
    return "| " + " | ".join(cells) + " |"
