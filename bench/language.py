"""Does what a caption says change the segmentation? The look-alike demo world (cars and trucks drawn exactly
alike, trucks in half of the scenes: only a caption can tell which an image holds) trained with DLG fed each
image's own caption, another image's (shuffled), none (empty), with DLG off, and with the tiny captioner's own
captions; mIoU19 and the two look-alike classes' IoU, per seed.

The own captions are the world's scene descriptions (``caption.captions_file: demo``), which name the classes
each image shows. Consistency training is off unless ``--ct``: this measures the language, and is 2x faster.

The learning rate is the demo's 0.001 doubled (``--lr``): at 0.001 one seed in two had not yet learnt to read the
word at 600 or at 1000 iterations (docs/BENCHMARKS.md); every row trains at the same rate.

Usage: uv run python bench/language.py [--seeds 0,1] [--iterations 600] [--labelled 8] [--lr 0.002] [--ct]
"""

from __future__ import annotations

import argparse

from grid import class_mean, evaluate_variant, mean_of, pct, train_in_process

DESCRIBED = ["caption.captions_file=demo"]
VARIANTS = {
    "DLG, own captions (scene descriptions)": DESCRIBED,
    "DLG, shuffled captions (another image's)": [*DESCRIBED, "model.dlg_captions=shuffled"],
    "DLG, empty captions (start token only)": [*DESCRIBED, "model.dlg_captions=empty"],
    "DLG off": [*DESCRIBED, "model.dlg=false"],
    "DLG, the tiny captioner's own captions (random BLIP-2)": [],
    "DLG + F_L^A, own captions": [*DESCRIBED, "model.dlg_pixel_text=true"],
    "DLG + F_L^A, shuffled captions": [*DESCRIBED, "model.dlg_pixel_text=true", "model.dlg_captions=shuffled"],
    "DLG + F_L^A, empty captions": [*DESCRIBED, "model.dlg_pixel_text=true", "model.dlg_captions=empty"],
    "DLG + F_L^A, the tiny captioner's own captions": ["model.dlg_pixel_text=true"],
}
PAIR = ("car", "truck")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--iterations", type=int, default=600)
    parser.add_argument("--labelled", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.002, help="train.lr of every row")
    parser.add_argument("--ct", action="store_true", help="consistency training on (the default config's)")
    parser.add_argument("--workdir", default="runs/language")
    parser.add_argument("--variants", default=",".join(str(i) for i in range(len(VARIANTS))))
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    base = [f"paths.workdir={args.workdir}", f"train.iterations={args.iterations}", "cluster.address=local",
            "data.demo.lookalike=true", f"data.labelled_target={args.labelled}",
            f"train.consistency={str(args.ct).lower()}", f"train.lr={args.lr}"]
    train_in_process()
    names = [list(VARIANTS)[int(i)] for i in args.variants.split(",")]
    results = {}
    for name in names:
        results[name] = [evaluate_variant(base, VARIANTS[name], s) for s in seeds]
        print(f"done: {name}: " + ", ".join(f"{k} {pct(class_mean(results[name], k))}" for k in PAIR), flush=True)
    print(f"look-alike demo world, {args.labelled} labelled target images, {args.iterations} iterations, lr {args.lr}, "
          f"CT {'on' if args.ct else 'off'}, seeds {seeds}")
    print("| variant | mIoU19 | car IoU | truck IoU | per seed (mIoU19; car / truck) |")
    print("|---|---|---|---|---|")
    for name, runs in results.items():
        per_seed = "; ".join(f"{pct(r['mIoU19'])}: {pct(r['per_class']['car'])} / {pct(r['per_class']['truck'])}"
                             for r in runs)
        print(f"| {name} | {pct(mean_of(runs, 'mIoU19'))} | {pct(class_mean(runs, 'car'))} | "
              f"{pct(class_mean(runs, 'truck'))} | {per_seed} |")
    for own_name in (n for n in names if "own captions" in n and "tiny" not in n):
        same_input = [n for n in results if ("F_L^A" in n) == ("F_L^A" in own_name)]
        rivals = [n for n in [*same_input, "DLG off"] if n in results and n != own_name]
        for k in PAIR:
            margin = min(class_mean(results[own_name], k) - class_mean(results[n], k) for n in rivals)
            print(f"{own_name}: {k}: beats every other row of its decoder input and DLG off by {100 * margin:.1f} "
                  "IoU (goal: 20)")


if __name__ == "__main__":
    main()
