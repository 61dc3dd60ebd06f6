"""Resume overhead: the time to find the remaining work of a half-done caption stage over 100k images.

The manifest holds the shards already done (and their files exist); ``pending_shards`` must list the rest.
Also times the runner's check of which stages are complete.

Usage: uv run python bench/resume_overhead.py [--images 100000] [--shard-size 256 64]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from pipeline.config import load_config
from pipeline.manifest import Manifest
from pipeline.runner import completed
from pipeline.shards import pending_shards, shard_path
from pipeline.stage import StageContext


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--shard-size", type=int, nargs="+", default=[256, 64])
    args = parser.parse_args()
    for shard_size in args.shard_size:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            manifest = Manifest(workdir / "manifest.duckdb")
            n_shards = -(-args.images // shard_size)
            ctx = StageContext(load_config(), "caption", "f" * 64, workdir / "caption", {}, manifest, workdir)
            ctx.out_dir.mkdir()
            done = range(0, n_shards, 2)  # every other shard done, as after a crash mid-way
            for i in done:
                shard_path(ctx.out_dir, i).touch()
            with manifest._connect() as con:  # bulk set-up only; the stage records shards one by one
                con.executemany("INSERT INTO shards VALUES (?, ?, ?, 'complete', ?, ?, 'n', 1, NULL, NULL, NULL)",
                                [["caption", ctx.fingerprint, i, shard_size, str(shard_path(ctx.out_dir, i))]
                                 for i in done])
            t0 = time.perf_counter()
            todo = pending_shards(ctx, n_shards)
            seconds = time.perf_counter() - t0
            assert len(todo) == n_shards - len(done)
            t0 = time.perf_counter()
            completed(manifest, "caption", ctx.fingerprint)
            check = time.perf_counter() - t0
            print(f"{args.images} images in {n_shards} shards of {shard_size}, {len(done)} done: remaining work "
                  f"found in {1000 * seconds:.0f} ms; stage-complete check {1000 * check:.1f} ms")


if __name__ == "__main__":
    main()
