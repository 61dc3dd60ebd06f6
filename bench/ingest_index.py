"""Ingest at GTA5's size: 24,966 source images (1x1 PNG fixtures) plus a small Cityscapes tree.

Prints the wall time of the ingest stage alone (validation of every image and label, the split, the index).
Usage: uv run python bench/ingest_index.py [--n 24966]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.config import load_config
from pipeline.runner import run_pipeline


def write_fixtures(root: Path, n: int) -> tuple[Path, Path]:
    gta5, cs = root / "gta5", root / "cityscapes"
    (gta5 / "images").mkdir(parents=True)
    (gta5 / "labels").mkdir()
    image, label = root / "i.png", root / "l.png"
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(image)
    Image.fromarray(np.full((1, 1), 7, np.uint8)).save(label)
    for i in range(n):  # copies of one 1x1 file: the fixture, not the thing measured
        shutil.copyfile(image, gta5 / "images" / f"{i:05d}.png")
        shutil.copyfile(label, gta5 / "labels" / f"{i:05d}.png")
    for split in ("train", "val"):
        for i in range(100):
            d = cs / "leftImg8bit" / split / "city"
            g = cs / "gtFine" / split / "city"
            d.mkdir(parents=True, exist_ok=True)
            g.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(image, d / f"city_{i:06d}_000019_leftImg8bit.png")
            shutil.copyfile(label, g / f"city_{i:06d}_000019_gtFine_labelIds.png")
    return gta5, cs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=24_966)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        gta5, cs = write_fixtures(root, args.n)
        print(f"fixtures: {time.perf_counter() - t0:.1f} s")
        cfg = load_config(None, ["data.source.name=gta5", f"data.source.root={gta5}", "data.target.name=cityscapes",
                                 f"data.target.root={cs}", "data.labelled_target=20", f"paths.workdir={root / 'w'}"])
        t0 = time.perf_counter()
        outcome = run_pipeline(cfg, ["ingest"])[0]
        seconds = time.perf_counter() - t0
        print(f"ingest: {outcome.record.rows} index rows in {seconds:.1f} s "
              f"({outcome.record.rows / seconds:.0f} rows/s) on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
