"""Does the unlabelled target adapt the model across the domain gap? The demo world at 0 labelled target images
(UDA) and at a few, trained with consistency training off and with each kind of strong view; mIoU19 and
per-class IoU, per seed. Source-only is the no-CT row at 0 labelled; ``--oracle`` adds the target-supervised
reference (every target train image labelled, no CT), so the gap is visible.

Usage: uv run python bench/adaptation.py [--labelled 0,4] [--seeds 0,1] [--iterations 1000] [--gap 1]
"""

from __future__ import annotations

import argparse

from grid import evaluate_variant, pct, per_class_header, per_class_row, train_in_process

# The rows measured before today's default spell out the keys they ran with (the defaults have moved since):
# FIFTY is the default of their time (both mixes 50/50, pasted ground truth in L_sup, plain-CE L_CT, jitter
# 0.5); SUP keeps pasted ground truth in L_sup, as every row before variant 16 had it.
SUP = ["loss.pasted_gt=sup"]
FIFTY = ["train.mix_from=both", "train.cross_domain_ratio=0.5", *SUP, "loss.consistency_omega=1", "train.colour_jitter=0.5"]
SEVENTY_FIVE = ["train.mix_from=both", "train.cross_domain_ratio=0.75"]

VARIANTS = {
    "no CT": ["train.consistency=false"],
    "CT, within-target ClassMix (default before)": ["train.mix_from=unlabelled"],
    "CT, cross-domain ClassMix, pasted ground truth in L_CT (DACS)": ["train.mix_from=labelled", "loss.pasted_gt=ct",
                                                                      "loss.consistency_omega=1"],
    "CT, cross-domain ClassMix, pasted ground truth in L_sup (DyCE)": ["train.mix_from=labelled", *SUP],
    "CT, both mixes 50/50 (IIDM), pasted ground truth in L_sup": FIFTY,
    "CT, both mixes 50/50 (IIDM), pasted ground truth in L_CT": [*FIFTY, "loss.pasted_gt=ct"],
    "CT, both mixes 75/25 (IIDM), pasted ground truth in L_sup": [*FIFTY, "train.cross_domain_ratio=0.75"],
    "CT, both mixes 50/50, L_CT class-balanced (consistency_omega 0.5)": [*FIFTY, "loss.consistency_omega=0.5"],
    "CT, both mixes 50/50, L_CT at half weight (consistency_weight 0.5)": [*FIFTY, "loss.consistency_weight=0.5"],
    "CT, both mixes 50/50, L_CT DyCE-weighted only (consistency_omega 0)": [*FIFTY, "loss.consistency_omega=0"],
    "CT, both mixes 50/50, gentler colour jitter (0.2: hue ±0.1)": [*FIFTY, "train.colour_jitter=0.2"],
    "CT, both mixes 50/50, class-balanced L_CT and gentler colour jitter": [*FIFTY, "loss.consistency_omega=0.5",
                                                                           "train.colour_jitter=0.2"],
    "CT, both mixes 50/50, class-balanced L_CT and colour jitter 0.1": [*FIFTY, "loss.consistency_omega=0.5",
                                                                        "train.colour_jitter=0.1"],
    "CT, both mixes 75/25, class-balanced L_CT and gentler colour jitter": [*SEVENTY_FIVE, *SUP,
                                                                           "loss.consistency_omega=0.5",
                                                                           "train.colour_jitter=0.2"],
    "CT, both mixes 75/25, class-balanced L_CT, UniMatch's colour jitter (0.5)": [*SEVENTY_FIVE, *SUP,
                                                                                 "loss.consistency_omega=0.5",
                                                                                 "train.colour_jitter=0.5"],
    "CT, both mixes 75/25, class-balanced L_CT, auto jitter, no blur in the strong view": [*SEVENTY_FIVE, *SUP,
                                                                                          "train.strong_blur=0"],
    "CT, the default: both mixes 75/25, pasted ground truth auto (L_sup at 0 labelled, else L_CT)": [],
    "CT, 75/25, pasted ground truth in L_sup, no feature perturbation": [*SEVENTY_FIVE, *SUP,
                                                                        "train.feature_perturbation=0"],
    "CT, the default at half weight (consistency_weight 0.5)": ["loss.consistency_weight=0.5"],
    "CT, both mixes 75/25, pasted ground truth in the class-balanced L_CT": ["loss.pasted_gt=ct"],
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--labelled", default="0,4")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--gap", type=float, default=1.0, help="data.demo.gap: the target's style shift")
    parser.add_argument("--oracle", action="store_true", help="also train with every target image labelled")
    parser.add_argument("--workdir", default="runs/adaptation")
    parser.add_argument("--variants", default=",".join(str(i) for i in range(len(VARIANTS))))
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    base = [f"paths.workdir={args.workdir}", f"train.iterations={args.iterations}", "cluster.address=local",
            f"data.demo.gap={args.gap}"]
    train_in_process()
    names = [list(VARIANTS)[int(i)] for i in args.variants.split(",")]
    grid = [(n, name) for n in args.labelled.split(",") for name in names]
    if args.oracle:
        grid.append(("all", "no CT"))
    results = {}
    for n, name in grid:
        runs = [evaluate_variant([*base, f"data.labelled_target={n}"], VARIANTS[name], s) for s in seeds]
        results[(n, name)] = runs
        shares = [r["log"][-1].get("ct_pasted_gt") for r in runs]
        print(f"done: {n} labelled, {name}: {pct(sum(r['mIoU19'] for r in runs) / len(runs))} "
              f"(pasted share at the end {shares})", flush=True)
    print(f"demo world (gap {args.gap}), {args.iterations} iterations, seeds {seeds}")
    print(per_class_header(["labelled", "pasted GT share (end)"]))
    for (n, name), runs in results.items():
        shares = [r["log"][-1].get("ct_pasted_gt") for r in runs]
        share = "-" if None in shares else pct(sum(shares) / len(shares))
        print(per_class_row(name, runs, [n, share]))


if __name__ == "__main__":
    main()
