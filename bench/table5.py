"""The paper's Table 5 on the demo volumes: each semi-supervised method with CE and with DyCE in its supervised
terms, mean DSC / ASD and the DSC of each organ on the 6 test cases, per seed.

Every cell is an ordinary run of ``configs/synapse_demo.yaml`` in one work directory (the volumes are made and
preprocessed once); a cell already evaluated is read back, not redone.

Usage: uv run python bench/table5.py [--methods supervised,uamt,urpc,depl,dhc] [--seeds 0,1] [--iterations 300]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from grid import train_in_process

from pipeline.config import load_config
from pipeline.runner import fingerprints, run_pipeline, stage_dir
from stages.synapse import SYNAPSE

ORGANS = [SYNAPSE.names[o] for o in SYNAPSE.subsets["organs"]]
SMALL = ("gallbladder", "esophagus", "right adrenal gland", "left adrenal gland", "portal & splenic veins")


def evaluate_cell(base: list[str], method: str, dyce: bool, seed: int) -> dict:
    cfg = load_config("configs/synapse_demo.yaml", [*base, f"volumes.method={method}", f"loss.dyce={str(dyce).lower()}",
                                                     f"train.seed={seed}"])
    t0 = time.perf_counter()
    run_pipeline(cfg, skip=("report",))
    fp = fingerprints(cfg)["evaluate"]
    metrics = json.loads((stage_dir(cfg.paths.workdir, "evaluate", fp) / "metrics.json").read_text())
    return {**metrics, "seconds": time.perf_counter() - t0}


def mean(runs: list[dict], get) -> float:
    return statistics.mean(get(r) for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--methods", default="supervised,uamt,urpc,depl,dhc")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--workdir", default="runs/table5")
    parser.add_argument("--set", action="append", default=[], help="more overrides, section.key=value")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    base = [f"paths.workdir={args.workdir}", f"train.iterations={args.iterations}", *args.set]
    train_in_process()
    results = {}
    for method in args.methods.split(","):
        for dyce in (False, True):
            results[(method, dyce)] = [evaluate_cell(base, method, dyce, s) for s in seeds]
            runs = results[(method, dyce)]
            print(f"done: {method} {'DyCE' if dyce else 'CE'}: mean DSC {100 * mean(runs, lambda r: r['mean_dsc']):.1f} "
                  "(" + ", ".join(f"{r['seconds']:.0f} s" for r in runs) + ")", flush=True)
    print(f"demo volumes, {args.iterations} iterations, seeds {seeds}; DSC in %, ASD in voxels; test cases")
    print("| method | loss | mean DSC | per seed | ASD | small organs' DSC | " + " | ".join(SYNAPSE.short[1:]) + " |")
    print("|---" * (6 + len(ORGANS)) + "|")
    for (method, dyce), runs in results.items():
        small = mean(runs, lambda r: statistics.mean(r["per_class"][o]["dsc"] for o in SMALL))
        per_seed = " / ".join(f"{100 * r['mean_dsc']:.1f}" for r in runs)
        print(f"| {method} | {'DyCE' if dyce else 'CE'} | {100 * mean(runs, lambda r: r['mean_dsc']):.1f} | "
              f"{per_seed} | {mean(runs, lambda r: r['mean_asd']):.1f} | "
              f"{100 * small:.1f} | " + " | ".join(f"{100 * mean(runs, lambda r, o=o: r['per_class'][o]['dsc']):.1f}"
                                                   for o in ORGANS) + " |")
    for method in args.methods.split(","):
        if (method, False) in results and (method, True) in results:
            gain = mean(results[(method, True)], lambda r: r["mean_dsc"]) - mean(results[(method, False)],
                                                                                lambda r: r["mean_dsc"])
            print(f"{method}: DyCE {'raises' if gain > 0 else 'does not raise'} mean DSC by {100 * gain:+.1f}")


if __name__ == "__main__":
    main()
