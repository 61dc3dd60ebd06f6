"""The text embedding store at the real width: bytes per 1,000 captions, a training worker's resident memory
once it opened the store, and the loader's captions/s — for the memory-mapped Arrow IPC store that embed_text
writes (``--format arrow``) and the Parquet store read whole that it replaced (``--format parquet``).

Rows are written by the stage's own writer (``embedding_table``) at c = 512 (CLIP ViT-B/16) with about 20
valid tokens per caption; the values are random float16 (real embeddings compress no better). Each format is
opened in a fresh process, so its resident memory is its own. The loader serves random-access batches of 16 on
one CPU core.

Usage: uv run python bench/text_store.py [--captions 200000] [--tokens 20] [--format arrow,parquet]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipeline.store import write_table
from stages.street.embed_text import embedding_table


def write_store(out: Path, captions: int, tokens: int, dim: int, suffix: str, shard_size: int = 1024) -> None:
    rng = np.random.default_rng(0)
    for start in range(0, captions, shard_size):
        n = min(shard_size, captions - start)
        n_tokens = rng.integers(tokens - 6, tokens + 7, size=n)  # mean `tokens`
        emb = rng.standard_normal((n, int(n_tokens.max()), dim), dtype=np.float32).astype(np.float16)
        ids = pa.array([f"img{i:07d}" for i in range(start, start + n)])
        table = embedding_table(ids, pa.array(np.zeros(n, np.int32)), ["a street"] * n, emb, n_tokens, [False] * n,
                                "bench")
        write_table(table.drop_columns(["shard"]), out / f"shard-{start // shard_size:05d}{suffix}")


def rss_mb(kind: str = "RssAnon") -> float:
    """This process's resident memory now: ``RssAnon`` (its own heap: what each worker pays) or ``RssFile``
    (pages of mapped files: the page cache, shared by every worker of a node and evictable)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{kind}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(store: str, captions: int, batches: int) -> dict:
    """In a fresh process: open the store as a training worker does, then serve random batches."""
    import torch

    from stages.street.language import TextEmbeddingStore

    torch.set_num_threads(1)
    before, file_before = rss_mb(), rss_mb("RssFile")
    t0 = time.perf_counter()
    opened = TextEmbeddingStore(store)
    open_s, after_open = time.perf_counter() - t0, rss_mb()
    rng = np.random.default_rng(1)
    ids = [f"img{i:07d}" for i in range(captions)]
    draws = [[ids[j] for j in rng.integers(0, captions, 16)] for _ in range(batches)]
    opened.batch(draws[0])
    t0 = time.perf_counter()
    for batch in draws:
        opened.batch(batch, max_tokens=77)
    seconds = time.perf_counter() - t0
    return {"open_s": open_s, "rss_open_mb": after_open - before, "rss_end_mb": rss_mb() - before,
            "file_end_mb": rss_mb("RssFile") - file_before, "captions_per_s": 16 * batches / seconds}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--captions", type=int, default=200_000)
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--batches", type=int, default=3000)
    parser.add_argument("--format", default="arrow,parquet")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # internal: measure this store in this process
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.captions, args.batches)))
        return
    for fmt in args.format.split(","):
        with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
            out = Path(tmp)
            write_store(out, args.captions, args.tokens, args.dim, f".{fmt}")
            size = sum(f.stat().st_size for f in out.glob("shard-*"))
            got = json.loads(subprocess.run([sys.executable, __file__, "--measure", str(out), "--captions",
                                             str(args.captions), "--batches", str(args.batches)],
                                            capture_output=True, text=True, check=True).stdout.splitlines()[-1])
            print(f"{fmt}: {args.captions} captions, c={args.dim}, ~{args.tokens} tokens: {size / 1e9:.2f} GB "
                  f"({size / 1e6 / (args.captions / 1000):.1f} MB per 1,000); open {got['open_s']:.2f} s; the worker's own "
                  f"memory (RssAnon) +{got['rss_open_mb']:.0f} MB after opening, +{got['rss_end_mb']:.0f} MB after "
                  f"{args.batches} random batches of 16; mapped file pages (RssFile, shared page cache) "
                  f"+{got['file_end_mb']:.0f} MB; {got['captions_per_s']:,.0f} captions/s (1 thread)",
                  flush=True)


if __name__ == "__main__":
    main()
