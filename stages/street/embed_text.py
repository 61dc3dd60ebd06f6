"""Stage 3, embed_text: captions -> per-token CLIP text embeddings F_L (DESIGN §3).

Store layout (``<out_dir>``): ``shard-NNNNN.arrow`` (Arrow IPC, uncompressed: training workers memory-map it
and page in only the rows they read) with image_id, caption (the text, for the report and for
a user checking what DLG read), n_tokens, dim, truncated and ``embedding`` (the valid tokens, start to end
token, as float16 bytes, row-major n_tokens × dim); ``meta.json``. ``stages.street.language`` reads the store, padded
and masked, for train, evaluate and predict. (Class-text embeddings were written here once and read by
nothing; Eq. 2-3 use the captions alone, so they are no longer computed.)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.config import Config
from pipeline.shards import ShardPool, map_shards, node_id
from pipeline.stage import StageContext, StageError, StageResult
from pipeline.store import read_parquet, write_json
from stages.street.language import META_FILE

NAME = "embed_text"
SHARDED = True  # redoes only the shards that are missing or damaged
VERSION = 3  # 2: the caption text kept beside its embedding; no class embeddings (read by nothing); 3: Arrow IPC shards
INPUTS = ("caption",)


def fingerprint_config(cfg: Config) -> dict[str, Any]:
    return {"text": cfg.text.model_dump(mode="json")}


class EmbedBatch:
    """Ray Data callable class: one frozen text encoder per replica."""

    def __init__(self, model: str, pretrained: str, num_gpus: float):
        from models.device import pick_device
        from models.street.text import load_text_encoder

        self.encoder = load_text_encoder(model, pretrained, pick_device(num_gpus))
        self.node = node_id()

    def __call__(self, batch: pa.Table) -> pa.Table:
        captions = [c or "" for c in batch.column("caption").to_pylist()]  # a rejected image: empty caption
        emb, n_tokens, truncated = self.encoder.caption_embeddings(captions)
        return embedding_table(batch.column("image_id"), batch.column("shard"), captions, emb, n_tokens, truncated,
                               self.node)


def embedding_table(image_ids, shards, captions: list[str], emb: np.ndarray, n_tokens: np.ndarray,
                    truncated: list[bool], node: str) -> pa.Table:
    """The store's rows: each caption's text and only its valid tokens, float16, row-major (n_tokens, dim)."""
    return pa.table({
        "image_id": image_ids,
        "shard": shards,
        "caption": pa.array(captions, pa.string()),
        "n_tokens": pa.array(n_tokens, pa.int32()),
        "dim": pa.array([emb.shape[2]] * len(emb), pa.int32()),
        "truncated": pa.array(truncated, pa.bool_()),
        "embedding": pa.array([e[:n].astype(np.float16).tobytes() for e, n in zip(emb, n_tokens, strict=True)],
                              pa.large_binary()),
        "node": pa.array([node] * len(emb), pa.string()),
    })


def run(ctx: StageContext) -> StageResult:
    cfg, ex = ctx.cfg.text, ctx.cfg.execution.text
    captions = read_parquet(ctx.inputs["caption"], columns=["image_id", "caption"]).sort_by("image_id")
    pool = ShardPool(EmbedBatch, dict(model=cfg.model, pretrained=cfg.pretrained, num_gpus=ex.num_gpus),
                     ex.batch_size, ex.concurrency, ex.num_gpus, max_retries=2, suffix=".arrow")
    stats = map_shards(ctx, captions, cfg.shard_size, pool, ctx.cfg.cluster, unit="captions")
    store = read_parquet(ctx.out_dir, columns=["image_id", "n_tokens", "dim", "truncated"])
    if store.num_rows != captions.num_rows:
        raise StageError(f"{ctx.out_dir}: {store.num_rows} embeddings for {captions.num_rows} captions")
    truncated = store.filter(store.column("truncated")).column("image_id").to_pylist()
    ctx.manifest.record_rejected(NAME, ctx.fingerprint, [(i, "caption truncated to the context") for i in truncated])
    dim = int(store.column("dim")[0].as_py())
    write_json({"dim": dim, "dtype": "float16", "rows": store.num_rows}, ctx.out_dir / META_FILE)
    n = store.column("n_tokens").to_numpy()
    return StageResult(store.num_rows, {"dim": dim, "truncated": len(truncated), **stats.details(),
                                        "mean_tokens": float(n.mean())})
