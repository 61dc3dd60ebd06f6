"""Stage 1, ingest: datasets in their official layouts -> the ``index`` Parquet (DESIGN §1, §6).

One row per usable image: image_id, dataset, domain (source/target), split (train/val), image and label
paths relative to the dataset root, a content hash of each file, height, width. Broken files are recorded
in the manifest's ``rejected`` table and left out (or, with ``data.strict``, fail the stage). Which target
images are labelled is the ``split`` stage's business, not the index's.

Digests (what later stages depend on instead of this stage's fingerprint):
``images`` — (image_id, relative path, content hash) of every image: caption's input;
``index`` — every column: the input of split, train and evaluate (labels included).
"""

from __future__ import annotations

import hashlib
import io
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image

from pipeline.config import LAYOUTS, Config
from pipeline.progress import progress
from pipeline.stage import StageContext, StageError, StageResult
from pipeline.store import write_parquet
from stages import demo_world
from stages.datasets import MAX_LABEL_ID, Sample, list_samples, read_raw_label
from stages.index import DEMO_DIR, DEMO_LAYOUTS, INDEX_FILE, INDEX_SCHEMA, dataset_roots, index_digests, record_rejected

NAME = "ingest"
VERSION = 2  # 2: relative paths and content hashes; the labelled split moved to the split stage
INPUTS: tuple[str, ...] = ()
Check = tuple[int, int, str, str | None] | str  # (height, width, image hash, label hash), or why it is rejected


def fingerprint_config(cfg: Config) -> dict[str, Any]:
    """Which datasets, and where (a moved root is ingested again, but its unchanged images keep their
    captions: caption depends on the ``images`` digest, not on this fingerprint)."""
    data = cfg.data
    where = {role: {"name": dom.name, "root": None if dom.name == "demo" else str(root)}
             for (role, dom), root in zip((("source", data.source), ("target", data.target)),
                                          dataset_roots(data, Path(".")).values(), strict=True)}
    if "demo" in (data.source.name, data.target.name):
        where["demo"] = demo_world.world_keys(data.demo)
    return {"data": where}


def file_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def check_sample(sample: Sample, dataset: str) -> Check:
    """(height, width, image hash, label hash) of a usable image, or the reason to reject it.

    Each file is read once: its bytes are hashed and then decoded from memory.
    """
    try:
        image_bytes = sample.image_path.read_bytes()
        with Image.open(io.BytesIO(image_bytes)) as im:
            size = im.size
            im.verify()  # reads every chunk: truncated and corrupt files fail here
    except Exception as err:  # PIL raises many kinds; any of them means the image is unusable
        return f"image does not decode ({type(err).__name__})"
    if sample.label_path is None:
        return size[1], size[0], file_hash(image_bytes), None
    if not sample.label_path.exists():
        return f"missing label file {sample.label_path}"
    try:
        raw = read_raw_label(sample.label_path, dataset)
        label_hash = file_hash(sample.label_path.read_bytes())
    except Exception as err:
        return f"label does not decode ({type(err).__name__})"
    if raw.shape[:2] != (size[1], size[0]):
        return f"label size {raw.shape[1]}x{raw.shape[0]} differs from image size {size[0]}x{size[1]}"
    if raw.size and int(raw.max()) > MAX_LABEL_ID[dataset]:
        return f"label value {int(raw.max())} outside the {dataset} id range 0..{MAX_LABEL_ID[dataset]}"
    return size[1], size[0], file_hash(image_bytes), label_hash


def _check_chunk(args: tuple[list[Sample], str]) -> list[Check]:
    samples, dataset = args
    return [check_sample(s, dataset) for s in samples]


def check_samples(samples: list[Sample], dataset: str, label: str) -> list[Check]:
    """``check_sample`` over many files, in parallel processes, with a progress bar."""
    chunk = 256
    chunks = [(samples[i:i + chunk], dataset) for i in range(0, len(samples), chunk)]
    results: list[Check] = []
    # spawn, not fork: the driver may already run Ray and torch threads
    pool = ProcessPoolExecutor(mp_context=get_context("spawn")) if len(chunks) > 1 else None
    with progress(f"ingest {label}", total=len(samples), unit="files") as advance, pool or nullcontext():
        for part in (pool.map if pool else map)(_check_chunk, chunks):
            results.extend(part)
            advance(len(part))
    return results


def _domains(ctx: StageContext) -> dict[str, tuple[str, Path]]:
    """role -> (layout, absolute root); the demo world is generated first."""
    data, roots = ctx.cfg.data, dataset_roots(ctx.cfg.data, ctx.workdir)
    if "demo" in (data.source.name, data.target.name):
        d = data.demo
        demo_world.generate(ctx.workdir / DEMO_DIR, d.n_source, d.n_target_train, d.n_target_val, d.height,
                            d.width, seed=d.seed, gap=d.gap, alike=d.lookalike)
    return {role: (DEMO_LAYOUTS[role] if dom.name == "demo" else dom.name, roots[role])
            for role, dom in (("source", data.source), ("target", data.target))}


def _relative(path: Path | None, root: Path) -> str | None:
    return None if path is None else path.relative_to(root).as_posix()


def run(ctx: StageContext) -> StageResult:
    rows: dict[str, list] = {name: [] for name in INDEX_SCHEMA.names}
    rejected: list[tuple[str, str]] = []
    for role, (dataset, root) in _domains(ctx).items():
        samples = list_samples(dataset, root)
        if not samples:
            raise StageError(f"data.{role}.root: no {dataset} images under {root} (expected {LAYOUTS[dataset]})")
        checks = check_samples(samples, dataset, role)
        rejected += [(str(s.image_path), c) for s, c in zip(samples, checks, strict=True) if isinstance(c, str)]
        for s, check in zip(samples, checks, strict=True):
            if isinstance(check, str):
                continue
            h, w, image_hash, label_hash = check
            for key, value in (("image_id", s.image_id), ("dataset", dataset), ("domain", role),
                               ("split", s.split), ("image_path", _relative(s.image_path, root)),
                               ("label_path", _relative(s.label_path, root)), ("image_hash", image_hash),
                               ("label_hash", label_hash), ("height", h), ("width", w)):
                rows[key].append(value)
    record_rejected(ctx, rejected, "file")
    table = pa.table(rows, schema=INDEX_SCHEMA).sort_by("image_id")
    write_parquet(table, ctx.out_dir / INDEX_FILE)
    domains = {role: int(pc.sum(pc.equal(table["domain"], role)).as_py() or 0) for role in ("source", "target")}
    return StageResult(len(table), {"rejected": len(rejected), **domains}, digests=index_digests(table))

