"""Files written whole or not at all: write to a temporary name in the same directory, then rename.

Tables are Parquet (``.parquet``: compressed, for stores read once), or Arrow IPC files (``.arrow``: the
text store, uncompressed, so that readers memory-map it and read rows without loading the file).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``, on failure remove it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: Path, write: Callable[[Path], Any]) -> Path:
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def write_parquet(table: pa.Table, path: Path) -> Path:
    return write_atomic(path, lambda tmp: pq.write_table(table, tmp))


def _write_ipc(table: pa.Table, tmp: Path) -> None:
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def write_table(table: pa.Table, path: Path) -> Path:
    """``table`` as Parquet or, for a ``.arrow`` path, as an uncompressed Arrow IPC file."""
    if Path(path).suffix == ".arrow":
        return write_atomic(path, lambda tmp: _write_ipc(table, tmp))
    return write_parquet(table, path)


def map_arrow(path: Path, columns: list[str] | None = None) -> pa.Table:
    """An Arrow IPC file memory-mapped: its buffers are views of the file, paged in when read."""
    table = pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()
    return table.select(columns) if columns else table


def write_json(obj: Any, path: Path) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2, default=str)))


def read_parquet(path: Path, columns: list[str] | None = None) -> pa.Table:
    """Read one Parquet (or Arrow IPC) file, or a directory's shards (``shard-*.parquet`` or ``shard-*.arrow``,
    in name order)."""
    path = Path(path)
    if path.is_dir():
        files = shard_files(path)
        if not files:
            return pa.table({})
        return pa.concat_tables([read_parquet(f, columns) for f in files])
    if path.suffix == ".arrow":
        return map_arrow(path, columns)
    return pq.read_table(path, columns=columns)


def shard_files(directory: Path) -> list[Path]:
    """A store's shard files, in name order: ``shard-NNNNN.parquet`` or ``shard-NNNNN.arrow``."""
    return sorted([*Path(directory).glob("shard-*.parquet"), *Path(directory).glob("shard-*.arrow")])


def content_hash(data: bytes | Path) -> str:
    """blake2b (16 bytes) of a file's bytes, given as bytes or read from a path in blocks: the index's image,
    label and volume hashes, and a captions file's content."""
    import hashlib

    if isinstance(data, bytes):
        return hashlib.blake2b(data, digest_size=16).hexdigest()
    h = hashlib.blake2b(digest_size=16)
    with open(data, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
