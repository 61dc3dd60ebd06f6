"""Files written whole or not at all: write to a temporary name in the same directory, then rename."""

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


def write_json(obj: Any, path: Path) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2, default=str)))


def read_parquet(path: Path, columns: list[str] | None = None) -> pa.Table:
    """Read one Parquet file, or a directory's shards (``shard-*.parquet``, in name order)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("shard-*.parquet"))
        if not files:
            return pa.table({})
        return pa.concat_tables([pq.read_table(f, columns=columns) for f in files])
    return pq.read_table(path, columns=columns)
