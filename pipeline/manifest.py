"""The DuckDB manifest: runs, stage runs, shards and rejected files (DESIGN §1).

Only the driver writes it. Each call opens and closes its own connection, so `semidavil status` can read
the file between the writes of a run in progress.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

MANIFEST_FILE = "manifest.duckdb"  # in the work directory

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY, command VARCHAR, status VARCHAR,
    started_at TIMESTAMP, ended_at TIMESTAMP, error VARCHAR);
CREATE TABLE IF NOT EXISTS stage_runs (
    stage_run_id VARCHAR PRIMARY KEY, run_id VARCHAR, stage VARCHAR, fingerprint VARCHAR,
    status VARCHAR, rows BIGINT, output_path VARCHAR, started_at TIMESTAMP, ended_at TIMESTAMP,
    error VARCHAR, details VARCHAR, payload VARCHAR, digests VARCHAR);
CREATE TABLE IF NOT EXISTS shards (
    stage VARCHAR, fingerprint VARCHAR, shard INTEGER, status VARCHAR, rows BIGINT, path VARCHAR,
    node VARCHAR, attempts INTEGER, started_at TIMESTAMP, ended_at TIMESTAMP, error VARCHAR,
    PRIMARY KEY (stage, fingerprint, shard));
CREATE TABLE IF NOT EXISTS rejected (
    stage VARCHAR, fingerprint VARCHAR, path VARCHAR, reason VARCHAR, recorded_at TIMESTAMP);
"""
# Manifests written before `plan` existed lack these columns.
MIGRATIONS = """
ALTER TABLE stage_runs ADD COLUMN IF NOT EXISTS payload VARCHAR;
ALTER TABLE stage_runs ADD COLUMN IF NOT EXISTS digests VARCHAR;
"""

_RETRY_SECONDS = 10.0  # another process (a `status` reader) may hold the file for a moment


@dataclass(frozen=True)
class StageRun:
    stage: str
    fingerprint: str
    status: str
    rows: int | None
    output_path: str | None
    started_at: datetime | None
    ended_at: datetime | None
    error: str | None
    details: dict[str, Any]
    payload: dict[str, Any] | None = None  # what the fingerprint hashed (stage.payload)
    digests: dict[str, str] = field(default_factory=dict)  # content digests of the output

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> StageRun:
        loads = lambda text: json.loads(text) if text else None  # noqa: E731
        return cls(row["stage"], row["fingerprint"], row["status"], row["rows"], row["output_path"],
                   row["started_at"], row["ended_at"], row["error"], loads(row["details"]) or {},
                   loads(row.get("payload")), loads(row.get("digests")) or {})

    @property
    def seconds(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()


class ManifestError(RuntimeError):
    """A manifest file that cannot be opened; the message names it and says what to do."""


def is_duckdb_file(path: Path) -> bool:
    """Whether ``path`` is absent (DuckDB creates it) or a DuckDB database (its magic bytes)."""
    if not path.exists():
        return True
    with open(path, "rb") as fh:
        return fh.read(12)[8:12] == b"DUCK"


def _now() -> datetime:
    return datetime.now()


class Manifest:
    """Records of a work directory's stage runs, shards and rejected files."""

    def __init__(self, path: Path, read_only: bool = False):
        """``read_only``: for readers (`status`, `plan`) of a manifest that exists; nothing is written."""
        self.path, self.read_only = Path(path), read_only
        if not is_duckdb_file(self.path):
            raise ManifestError(f"{self.path}: not a DuckDB manifest (damaged or overwritten); move it aside "
                                f"(mv {self.path} {self.path}.bad) and run again: complete stages whose outputs "
                                "are intact on disk are adopted, not recomputed")
        if not read_only:
            with self._connect() as con:
                con.execute(SCHEMA)
                con.execute(MIGRATIONS)

    @contextmanager
    def _connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        deadline = time.monotonic() + _RETRY_SECONDS
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=self.read_only)
                break
            except duckdb.IOException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        try:
            yield con
        finally:
            con.close()

    # runs -------------------------------------------------------------------------------------
    def withdraw_stage(self, stage: str, fingerprint: str) -> None:
        """The complete runs of (stage, fingerprint) are no longer: their outputs were found damaged."""
        with self._connect() as con:
            con.execute("UPDATE stage_runs SET status='damaged' WHERE stage=? AND fingerprint=? AND status='complete'",
                        [stage, fingerprint])

    def start_run(self, command: str) -> str:
        run_id = uuid.uuid4().hex[:12]
        with self._connect() as con:
            # A run or stage left 'running' belongs to a process that died: the lock proves it.
            con.execute("UPDATE runs SET status='interrupted' WHERE status='running'")
            con.execute(
                "UPDATE stage_runs SET status='interrupted' WHERE status='running'",
            )
            con.execute("INSERT INTO runs VALUES (?, ?, 'running', ?, NULL, NULL)", [run_id, command, _now()])
        return run_id

    def end_run(self, run_id: str, status: str, error: str | None = None) -> None:
        with self._connect() as con:
            con.execute(
                "UPDATE runs SET status=?, ended_at=?, error=? WHERE run_id=?", [status, _now(), error, run_id]
            )

    # stage runs -------------------------------------------------------------------------------
    def start_stage(self, run_id: str, stage: str, fingerprint: str, output_path: Path,
                    payload: dict[str, Any] | None = None) -> str:
        stage_run_id = uuid.uuid4().hex[:12]
        with self._connect() as con:
            con.execute(
                "INSERT INTO stage_runs (stage_run_id, run_id, stage, fingerprint, status, output_path, started_at, "
                "details, payload) VALUES (?, ?, ?, ?, 'running', ?, ?, '{}', ?)",
                [stage_run_id, run_id, stage, fingerprint, str(output_path), _now(), json.dumps(payload)],
            )
        return stage_run_id

    def end_stage(
        self,
        stage_run_id: str,
        status: str,
        rows: int | None = None,
        error: str | None = None,
        details: dict[str, Any] | None = None,
        digests: dict[str, str] | None = None,
    ) -> None:
        with self._connect() as con:
            con.execute(
                "UPDATE stage_runs SET status=?, rows=?, ended_at=?, error=?, details=?, digests=? "
                "WHERE stage_run_id=?",
                [status, rows, _now(), error, json.dumps(details or {}), json.dumps(digests or {}), stage_run_id],
            )

    def latest_stage_run(
        self, stage: str, fingerprint: str | None = None, status: str | None = None
    ) -> StageRun | None:
        """The newest run of ``stage``, optionally only with this fingerprint and status."""
        runs = self.stage_runs(stage, fingerprint, status, limit=1)
        return runs[0] if runs else None

    def stage_runs(self, stage: str, fingerprint: str | None = None, status: str | None = None,
                   limit: int | None = None) -> list[StageRun]:
        """Runs of ``stage``, newest first, optionally only with this fingerprint and status."""
        query, params = "SELECT * FROM stage_runs WHERE stage=?", [stage]
        for col, val in (("fingerprint", fingerprint), ("status", status)):
            if val is not None:
                query += f" AND {col}=?"
                params.append(val)
        query += " ORDER BY started_at DESC" + (f" LIMIT {int(limit)}" if limit else "")
        with self._connect() as con:
            cursor = con.execute(query, params)
            names = [d[0] for d in cursor.description]
            return [StageRun.from_row(dict(zip(names, row, strict=True))) for row in cursor.fetchall()]

    # shards -----------------------------------------------------------------------------------
    def record_shard(
        self,
        stage: str,
        fingerprint: str,
        shard: int,
        status: str,
        rows: int = 0,
        path: Path | None = None,
        node: str | None = None,
        attempts: int = 1,
        error: str | None = None,
        started_at: datetime | None = None,
    ) -> None:
        with self._connect() as con:
            con.execute(
                "INSERT OR REPLACE INTO shards VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [stage, fingerprint, shard, status, rows, None if path is None else str(path), node, attempts,
                 started_at or _now(), _now(), error],
            )

    def shards(self, stage: str, fingerprint: str, status: str | None = None) -> dict[int, dict[str, Any]]:
        query = "SELECT shard, status, rows, path, node, attempts, error FROM shards WHERE stage=? AND fingerprint=?"
        params: list[Any] = [stage, fingerprint]
        if status is not None:
            query += " AND status=?"
            params.append(status)
        with self._connect() as con:
            rows = con.execute(query, params).fetchall()
        keys = ("status", "rows", "path", "node", "attempts", "error")
        return {r[0]: dict(zip(keys, r[1:], strict=True)) for r in rows}

    # rejected files ---------------------------------------------------------------------------
    def record_rejected(self, stage: str, fingerprint: str, rejected: list[tuple[str, str]]) -> None:
        """Replace the rejected files of (stage, fingerprint) with ``rejected`` [(path, reason)]."""
        with self._connect() as con:
            con.execute("DELETE FROM rejected WHERE stage=? AND fingerprint=?", [stage, fingerprint])
            if rejected:
                now = _now()
                con.executemany(
                    "INSERT INTO rejected VALUES (?, ?, ?, ?, ?)",
                    [[stage, fingerprint, path, reason, now] for path, reason in rejected],
                )

    def rejected(self, stage: str | None = None, fingerprint: str | None = None) -> list[tuple[str, str, str]]:
        query, params = "SELECT stage, path, reason FROM rejected WHERE 1=1", []
        for col, val in (("stage", stage), ("fingerprint", fingerprint)):
            if val is not None:
                query += f" AND {col}=?"
                params.append(val)
        with self._connect() as con:
            return con.execute(query + " ORDER BY stage, path", params).fetchall()
