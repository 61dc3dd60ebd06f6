"""Captioning throughput: images/s of the Ray Data actor pool against the number of replicas.

CPU: the tiny BLIP-2 through the real caption path (``map_shards`` + ``CaptionBatch``) with 1 and 2 replicas.
GPU (when CUDA is present): the full-size BLIP-2 OPT-2.7b architecture with random weights in bf16, one
replica, at a few batch sizes (generation of ``--new-tokens`` tokens).

Usage: uv run python bench/caption_throughput.py [--images 6000] [--batch 128] [--replicas 1 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from pipeline.config import ClusterConfig, load_config
from pipeline.manifest import Manifest
from pipeline.runner import fingerprints, run_pipeline, stage_dir
from pipeline.shards import ShardPool, init_ray, map_shards
from pipeline.stage import StageContext
from stages.caption import CaptionBatch
from stages.ingest import INDEX_FILE


def cpu_replicas(images: int, replicas: list[int], batch: int, new_tokens: int, shard_size: int = 256) -> None:
    """The real caption path (map_shards + CaptionBatch). Steady state: rows after the first batch over the
    time after it, so the replicas' start-up (loading torch and the model) is reported apart."""
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        cfg = load_config(None, [f"paths.workdir={workdir}", "data.demo.n_source=240",
                                 "data.demo.n_target_train=232", "data.demo.n_target_val=8"])
        run_pipeline(cfg, ["ingest"])
        base = pq.read_table(stage_dir(workdir, "ingest", fingerprints(cfg)["ingest"]) / INDEX_FILE,
                             columns=["image_id", "image_path"])
        rows = pa.concat_tables([base] * (-(-images // len(base)))).slice(0, images)
        init_ray(ClusterConfig())
        steady = {}
        for n in replicas:
            ctx = StageContext(cfg, "caption", f"bench-{n}", workdir / f"caption-{n}", {},
                               Manifest(workdir / "bench.duckdb"), workdir)
            pool = ShardPool(CaptionBatch, dict(model="tiny", dtype="float32", prompt=None,
                                                max_new_tokens=new_tokens, num_gpus=0), batch, n, 0, 0)
            stats = map_shards(ctx, rows, shard_size, pool, ClusterConfig())
            steady[n] = stats.steady_rate
            print(f"tiny BLIP-2, {n} replica(s): {steady[n]:.0f} images/s steady state; start-up {stats.startup_s:.1f} s; "
                  f"{images} images in {stats.seconds:.1f} s (batch {batch}, {new_tokens} new tokens, "
                  f"{os.cpu_count()} cores)")
        if 1 in steady and 2 in steady:
            print(f"speed-up, 2 vs 1 replica: {steady[2] / steady[1]:.2f}x")


def gpu_full_size(batch_sizes: list[int], new_tokens: int) -> None:
    from transformers import Blip2ForConditionalGeneration

    from models.captioner import blip2_opt_2_7b_config

    config = blip2_opt_2_7b_config()
    with torch.device("cuda"):
        model = Blip2ForConditionalGeneration(config).to(torch.bfloat16).eval()
    print(f"BLIP-2 OPT-2.7b (random weights, bf16): {sum(p.numel() for p in model.parameters()) / 1e9:.2f}B "
          f"parameters on {torch.cuda.get_device_name()}")
    for bs in batch_sizes:
        pixels = torch.randn(bs, 3, 224, 224, device="cuda", dtype=torch.bfloat16)
        kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
        with torch.inference_mode():
            model.generate(pixel_values=pixels, **kwargs)  # warm-up
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(3):
                model.generate(pixel_values=pixels, **kwargs)
            torch.cuda.synchronize()
        rate = 3 * bs / (time.perf_counter() - t0)
        print(f"  batch {bs:3d}: {rate:.1f} images/s ({new_tokens} new tokens each)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=6000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--new-tokens", type=int, default=20)
    parser.add_argument("--gpu-batch-sizes", type=int, nargs="+", default=[8, 32, 64])
    args = parser.parse_args()
    if torch.cuda.is_available():
        gpu_full_size(args.gpu_batch_sizes, args.new_tokens)
    else:
        print("no GPU: skipping the full-size BLIP-2 measurement")
    cpu_replicas(args.images, args.replicas, args.batch, args.new_tokens)


if __name__ == "__main__":
    main()
