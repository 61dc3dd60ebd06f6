"""The text embedding store at the real width: bytes per 1,000 captions and the loader's captions/s.

Rows are written by the stage's own writer (``embedding_table``) at c = 512 (CLIP ViT-B/16) with about 20
valid tokens per caption; the values are random float16 (real embeddings compress no better). The loader
serves random-access batches of 16 on one CPU core.

Usage: uv run python bench/text_store.py [--captions 20000] [--tokens 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from pipeline.store import write_parquet
from stages.embed_text import embedding_table
from stages.language import load_text_embeddings, open_store


def write_store(out: Path, captions: int, tokens: int, dim: int, shard_size: int = 1024) -> None:
    rng = np.random.default_rng(0)
    for start in range(0, captions, shard_size):
        n = min(shard_size, captions - start)
        n_tokens = rng.integers(tokens - 6, tokens + 7, size=n)  # mean `tokens`
        emb = rng.standard_normal((n, int(n_tokens.max()), dim), dtype=np.float32).astype(np.float16)
        ids = pa.array([f"img{i:07d}" for i in range(start, start + n)])
        table = embedding_table(ids, pa.array(np.zeros(n, np.int32)), ["a street"] * n, emb, n_tokens, [False] * n, "bench")
        write_parquet(table.drop_columns(["shard"]), out / f"shard-{start // shard_size:05d}.parquet")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--captions", type=int, default=20_000)
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--batches", type=int, default=3000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        write_store(out, args.captions, args.tokens, args.dim)
        size = sum(f.stat().st_size for f in out.glob("shard-*.parquet"))
        print(f"store: {args.captions} captions, c={args.dim}, ~{args.tokens} tokens each: "
              f"{size / 1e6:.1f} MB, {size / 1e6 / (args.captions / 1000):.1f} MB per 1,000 captions")
        t0 = time.perf_counter()
        open_store(str(out.resolve()))
        print(f"open: {time.perf_counter() - t0:.2f} s (all shards into one float16 buffer)")
        rng = np.random.default_rng(1)
        ids = [f"img{i:07d}" for i in range(args.captions)]
        batches = [[ids[j] for j in rng.integers(0, args.captions, 16)] for _ in range(args.batches)]
        load_text_embeddings(out, batches[0])
        t0 = time.perf_counter()
        for batch in batches:
            emb, mask = load_text_embeddings(out, batch, max_tokens=77)
        seconds = time.perf_counter() - t0
        print(f"load_text_embeddings: {16 * args.batches / seconds:,.0f} captions/s in random batches of 16, "
              f"padded to 77 tokens, on 1 thread ({emb.shape[0]}x{emb.shape[1]}x{emb.shape[2]} per batch)")


if __name__ == "__main__":
    main()
