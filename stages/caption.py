"""Stage 2, caption: every indexed image -> one BLIP-2 caption, in Parquet shards (DESIGN §1-2).

Runs as a Ray Data actor pool: each replica loads the captioner once (in ``__init__``) and captions
batches. An image that fails to decode becomes a row with a null caption and its error, recorded as
rejected, instead of a crash.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from PIL import Image

from pipeline.config import Config
from pipeline.shards import ShardPool, map_shards
from pipeline.stage import StageContext, StageError, StageResult
from pipeline.store import read_parquet
from stages.index import INDEX_FILE, dataset_roots, resolve_rows

NAME = "caption"
VERSION = 2  # 2: depends on the image set, not on ingest's fingerprint
INPUTS = ("ingest",)
INPUT_DIGESTS = {"ingest": "images"}  # the images alone: not the split, not where the dataset is mounted
EXECUTION_KEYS = {"batch_size", "concurrency", "num_gpus", "max_retries"}  # do not change the captions


def fingerprint_config(cfg: Config) -> dict[str, Any]:
    return {"caption": cfg.caption.model_dump(mode="json", exclude=EXECUTION_KEYS)}


def node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else "local"


def open_rgb(path: str) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("RGB")


class CaptionBatch:
    """Ray Data callable class: one captioner per replica."""

    def __init__(self, model: str, dtype: str, prompt: str | None, max_new_tokens: int, num_gpus: float):
        from models.captioner import default_device, load_captioner

        self.captioner = load_captioner(model, dtype, default_device(num_gpus))
        self.model, self.prompt, self.max_new_tokens = model, prompt, max_new_tokens
        self.node = node_id()

    def __call__(self, batch: pa.Table) -> pa.Table:
        images, errors = [], []
        for path in batch.column("image_path").to_pylist():
            try:
                images.append(open_rgb(path))
                errors.append(None)
            except Exception as err:  # any decoder error: record it, caption the rest
                images.append(None)
                errors.append(f"image does not decode ({type(err).__name__}: {err})"[:300])
        good = [im for im in images if im is not None]
        captions = iter(self.captioner(good, self.prompt, self.max_new_tokens) if good else [])
        n = len(batch)
        return pa.table({
            "image_id": batch.column("image_id"),
            "shard": batch.column("shard"),
            "caption": pa.array([None if im is None else next(captions) for im in images], pa.string()),
            "error": pa.array(errors, pa.string()),
            "captioner": pa.array([self.model] * n, pa.string()),
            "prompt": pa.array([self.prompt] * n, pa.string()),
            "node": pa.array([self.node] * n, pa.string()),
        })


def run(ctx: StageContext) -> StageResult:
    cfg = ctx.cfg.caption
    index = read_parquet(ctx.inputs["ingest"] / INDEX_FILE, columns=["image_id", "domain", "image_path"])
    rows = resolve_rows(index.to_pylist(), dataset_roots(ctx.cfg.data, ctx.workdir))
    index = pa.table({"image_id": [r["image_id"] for r in rows], "image_path": [r["image_path"] for r in rows]})
    pool = ShardPool(CaptionBatch, dict(model=cfg.model, dtype=cfg.dtype, prompt=cfg.prompt,
                                        max_new_tokens=cfg.max_new_tokens, num_gpus=cfg.num_gpus),
                     cfg.batch_size, cfg.concurrency, cfg.num_gpus, cfg.max_retries)
    stats = map_shards(ctx, index, cfg.shard_size, pool, ctx.cfg.cluster, unit="images")
    store = read_parquet(ctx.out_dir, columns=["image_id", "caption", "error"])
    if sorted(store.column("image_id").to_pylist()) != index.column("image_id").to_pylist():
        raise StageError(f"{ctx.out_dir}: the caption store does not hold exactly one row per indexed image")
    rejected = [(i, e) for i, e in zip(store.column("image_id").to_pylist(), store.column("error").to_pylist(),
                                       strict=True) if e is not None]
    ctx.manifest.record_rejected(NAME, ctx.fingerprint, rejected)
    return StageResult(len(store), {"rejected": len(rejected), **stats.details()})
