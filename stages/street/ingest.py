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

import io
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image

from pipeline.config import Config, ConfigError, import_plugins
from pipeline.progress import progress
from pipeline.stage import StageContext, StageError, StageResult
from pipeline.store import content_hash, write_parquet
from stages.index import INDEX_FILE, INDEX_SCHEMA, index_digests, record_rejected
from stages.street.datasets import (
    Sample,
    check_domain,
    dataset,
    dataset_roots,
    labels,
    layout_of,
    list_samples,
)

NAME = "ingest"
VERSION = 2  # 2: relative paths and content hashes; the labelled split moved to the split stage
INPUTS: tuple[str, ...] = ()
Check = tuple[int, int, str, str | None] | str  # (height, width, image hash, label hash), or why it is rejected


def fingerprint_config(cfg: Config) -> dict[str, Any]:
    """Which datasets, and where (a moved root is ingested again, but its unchanged images keep their
    captions: caption depends on the ``images`` digest, not on this fingerprint)."""
    data = cfg.data
    where: dict[str, Any] = {role: {"name": dom.name, "root": str(root) if dataset(dom.name).NEEDS_ROOT else None}
                             | ({"subsets": sorted(dom.subsets)} if dom.subsets else {})  # as before when unset
                             for (role, dom), root in zip((("source", data.source), ("target", data.target)),
                                                          dataset_roots(data, Path(".")).values(), strict=True)}
    for name in dict.fromkeys((data.source.name, data.target.name)):  # a generated dataset: its own keys
        if keys := dataset(name).fingerprint_keys(data):
            where[name] = keys
    for role in ("source", "target"):  # a folder: its patterns and its class file's content
        where[role] |= dataset(getattr(data, role).name).domain_keys(data, role)
    return {"data": where}


def check_config(cfg: Config) -> None:
    """Each domain's dataset is registered (``stages.street.datasets``), may play its role, and has the root it needs."""
    for role, dom in (("source", cfg.data.source), ("target", cfg.data.target)):
        try:
            check_domain(role, dom.name, dom.root, dom.subsets, dom)
            labels(cfg.data, role)  # a folder's class files read (the target's class set with them)
        except ValueError as err:
            raise ConfigError(f"data.{err}" if str(err).startswith(role) else f"data.{role}.classes: {err}") from None


def check_sample(sample: Sample, codec: Any) -> Check:
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
        return size[1], size[0], content_hash(image_bytes), None
    if not sample.label_path.exists():
        return f"missing label file {sample.label_path}"
    try:
        raw = codec.read_raw(sample.label_path)
        label_hash = content_hash(sample.label_path.read_bytes())
    except ValueError as err:  # the codec names what is wrong with the file
        return str(err)
    except Exception as err:
        return f"label does not decode ({type(err).__name__})"
    if raw.shape[:2] != (size[1], size[0]):
        return (f"label {sample.label_path}: size {raw.shape[1]}x{raw.shape[0]} differs from the image's "
                f"{size[0]}x{size[1]}")
    if problem := codec.problem(raw):
        return f"label {sample.label_path}: {problem}"
    return size[1], size[0], content_hash(image_bytes), label_hash


def _check_chunk(args: tuple[list[Sample], Any, tuple[str, ...]]) -> list[Check]:
    samples, codec, plugins = args
    import_plugins(plugins)  # a spawned process: a plugin's dataset registers itself again
    return [check_sample(s, codec) for s in samples]


def check_samples(samples: list[Sample], codec: Any, label: str, plugins: tuple[str, ...] = ()) -> list[Check]:
    """``check_sample`` over many files (``codec``: the domain's ``labels``), in parallel processes, with a
    progress bar."""
    chunk = 256
    chunks = [(samples[i:i + chunk], codec, plugins) for i in range(0, len(samples), chunk)]
    results: list[Check] = []
    # spawn, not fork: the driver may already run Ray and torch threads
    pool = ProcessPoolExecutor(mp_context=get_context("spawn")) if len(chunks) > 1 else None
    with progress(f"ingest {label}", total=len(samples), unit="files") as advance, pool or nullcontext():
        for part in (pool.map if pool else map)(_check_chunk, chunks):
            results.extend(part)
            advance(len(part))
    return results


def _domains(ctx: StageContext) -> dict[str, tuple[str, Path]]:
    """role -> (layout, absolute root); a generated dataset (the demo world) is generated first."""
    data, roots = ctx.cfg.data, dataset_roots(ctx.cfg.data, ctx.workdir)
    for name in dict.fromkeys((data.source.name, data.target.name)):
        dataset(name).prepare(ctx.workdir, data)
    return {role: (layout_of(dom.name, role), roots[role])
            for role, dom in (("source", data.source), ("target", data.target))}


def _samples(ctx: StageContext, role: str, layout: str, root: Path, same: bool) -> list[Sample]:
    """The domain's images (ids prefixed with the layout, and the role when both domains share one layout)."""
    try:
        samples = list_samples(layout, root, getattr(ctx.cfg.data, role), f"{layout}_{role}" if same else layout)
    except ValueError as err:
        raise StageError(f"data.{role}.{err}") from None
    if not samples:
        raise StageError(f"data.{role}.root: no {layout} images under {root} (expected {dataset(layout).LAYOUT})")
    return samples


def _relative(path: Path | None, root: Path) -> str | None:
    return None if path is None else path.relative_to(root).as_posix()


def run(ctx: StageContext) -> StageResult:
    rows: dict[str, list] = {name: [] for name in INDEX_SCHEMA.names}
    rejected: list[tuple[str, str]] = []
    domains = _domains(ctx)
    same = domains["source"][0] == domains["target"][0]
    for role, (layout, root) in domains.items():
        samples = _samples(ctx, role, layout, root, same)
        checks = check_samples(samples, labels(ctx.cfg.data, role), role, ctx.cfg.plugins)
        if role == "source":  # a source image teaches only through its labels
            checks = [c if s.label_path is not None else "a source image without a label file (data.source.masks)"
                      for s, c in zip(samples, checks, strict=True)]
        rejected += [(str(s.image_path), c) for s, c in zip(samples, checks, strict=True) if isinstance(c, str)]
        for s, check in zip(samples, checks, strict=True):
            if isinstance(check, str):
                continue
            h, w, image_hash, label_hash = check
            for key, value in (("image_id", s.image_id), ("dataset", layout), ("domain", role),
                               ("split", s.split), ("image_path", _relative(s.image_path, root)),
                               ("label_path", _relative(s.label_path, root)), ("image_hash", image_hash),
                               ("label_hash", label_hash), ("height", h), ("width", w)):
                rows[key].append(value)
    record_rejected(ctx, rejected, "file")
    table = pa.table(rows, schema=INDEX_SCHEMA).sort_by("image_id")
    write_parquet(table, ctx.out_dir / INDEX_FILE)
    domains = {role: int(pc.sum(pc.equal(table["domain"], role)).as_py() or 0) for role in ("source", "target")}
    return StageResult(len(table), {"rejected": len(rejected), **domains}, digests=index_digests(table))

