"""The paper's Table 5 for any synapse config: each registered method with CE and with DyCE in its supervised terms,
mean DSC / ASD (mean ± std over the seeds, and each seed's) and the DSC of each organ on the test cases, with the
checkpoint the config tests (DHC's best on the eval cases by default).

Every cell is an ordinary run of the config in one work directory (the volumes are made and preprocessed once); a
cell already evaluated is read back, not redone.

Usage: uv run python bench/table5.py [-c configs/synapse_demo.yaml] [--methods supervised,fully,uamt,urpc,depl,dhc]
       [--seeds 0,1,2] [--losses ce,dyce] [--ce-only supervised,fully] [--iterations N] [--workdir runs/table5] [--set section.key=value ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from grid import train_in_process

from models.volumes import methods
from pipeline.config import load_config
from pipeline.runner import fingerprints, run_pipeline, stage_dir
from stages.synapse import SYNAPSE

ORGANS = [SYNAPSE.names[o] for o in SYNAPSE.subsets["organs"]]
SMALL = ("gallbladder", "esophagus", "right adrenal gland", "left adrenal gland", "portal & splenic veins")


def evaluate_cell(config: str, base: list[str], method: str, dyce: bool, seed: int) -> dict:
    cfg = load_config(config, [*base, f"volumes.method={method}", f"loss.dyce={str(dyce).lower()}",
                               f"train.seed={seed}"])
    t0 = time.perf_counter()
    run_pipeline(cfg, skip=("report",))
    fp = fingerprints(cfg)["evaluate"]
    metrics = json.loads((stage_dir(cfg.paths.workdir, "evaluate", fp) / "metrics.json").read_text())
    return {**metrics, "seconds": time.perf_counter() - t0}


def mean_std(runs: list[dict], get, scale: float = 100.0) -> str:
    values = [scale * get(r) for r in runs]
    return f"{statistics.mean(values):.1f}" + (f" ± {statistics.stdev(values):.1f}" if len(values) > 1 else "")


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("-c", "--config", default="configs/synapse_demo.yaml")
    parser.add_argument("--methods", default=",".join(methods.names()))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--losses", default="ce,dyce", help="the supervised terms of each cell: ce, dyce or both")
    parser.add_argument("--ce-only", default="", help="methods run with CE alone (the paper's V-Net rows)")
    parser.add_argument("--iterations", type=int, default=None, help="train.iterations (default: the config's)")
    parser.add_argument("--workdir", default="runs/table5")
    parser.add_argument("--set", action="append", default=[], help="more overrides, section.key=value")
    return parser.parse_args()


def print_table(results: dict, seeds: list[int], config: str) -> None:
    print(f"{config}, seeds {seeds}; DSC in %, ASD in voxels; test cases; mean ± std over the seeds")
    print("| method | loss | mean DSC | per seed | ASD | small organs' DSC | " + " | ".join(SYNAPSE.short[1:]) + " |")
    print("|---" * (6 + len(ORGANS)) + "|")
    for (method, dyce), runs in results.items():
        per_seed = " / ".join(f"{100 * r['mean_dsc']:.1f}" for r in runs)
        print(f"| {method} | {'DyCE' if dyce else 'CE'} | {mean_std(runs, lambda r: r['mean_dsc'])} | {per_seed} | "
              f"{mean_std(runs, lambda r: r['mean_asd'], 1.0)} | "
              f"{mean_std(runs, lambda r: statistics.mean(r['per_class'][o]['dsc'] for o in SMALL))} | "
              + " | ".join(mean_std(runs, lambda r, o=o: r["per_class"][o]["dsc"]) for o in ORGANS) + " |")


def print_gains(results: dict, names: list[str]) -> None:
    for method in names:
        if (method, False) in results and (method, True) in results:
            gains = [100 * (d["mean_dsc"] - c["mean_dsc"]) for c, d in zip(results[(method, False)],
                                                                       results[(method, True)], strict=True)]
            print(f"{method}: DyCE {statistics.mean(gains):+.1f} mean DSC over the seeds (per seed: "
                  + ", ".join(f"{g:+.1f}" for g in gains) + ")")


def main() -> None:
    args = arguments()
    seeds, names = [int(s) for s in args.seeds.split(",")], args.methods.split(",")
    base = [f"paths.workdir={args.workdir}", *([f"train.iterations={args.iterations}"] if args.iterations else []),
            *args.set]
    train_in_process()
    results = {}
    losses = {"ce": False, "dyce": True}
    for method in names:
        for dyce in [losses[k] for k in args.losses.split(",")]:
            if dyce and method in args.ce_only.split(","):
                continue
            runs = results[(method, dyce)] = [evaluate_cell(args.config, base, method, dyce, s) for s in seeds]
            print(f"done: {method} {'DyCE' if dyce else 'CE'}: mean DSC {mean_std(runs, lambda r: r['mean_dsc'])} "
                  "(" + ", ".join(f"{r['seconds']:.0f} s, {r.get('checkpoint', 'last')} checkpoint" for r in runs)
                  + ")", flush=True)
    print_table(results, seeds, args.config)
    print_gains(results, names)


if __name__ == "__main__":
    main()
