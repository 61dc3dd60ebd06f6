"""Captioning throughput: images/s of the Ray Data actor pool against the number of replicas.

CPU: the tiny BLIP-2 through the real caption path (``map_shards`` + ``CaptionBatch``) on 2048x1024 PNGs, with
the replicas decoding their own images (the stage before the split) and with decode tasks feeding them.
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
import torch

from pipeline.config import ClusterConfig, load_config
from pipeline.manifest import Manifest
from pipeline.shards import ShardPool, init_ray, map_shards
from pipeline.stage import StageContext
from stages.street.caption import CaptionBatch, decode_batch


class DecodeInReplica(CaptionBatch):
    """The stage before the split: each replica decodes its own PNGs, then captions them."""

    def __call__(self, batch: pa.Table) -> pa.Table:
        return super().__call__(decode_batch(batch, self.size))


def real_size_rows(root: Path, n_files: int, images: int) -> pa.Table:
    """``images`` rows over ``n_files`` 2048x1024 demo-world PNGs (a Cityscapes frame's size)."""
    import numpy as np
    from PIL import Image

    from stages.street import demo_world

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n_files):
        path = root / f"frame_{i:03d}.png"
        Image.fromarray(demo_world.render_image(rng, demo_world.render_labels(rng, 1024, 2048), "target")).save(path)
        paths.append(str(path))
    return pa.table({"image_id": [f"img{i:06d}" for i in range(images)],
                     "image_path": [paths[i % n_files] for i in range(images)]})


def cpu_replicas(images: int, replicas: list[int], batch: int, new_tokens: int, shard_size: int = 64) -> None:
    """The real caption path (map_shards) on real-size PNGs, before the split (each replica decodes) and
    after it (decode tasks feed the replicas). Steady state: rows after the first batch over the time after
    it, so the replicas' start-up (loading torch and the model) is reported apart."""
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        cfg = load_config(None, [f"paths.workdir={workdir}"])
        rows = real_size_rows(workdir, 8, images)
        init_ray(ClusterConfig())
        kwargs = dict(model="tiny", dtype="float32", prompt=None, max_new_tokens=new_tokens, num_gpus=0, size=224)
        for n in replicas:
            for k, (label, pool) in enumerate((
                ("decode in the replica", ShardPool(DecodeInReplica, kwargs, batch, n, 0, 0)),
                ("decode tasks + replicas", ShardPool(CaptionBatch, kwargs, batch, n, 0, 0, prepare=decode_batch,
                                                      prepare_kwargs={"size": 224}, num_cpus=0.5)),
            )):
                name = f"bench-{n}-{k}"
                ctx = StageContext(cfg, "caption", name, workdir / name, {}, Manifest(workdir / "bench.duckdb"),
                                   workdir)
                stats = map_shards(ctx, rows, shard_size, pool, ClusterConfig())
                print(f"tiny BLIP-2, {n} replica(s), {label}: {stats.steady_rate:.1f} images/s steady state "
                      f"(2048x1024 PNGs; start-up {stats.startup_s:.1f} s; {images} images in {stats.seconds:.1f} s; "
                      f"batch {batch}; {os.cpu_count()} cores)")


def gpu_full_size(batch_sizes: list[int], new_tokens: int) -> None:
    from transformers import Blip2ForConditionalGeneration

    from models.street.captioner import blip2_opt_2_7b_config

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
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--replicas", type=int, nargs="+", default=[1])
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
