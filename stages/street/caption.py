"""Stage 2, caption: every indexed image -> one caption, in Parquet shards (DESIGN §1-2).

The captioner is any image-text-to-text model (``caption.model``, BLIP-2 by default; ``models.street.captioner``), or
the captions come from a file the user brings (``caption.captions_file``, ``stages.street.user_captions``): then no model
runs, the file is validated against the index and stored in the same shards, fingerprinted by its content.

One Ray Data pipeline: CPU tasks decode each image and resize it to the captioner's input size
(``decode_batch``, on any node with CPUs), and stream small uint8 arrays to an actor pool whose replicas
(one per GPU) load the captioner once and only run it (``CaptionBatch``). An image that fails to decode
becomes a row with a null caption and its error, recorded as rejected, instead of a crash.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from pipeline.config import Config, ConfigError
from pipeline.progress import console
from pipeline.shards import ShardPool, map_shards, node_id, write_shards
from pipeline.stage import StageContext, StageError, StageResult
from pipeline.store import read_parquet
from stages.index import DEMO_DIR, INDEX_FILE, resolve_rows
from stages.street.config import SCENE_DESCRIPTIONS
from stages.street.datasets import dataset_roots
from stages.street.demo_world import CAPTIONS_FILE, world_keys
from stages.street.user_captions import CaptionStats, file_digest, read_captions_file

NAME = "caption"
SHARDED = True  # redoes only the shards that are missing or damaged
VERSION = 4  # 2: the image set; 3: OpenCV decode in CPU tasks; 4: any captioner, tiny captions say something
INPUTS = ("ingest",)
INPUT_DIGESTS = {"ingest": "images"}  # the images alone: not the split, not where the dataset is mounted


def check_config(cfg: Config) -> None:
    """``caption.captions_file: demo`` reads a generated world's scene descriptions: one of the domains must be it."""
    from stages.street.datasets import dataset

    if cfg.caption.captions_file == SCENE_DESCRIPTIONS and not any(
            dataset(d.name).SCENE_DESCRIPTIONS for d in (cfg.data.source, cfg.data.target)):
        raise ConfigError("caption.captions_file: 'demo' (the demo world's scene descriptions) needs the demo world")


def legacy_dtype(keys: dict[str, Any]) -> dict[str, Any]:
    """``caption.dtype`` as fingerprints spelt it before ``auto`` was resolved at load: ``float32`` (what ``auto``
    meant on every CPU captioner) as ``auto``, so those caption stores stay valid; any other dtype as itself."""
    return keys | {"dtype": "auto"} if keys.get("dtype") == "float32" else keys


def fingerprint_config(cfg: Config) -> dict[str, Any]:
    if cfg.caption.captions_file == SCENE_DESCRIPTIONS:  # the demo world's descriptions: a function of the world's keys
        return {"caption": {"captions_file": "demo world scene descriptions"}, "demo": world_keys(cfg.data.demo)}
    if cfg.caption.captions_file is not None:  # no model runs: the file's content is all that counts
        return {"caption": {"captions_file": file_digest(cfg.caption.captions_file)}}
    return {"caption": legacy_dtype(cfg.caption.model_dump(mode="json", exclude={"captions_file"}))}


def decode_batch(batch: pa.Table, size: int) -> pa.Table:
    """CPU task: decode each image and resize it to the captioner's input (size × size, uint8 RGB bytes).
    An image that fails to decode keeps its row, with no pixels and the reason."""
    from stages.street.images import read_rgb, resize_image

    pixels, errors = [], []
    for path in batch.column("image_path").to_pylist():
        try:
            image = resize_image(read_rgb(path), (size, size))  # as `predict` does
            pixels.append(image.tobytes())
            errors.append(None)
        except Exception as err:  # any decoder error: record it, caption the rest
            pixels.append(None)
            errors.append(f"image does not decode ({type(err).__name__}: {err})"[:300])
    return batch.drop_columns(["image_path"]).append_column("pixels", pa.array(pixels, pa.binary())) \
        .append_column("error", pa.array(errors, pa.string()))


class CaptionBatch:
    """Ray Data callable class: one captioner per replica. It receives decoded pixels (``decode_batch``) and
    only runs the model, so a GPU replica never waits for PNG decoding. Callable without Ray as well."""

    def __init__(self, model: str, dtype: str, prompt: str | None, max_new_tokens: int, num_gpus: float,
                 size: int):
        from models.device import pick_device
        from models.street.captioner import load_captioner

        self.captioner = load_captioner(model, dtype, pick_device(num_gpus))
        self.model, self.prompt, self.max_new_tokens, self.size = model, prompt, max_new_tokens, size
        self.node = node_id()

    def __call__(self, batch: pa.Table) -> pa.Table:
        import numpy as np

        raw = batch.column("pixels").to_pylist()
        good = [np.frombuffer(p, np.uint8).reshape(self.size, self.size, 3) for p in raw if p is not None]
        captions = iter(self.captioner(good, self.prompt, self.max_new_tokens) if good else [])
        n = len(batch)
        return pa.table({
            "image_id": batch.column("image_id"),
            "shard": batch.column("shard"),
            "caption": pa.array([None if p is None else next(captions) for p in raw], pa.string()),
            "error": batch.column("error"),
            "captioner": pa.array([self.model] * n, pa.string()),
            "prompt": pa.array([self.prompt] * n, pa.string()),
            "node": pa.array([self.node] * n, pa.string()),
        })


def from_file(ctx: StageContext, index: pa.Table) -> dict[str, Any]:
    """The user's captions file as the stage's shards (no model runs)."""
    path = ctx.cfg.caption.captions_file
    path = ctx.workdir / DEMO_DIR / CAPTIONS_FILE if path == SCENE_DESCRIPTIONS else path
    captions = read_captions_file(path, index.to_pylist())
    ids = sorted(captions)
    n = len(ids)
    table = pa.table({"image_id": ids, "caption": [captions[i] for i in ids], "error": pa.nulls(n, pa.string()),
                      "captioner": [f"file:{path.name}"] * n, "prompt": pa.nulls(n, pa.string()),
                      "node": ["driver"] * n})
    return {"rows_now": write_shards(ctx, table, ctx.cfg.caption.shard_size)}


def from_model(ctx: StageContext, index: pa.Table) -> dict[str, Any]:
    """Every image captioned by ``caption.model`` in one Ray Data pipeline (CPU decode, model replicas)."""
    cfg, ex = ctx.cfg.caption, ctx.cfg.execution.caption
    rows = resolve_rows(index.to_pylist(), dataset_roots(ctx.cfg.data, ctx.workdir))
    index = pa.table({"image_id": [r["image_id"] for r in rows], "image_path": [r["image_path"] for r in rows]})
    pool = ShardPool(CaptionBatch, dict(model=cfg.model, dtype=cfg.dtype, prompt=cfg.prompt,
                                        max_new_tokens=cfg.max_new_tokens, num_gpus=ex.num_gpus,
                                        size=cfg.image_size),
                     ex.batch_size, ex.concurrency, ex.num_gpus, ex.max_retries,
                     prepare=decode_batch, prepare_kwargs={"size": cfg.image_size}, prepare_cpus=ex.decode_cpus,
                     num_cpus=ex.replica_cpus)
    return map_shards(ctx, index, cfg.shard_size, pool, ctx.cfg.cluster, unit="images").details()


def run(ctx: StageContext) -> StageResult:
    cfg = ctx.cfg.caption
    index = read_parquet(ctx.inputs["ingest"] / INDEX_FILE, columns=["image_id", "domain", "image_path"])
    details = (from_file if cfg.captions_file is not None else from_model)(ctx, index)
    store = read_parquet(ctx.out_dir, columns=["image_id", "caption", "error"])
    if sorted(store.column("image_id").to_pylist()) != sorted(index.column("image_id").to_pylist()):
        raise StageError(f"{ctx.out_dir}: the caption store does not hold exactly one row per indexed image")
    rejected = [(i, e) for i, e in zip(store.column("image_id").to_pylist(), store.column("error").to_pylist(),
                                       strict=True) if e is not None]
    ctx.manifest.record_rejected(NAME, ctx.fingerprint, rejected)
    stats = CaptionStats.of(store.column("caption").to_pylist())
    source = f"caption.captions_file {cfg.captions_file}" if cfg.captions_file else f"caption.model {cfg.model}"
    if (warning := stats.warning(source)) is not None:
        console.print(f"[yellow]  caption: warning: {warning}[/]", highlight=False)
    return StageResult(len(store), {"rejected": len(rejected), "source": source, **stats.details(), **details})
