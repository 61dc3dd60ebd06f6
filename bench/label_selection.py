"""(Named so, not select.py: a script of that name would shadow the standard library's select module.)

Which target images to label (issue 37): on the demo world, the images `select` chooses against the split
stage's random draw at the same budget, mIoU19 and per class, mean over seeds.

For each seed and budget N: ``random`` trains on N images drawn by ``data.seed`` (the split stage); the strategy
trains on the N images `select` chooses with nothing labelled before (``uncertainty`` and ``mixed`` score the
images under the teacher of a run trained with no labelled target image at the same seed, made here). Each is an
ordinary run of one work directory (``grid.py``), so the world, its captions and text embeddings are made once.
Goal: at least +3 mIoU19 over random at 8 labelled and +1.5 at 20, no class more than 5 IoU below random's mean.

Usage: uv run python bench/label_selection.py [--strategies diverse,uncertainty] [--budgets 8,20] [--seeds 0,1,2]
       [--iterations 1000] [--workdir runs/select] [--set section.key=value ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from grid import evaluate_variant, per_class_header, per_class_row, train_in_process

from pipeline.config import load_config


def chosen_split(base: list[str], strategy: str, budget: int, seed: int) -> Path:
    """The split file of ``budget`` images ``strategy`` chooses with none labelled (``sweep --selection``'s)."""
    from pipeline.experiments import selected_split
    from pipeline.runner import run_pipeline

    extra = selected_split(strategy, budget, lambda *more: load_config(None, [*base, f"train.seed={seed}", *more]),
                           run_pipeline)
    return Path(extra[0].split("=", 1)[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--strategies", default="diverse,uncertainty")
    parser.add_argument("--budgets", default="8,20")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--workdir", default="runs/select")
    parser.add_argument("--set", action="append", default=[], help="more overrides, section.key=value")
    args = parser.parse_args()
    seeds, budgets = [int(s) for s in args.seeds.split(",")], [int(b) for b in args.budgets.split(",")]
    base = [f"paths.workdir={args.workdir}", f"train.iterations={args.iterations}", *args.set]
    train_in_process()
    print(per_class_header(["vs random"]))
    for budget in budgets:
        random = [evaluate_variant(base, [f"data.labelled_target={budget}", f"data.seed={s}"], s) for s in seeds]
        print(per_class_row(f"random, N={budget}", random, ["-"]), flush=True)
        for strategy in args.strategies.split(","):
            runs = [evaluate_variant(base, [f"data.split_file={chosen_split(base, strategy, budget, s)}"], s)
                    for s in seeds]
            gain = 100 * (sum(r["mIoU19"] for r in runs) - sum(r["mIoU19"] for r in random)) / len(seeds)
            print(per_class_row(f"{strategy}, N={budget}", runs, [f"{gain:+.1f}"]), flush=True)
    print(f"(mIoU19 and IoU in %; seeds {seeds}, {args.iterations} its; 'vs random': the mean mIoU19 difference)")


if __name__ == "__main__":
    main()
