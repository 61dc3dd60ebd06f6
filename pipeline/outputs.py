"""What a complete stage wrote, checked before it is reused (DESIGN §1: the work directory, not the manifest
alone, is the record of what exists).

When a stage completes, ``COMPLETE_FILE`` is written last into its directory: its fingerprint, payload, rows,
details and digests (what the manifest records), and every output file with its size and, for Parquet, the
row count its footer gives. Before a complete stage is reused its outputs are checked against it, cheaply:
each file's size, and each Parquet file's footer (not a reread). The record also lets a run whose manifest
was deleted adopt the stages whose outputs are intact instead of computing them again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.store import write_json

COMPLETE_FILE = "_complete.json"
UNTRACKED = ("ray",)  # Ray Train's own run state inside a stage directory: read by nothing downstream


@dataclass(frozen=True)
class Problem:
    path: Path
    why: str

    def __str__(self) -> str:
        return f"{self.path}: {self.why}"


def _tracked(out_dir: Path) -> list[Path]:
    files = []
    for path in sorted(Path(out_dir).rglob("*")):
        rel = path.relative_to(out_dir)
        if path.is_file() and rel.name != COMPLETE_FILE and not rel.name.startswith(".") \
                and rel.parts[0] not in UNTRACKED:
            files.append(path)
    return files


TABLES = (".parquet", ".arrow")


def _parquet_rows(path: Path) -> int:
    """Rows by the file's footer: Parquet's metadata, or an Arrow IPC file's record batches (memory-mapped)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.suffix == ".arrow":
        reader = pa.ipc.open_file(pa.memory_map(str(path), "r"))
        return sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
    return pq.read_metadata(path).num_rows


def list_outputs(out_dir: Path) -> dict[str, dict[str, int]]:
    """relative path -> {"size": bytes[, "rows": Parquet rows]} of every output file in ``out_dir``."""
    outputs = {}
    for path in _tracked(out_dir):
        entry = {"size": path.stat().st_size}
        if path.suffix in TABLES:
            entry["rows"] = _parquet_rows(path)
        outputs[path.relative_to(out_dir).as_posix()] = entry
    return outputs


def write_record(out_dir: Path, record: dict[str, Any]) -> None:
    """The stage's completion record, with its outputs listed; written last, whole or not at all."""
    write_json({**record, "outputs": list_outputs(out_dir)}, Path(out_dir) / COMPLETE_FILE)


def read_record(out_dir: Path) -> dict[str, Any] | None:
    """The completion record, or None when there is none (or it does not parse: a damaged record is none)."""
    try:
        record = json.loads((Path(out_dir) / COMPLETE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("outputs"), dict) else None


def check_outputs(out_dir: Path) -> list[Problem]:
    """What is wrong with a complete stage's outputs: a missing record, a missing file, a size that changed, a
    Parquet footer that does not read or gives another row count. Empty when every output is intact."""
    out_dir = Path(out_dir)
    record = read_record(out_dir)
    if record is None:
        return [Problem(out_dir / COMPLETE_FILE, "missing or unreadable completion record")]
    problems = []
    for rel, expected in record["outputs"].items():
        path = out_dir / rel
        if not path.is_file():
            problems.append(Problem(path, "missing"))
            continue
        size = path.stat().st_size
        if size != expected["size"]:
            problems.append(Problem(path, f"{size} bytes, {expected['size']} when it was written"))
            continue
        if "rows" in expected:
            try:
                rows = _parquet_rows(path)
            except Exception as err:  # pyarrow's ArrowInvalid, OSError: the footer does not read
                problems.append(Problem(path, f"{'Arrow' if path.suffix == '.arrow' else 'Parquet'} footer does not "
                                              f"read ({type(err).__name__})"))
                continue
            if rows != expected["rows"]:
                problems.append(Problem(path, f"{rows} rows, {expected['rows']} when it was written"))
    return problems


def verify_workdir(workdir: Path, stages: tuple[str, ...]) -> tuple[list[Problem], int, int]:
    """Every stage directory of a work directory: (the problems of those with a completion record, how many
    of those are intact, how many directories have no record: runs that did not finish)."""
    bad, intact, unfinished = [], 0, 0
    for stage in stages:
        for out_dir in sorted(p for p in (Path(workdir) / stage).glob("*") if p.is_dir()):
            if not (out_dir / COMPLETE_FILE).exists():
                unfinished += 1
                continue
            problems = check_outputs(out_dir)
            bad += problems
            intact += not problems
    return bad, intact, unfinished
