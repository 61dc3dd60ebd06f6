"""Stage 1, ingest: datasets in their official layouts -> the ``index`` Parquet (DESIGN §1, §6).

One row per usable image: image_id, domain (source/target), split (train/val), labelled, image_path,
label_path (null when unlabelled), height, width. Broken files are recorded in the manifest's
``rejected`` table and left out (or, with ``data.strict``, fail the stage).
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image

from pipeline.config import Config, DataConfig
from pipeline.progress import console, progress
from pipeline.stage import StageContext, StageError, StageResult
from pipeline.store import write_parquet
from stages import demo_world
from stages.datasets import LAYOUTS, MAX_LABEL_ID, Sample, list_samples, read_raw_label, to_train_ids

NAME = "ingest"
VERSION = 1
INPUTS: tuple[str, ...] = ()
INDEX_FILE = "index.parquet"

INDEX_SCHEMA = pa.schema([
    ("image_id", pa.string()), ("domain", pa.string()), ("split", pa.string()), ("labelled", pa.bool_()),
    ("image_path", pa.string()), ("label_path", pa.string()), ("height", pa.int32()), ("width", pa.int32()),
])


def fingerprint_config(cfg: Config) -> dict[str, Any]:
    uses_demo = "demo" in (cfg.data.source.name, cfg.data.target.name)
    return cfg.data.model_dump(mode="json", exclude={"strict"} if uses_demo else {"strict", "demo"})


def load_label(path: Path | str, dataset: str) -> np.ndarray:
    """A label file as Cityscapes trainIds: uint8 (H, W), 0..18, 255 = ignore.

    ``dataset`` is ``cityscapes``, ``gta5``, ``demo`` (Cityscapes labelIds) or ``synthia`` (16-bit PNG,
    class id in the first channel).
    """
    return to_train_ids(read_raw_label(Path(path), dataset), dataset)


def check_sample(sample: Sample, dataset: str) -> tuple[int, int] | str:
    """(height, width) of a usable image, or the reason to reject it."""
    try:
        with Image.open(sample.image_path) as im:
            size = im.size
            im.verify()  # reads every chunk: truncated and corrupt files fail here
    except Exception as err:  # PIL raises many kinds; any of them means the image is unusable
        return f"image does not decode ({type(err).__name__})"
    if sample.label_path is None:
        return size[1], size[0]
    if not sample.label_path.exists():
        return f"missing label file {sample.label_path}"
    try:
        raw = read_raw_label(sample.label_path, dataset)
    except Exception as err:
        return f"label does not decode ({type(err).__name__})"
    if raw.shape[:2] != (size[1], size[0]):
        return f"label size {raw.shape[1]}x{raw.shape[0]} differs from image size {size[0]}x{size[1]}"
    if raw.size and int(raw.max()) > MAX_LABEL_ID[dataset]:
        return f"label value {int(raw.max())} outside the {dataset} id range 0..{MAX_LABEL_ID[dataset]}"
    return size[1], size[0]


def _check_chunk(args: tuple[list[Sample], str]) -> list[tuple[int, int] | str]:
    samples, dataset = args
    return [check_sample(s, dataset) for s in samples]


def check_samples(samples: list[Sample], dataset: str, label: str) -> list[tuple[int, int] | str]:
    """``check_sample`` over many files, in parallel processes, with a progress bar."""
    chunk = 256
    chunks = [(samples[i:i + chunk], dataset) for i in range(0, len(samples), chunk)]
    results: list[tuple[int, int] | str] = []
    # spawn, not fork: the driver may already run Ray and torch threads
    pool = ProcessPoolExecutor(mp_context=get_context("spawn")) if len(chunks) > 1 else None
    with progress(f"ingest {label}", total=len(samples), unit="files") as advance, pool or nullcontext():
        for part in (pool.map if pool else map)(_check_chunk, chunks):
            results.extend(part)
            advance(len(part))
    return results


def labelled_split(train_ids: list[str], data: DataConfig, workdir: Path) -> tuple[set[str], Path]:
    """The labelled target images: a user's split file, or N chosen from the seed; written to a file."""
    if data.split_file is not None:
        known, chosen = set(train_ids), []
        for lineno, line in enumerate(data.split_file.read_text().splitlines(), 1):
            name = line.strip()
            if not name or name.startswith("#"):
                continue
            match = _match_split_name(name, known)
            if match is None:
                raise StageError(f"{data.split_file}:{lineno}: {name!r} is not a target train image")
            chosen.append(match)
        return set(chosen), data.split_file
    n = len(train_ids) if data.labelled_target == "all" else data.labelled_target
    if n > len(train_ids):
        raise StageError(f"data.labelled_target: {n} asked for, the target has {len(train_ids)} train images")
    # Rank by a hash of (seed, id): the same seed gives the same list on any machine and in any file order.
    ranked = sorted(train_ids, key=lambda i: hashlib.sha256(f"{data.seed}:{i}".encode()).hexdigest())
    chosen = sorted(ranked[:n])
    path = workdir / "splits" / f"labelled_{data.labelled_target}_seed{data.seed}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{i}\n" for i in chosen))
    return set(chosen), path


def _match_split_name(name: str, known: set[str]) -> str | None:
    """A split line may be an image_id, a file name or a Cityscapes stem (aachen_000000_000019)."""
    if name in known:
        return name
    stem = Path(name).name.removesuffix(".png").removesuffix("_leftImg8bit")
    candidates = [k for k in known if k.rsplit("/", 1)[-1] == stem]
    return candidates[0] if len(candidates) == 1 else None


def _domain_roots(ctx: StageContext) -> dict[str, tuple[str, Path]]:
    data = ctx.cfg.data
    roots = {}
    if "demo" in (data.source.name, data.target.name):
        d = data.demo
        gta5_root, city_root = demo_world.generate(ctx.workdir / "data" / "demo", d.n_source, d.n_target_train,
                                                   d.n_target_val, d.height, d.width, seed=data.seed)
    for role, dom in (("source", data.source), ("target", data.target)):
        if dom.name == "demo":
            roots[role] = ("gta5", gta5_root) if role == "source" else ("cityscapes", city_root)
        else:
            roots[role] = (dom.name, dom.root)
    return roots


def run(ctx: StageContext) -> StageResult:
    rows: dict[str, list] = {name: [] for name in INDEX_SCHEMA.names}
    rejected: list[tuple[str, str]] = []
    split_path = None
    for role, (dataset, root) in _domain_roots(ctx).items():
        samples = list_samples(dataset, root)
        if not samples:
            raise StageError(f"data.{role}.root: no {dataset} images under {root} (expected {LAYOUTS[dataset]})")
        checks = check_samples(samples, dataset, role)
        good = [(s, c) for s, c in zip(samples, checks, strict=True) if not isinstance(c, str)]
        rejected += [(str(s.image_path), c) for s, c in zip(samples, checks, strict=True) if isinstance(c, str)]
        labelled = {s.image_id for s, _ in good}  # source and target val: every image
        if role == "target":
            train_ids = [s.image_id for s, _ in good if s.split == "train"]
            chosen, split_path = labelled_split(train_ids, ctx.cfg.data, ctx.workdir)
            labelled = chosen | {s.image_id for s, _ in good if s.split == "val"}
        for s, (h, w) in good:
            is_labelled = s.image_id in labelled
            for key, value in (("image_id", s.image_id), ("domain", role), ("split", s.split),
                               ("labelled", is_labelled), ("image_path", str(s.image_path)),
                               ("label_path", str(s.label_path) if is_labelled else None),
                               ("height", h), ("width", w)):
                rows[key].append(value)
    ctx.manifest.record_rejected(NAME, ctx.fingerprint, rejected)
    if rejected:
        console.print(f"  ingest: rejected {len(rejected)} file(s); `semidavil status` lists them")
        if ctx.cfg.data.strict:
            raise StageError("data.strict: rejected files:\n" + "\n".join(f"  {p}: {r}" for p, r in rejected))
    table = pa.table(rows, schema=INDEX_SCHEMA).sort_by("image_id")
    write_parquet(table, ctx.out_dir / INDEX_FILE)
    domains = {role: int(pc.sum(pc.equal(table["domain"], role)).as_py() or 0)
               for role in ("source", "target")}
    return StageResult(len(table), {"rejected": len(rejected), "split_file": str(split_path), **domains})
