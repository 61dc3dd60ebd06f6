"""Stage 1 of the volumetric task, ingest: Synapse volumes (or the demo volumes) -> the index and the
preprocessed volumes (DESIGN §7).

Reads the split lists (``volumes.data.splits``, default GenericSSL's, shipped), checks each case (readable,
image and label of one shape, labels 0..13: a bad case is rejected with its reason, as 2D ingest does; with
``data.strict`` the stage fails), and writes ``index.parquet`` (one row per case: id, split train/val/test, file
paths relative to the root, content hashes, depth, height, width after preprocessing) and
``volumes/<case>_image.npy`` (float32 in [0, 1]) with ``<case>_label.npy`` (uint8): DHC's preprocessing done
once, read memory-mapped by training and evaluation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline.config import Config, ConfigError
from pipeline.progress import progress
from pipeline.stage import StageContext, StageError, StageResult
from pipeline.store import content_hash, write_atomic, write_parquet
from stages.index import INDEX_FILE, INDEX_SCHEMA, index_digests, record_rejected, split_file_lines
from stages.synapse import DEFAULT_SPLIT_FILE
from stages.synapse.cases import VOLUMES
from stages.synapse.datasets import volume_dataset

NAME = "ingest"
VERSION = 1
INPUTS: tuple[str, ...] = ()
VOLUME_INDEX_SCHEMA = INDEX_SCHEMA.append(pa.field("depth", pa.int32()))


def splits_folder(cfg: Config) -> Path:
    return Path(cfg.volumes.data.splits or DEFAULT_SPLIT_FILE.parent).expanduser().resolve()


def data_root(cfg: Config, workdir: Path) -> Path:
    """The dataset's root: the configured one, or where a generated dataset (the demo volumes) is written."""
    return volume_dataset(cfg.volumes.data.name).root(cfg, workdir)


def check_config(cfg: Config) -> None:
    """The dataset is registered (``stages.synapse.datasets``) and has the root it needs."""
    try:
        spec = volume_dataset(cfg.volumes.data.name)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if spec.NEEDS_ROOT and cfg.volumes.data.root is None:
        raise ConfigError(f"volumes.data.root: required for {cfg.volumes.data.name} (the folder holding RawData/, "
                          "imagesTr/ and labelsTr/, or DHC's npy/)")


def fingerprint_config(cfg: Config) -> dict[str, Any]:
    v, spec = cfg.volumes, volume_dataset(cfg.volumes.data.name)
    lists = {name: [e for _, e in split_file_lines(splits_folder(cfg) / name)]
             for name in ("train.txt", "eval.txt", "test.txt")}
    keys = {"name": v.data.name, "root": str(data_root(cfg, Path("."))) if spec.NEEDS_ROOT else None,
            "layout": v.data.layout, "hu_window": list(v.data.hu_window), "halve": v.data.halve, "splits": lists,
            **spec.fingerprint_keys(cfg)}
    return {"volumes": {"data": keys}}


def run(ctx: StageContext) -> StageResult:
    import numpy as np

    from stages.synapse.cases import check_case, list_cases, preprocess, read_split_lists

    v, root, spec = ctx.cfg.volumes, data_root(ctx.cfg, ctx.workdir), volume_dataset(ctx.cfg.volumes.data.name)
    try:
        lists = read_split_lists(splits_folder(ctx.cfg))
    except FileNotFoundError as err:
        raise StageError(f"volumes.data.splits: {err}") from None
    spec.prepare(root, ctx.cfg, lists)
    try:
        layout = spec.layout(root, v.data.layout)
    except FileNotFoundError as err:
        raise StageError(f"volumes.data.root: {err}") from None
    cases = list_cases(root, layout, lists)
    rows: dict[str, list] = {name: [] for name in VOLUME_INDEX_SCHEMA.names}
    rejected: list[tuple[str, str]] = []
    with progress("ingest volumes", total=len(cases), unit="cases") as advance:
        for case in cases:
            checked = check_case(case)
            advance(1)
            if isinstance(checked, str):
                rejected.append((str(case.image_path), checked))
                continue
            _, image, label = checked
            image, label = preprocess(image, label, v.data.hu_window, v.data.halve)
            for suffix, array in (("image", image), ("label", label)):
                write_atomic(ctx.out_dir / VOLUMES / f"{case.case_id}_{suffix}.npy",
                             lambda tmp, a=array: np.save(open(tmp, "wb"), a))
            d, h, w = image.shape
            for key, value in (("image_id", case.case_id), ("dataset", v.data.name), ("domain", "target"),
                               ("split", case.split), ("image_path", case.image_path.relative_to(root).as_posix()),
                               ("label_path", case.label_path.relative_to(root).as_posix()),
                               ("image_hash", content_hash(case.image_path)), ("label_hash", content_hash(case.label_path)),
                               ("height", h), ("width", w), ("depth", d)):
                rows[key].append(value)
    record_rejected(ctx, rejected, "case")
    if not rows["image_id"]:
        raise StageError(f"volumes.data.root: no usable case under {root} ({layout} layout)")
    table = pa.table(rows, schema=VOLUME_INDEX_SCHEMA).sort_by("image_id")
    write_parquet(table, ctx.out_dir / INDEX_FILE)
    per_split = {s: rows["split"].count(s) for s in ("train", "val", "test")}
    return StageResult(len(table), {"rejected": len(rejected), "layout": layout, **per_split},
                       digests=index_digests(table))
