"""Does consistency training help? The demo world trained with CT off and with each addition of the strong
view turned on in turn, on several seeds; mean mIoU19 and per-class IoU per variant.

Every variant is an ordinary run in one work directory, so the world, its captions and text embeddings are
made once. Prints a Markdown table for docs/BENCHMARKS.md.

Usage: uv run python bench/consistency.py [--seeds 0,1] [--iterations 300] [--workdir runs/consistency]
"""

from __future__ import annotations

import argparse
import statistics

from grid import evaluate_variant, pct, per_class_header, per_class_row, train_in_process

PREV = ["loss.class_threshold_quantile=0.9", "loss.class_threshold_cap=true"]  # the default these rows measured against
OLD = ["train.mix=none", "train.ema_warmup=false", "loss.class_thresholds=false"]  # the strong view before
NO_FP = "train.feature_perturbation=0"  # every row before feature perturbation measured without it
EARLIER = {
    "CT, photometric view only": OLD,
    "CT + ClassMix": ["train.mix=classmix", "train.ema_warmup=false", "loss.class_thresholds=false"],
    "CT + ClassMix + EMA warm-up": ["train.mix=classmix", "train.ema_warmup=true", "loss.class_thresholds=false"],
    "CT + ClassMix + EMA warm-up + class thresholds, median (previous default)": ["loss.class_threshold_quantile=0.5"],
    "CT + CutMix + EMA warm-up + class thresholds, median": ["train.mix=cutmix", "loss.class_threshold_quantile=0.5"],
    "CT + ClassMix + EMA warm-up + class thresholds at the 0.8 quantile": ["loss.class_threshold_quantile=0.8"],
    "CT + ClassMix + EMA warm-up + class thresholds at the 0.9 quantile, capped at Th": [
        "loss.class_threshold_quantile=0.9", "loss.class_threshold_cap=true"],
    "no CT, light decoder": ["train.consistency=false", "model.decoder=light"],  # FP off changes nothing here
    "default, light decoder": ["model.decoder=light"],
    "CT + cross-domain ClassMix (labelled pixels pasted with their ground truth, DACS) + EMA warm-up + class thresholds at the 0.9 quantile": [*PREV, "train.mix_from=labelled"],
    "CT + cross-domain ClassMix + EMA warm-up, fixed Th 0.95": [*PREV, "train.mix_from=labelled", "loss.class_thresholds=false"],
    "default + class-balanced L_CT (ω 0.5)": [*PREV, "loss.consistency_omega=0.5"],
    "default + class-balanced L_CT (ω 0)": [*PREV, "loss.consistency_omega=0"],
    "default, milder colour jitter (s 0.2)": [*PREV, "train.colour_jitter=0.2"],
    "default, no colour jitter (s 0: mix and blur only)": [*PREV, "train.colour_jitter=0"],
    "CT + ClassMix + EMA warm-up + class thresholds at the 0.9 quantile, not capped at Th": [
        "loss.class_threshold_quantile=0.9"],
    "default, λ_CT 2": [*PREV, "loss.consistency_weight=2"],
    "CT + ClassMix + EMA warm-up + class thresholds at the 0.95 quantile, not capped (default before FP)": [],
}
VARIANTS = {
    "no CT": ["train.consistency=false"],
    **{name: [NO_FP, *keys] for name, keys in EARLIER.items()},
    "default: ClassMix + EMA warm-up + class thresholds at the 0.95 quantile + feature perturbation (UniMatch, p 0.5)": [],
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--workdir", default="runs/consistency")
    parser.add_argument("--variants", default=",".join(str(i) for i in range(len(VARIANTS))),
                        help="indices into the variant list")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    base = [f"paths.workdir={args.workdir}", f"train.iterations={args.iterations}", "cluster.address=local"]
    train_in_process()
    names = [list(VARIANTS)[int(i)] for i in args.variants.split(",")]
    results = {name: [evaluate_variant(base, VARIANTS[name], s) for s in seeds] for name in names}
    print(f"demo world, {args.iterations} iterations, seeds {seeds}: mIoU19 (mean over seeds, each seed), "
          "first step with pseudo-labels past the threshold, share past it at the end")
    print(per_class_header(["first pass", "final pass"]))
    for name, runs in results.items():
        final = [r["final_pass"] for r in runs if r["final_pass"] is not None]
        print(per_class_row(name, runs, [str([r["first_pass"] for r in runs]),
                                         pct(statistics.mean(final)) if final else "-"]))


if __name__ == "__main__":
    main()
