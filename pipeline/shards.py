"""Sharded, resumable Ray Data map: the engine of the caption and embed_text stages (DESIGN §1-2).

The rows are cut into shards of ``shard_size``. Shards already recorded complete (and present on disk) are
skipped. The rest go through one Ray Data ``map_batches`` actor pool; the driver gathers each shard's
rows as they stream back, writes the shard whole (temporary name, then rename) and records it in the
manifest. A replica that dies is replaced and its batch retried (Ray Data's own default for actor pools:
restart and retry without end); ``Bounded`` counts the attempts of each batch in a small Ray actor and
fails the batch past ``max_retries`` retries. Then the shards not yet done are recorded as failed, the
stage fails naming them, and the done ones stay done for the next run.
"""

from __future__ import annotations

import logging
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.config import ClusterConfig
from pipeline.progress import QUIET, console, progress, route_ray_output
from pipeline.stage import StageContext, StageError
from pipeline.store import write_table

SHARD_COLUMN = "shard"
ROW_COLUMN = "_row"  # the row's index in the stage's input: names a batch across retries


def _quiet_ray(log_dir: Path) -> None:
    """Ray's own output off the terminal (``pipeline.progress``): its loggers first, then the file."""
    import warnings

    import ray.data  # noqa: F401  (their log handlers are made now, on the stream that goes to the file)
    import ray.train  # noqa: F401
    from ray.util.annotations import RayDeprecationWarning

    warnings.filterwarnings("ignore", category=RayDeprecationWarning)
    route_ray_output(Path(log_dir) / "ray-console.log")
    console.print(f"  Ray's own output: {Path(log_dir) / 'ray-console.log'} (and Ray's session logs; "
                  "--verbose shows it here)")


def init_ray(cluster: ClusterConfig, log_dir: Path | str = "logs") -> None:
    """Start Ray locally, or join the cluster at ``cluster.address``; once per process. In quiet mode (the
    CLI's default) Ray's own output goes to ``log_dir``."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    quiet = QUIET["on"]
    if quiet:
        _quiet_ray(log_dir)
    # The dashboard also serves the State API that Ray Train's placement-group cleaner polls.
    # No address: a Ray of our own, never whatever other Ray instance runs on the machine (another work directory's
    # pipeline, a test session); "auto" or HOST:PORT joins a cluster (cluster.yaml).
    context = ray.init(address=cluster.address or "local",
                       num_cpus=cluster.num_cpus if cluster.address is None else None,
                       logging_level=logging.WARNING, log_to_driver=not quiet)
    if context.dashboard_url:
        console.print(f"  Ray dashboard: http://{context.dashboard_url}")
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # ours shows images, images/s and time left
    ctx.print_on_execution_start = False
    ctx.verbose_stats_logs = False


@dataclass(frozen=True)
class ShardPool:
    """How to run the per-batch work: a callable class, built once per replica."""

    udf: type
    udf_kwargs: dict[str, Any]
    batch_size: int
    concurrency: int
    num_gpus: float
    max_retries: int
    prepare: Any = None  # a function batch -> batch run as CPU tasks before the pool (e.g. image decoding)
    prepare_kwargs: dict[str, Any] | None = None
    prepare_cpus: float = 1.0  # CPUs per prepare task
    num_cpus: float = 1.0  # CPUs reserved per replica; with a prepare stage, leave some for its tasks
    suffix: str = ".parquet"  # the shards' format: Parquet, or ".arrow" (Arrow IPC, memory-mappable: the text store)


@dataclass(frozen=True)
class MapStats:
    """What one ``map_shards`` call did: rows written, seconds until the first batch came back (replica
    start-up), seconds in all, and rows that arrived after the first batch (for the steady-state rate)."""

    rows: int = 0
    startup_s: float = 0.0
    seconds: float = 0.0
    rows_after_first: int = 0

    @property
    def steady_rate(self) -> float:
        busy = self.seconds - self.startup_s
        return self.rows_after_first / busy if busy > 0 else float("nan")

    def details(self) -> dict[str, float]:
        return {"rows_now": self.rows, "startup_s": round(self.startup_s, 2), "map_s": round(self.seconds, 2),
                "rows_per_s": round(self.steady_rate, 1) if self.rows_after_first else None}


def node_id() -> str:
    """The Ray node this process runs on (``local`` without Ray): the ``node`` column of every shard row."""
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else "local"


class Attempts:
    """Counts how often each batch was started, across replicas and restarts (run as a Ray actor)."""

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}

    def start(self, key: int) -> int:
        self.counts[key] = self.counts.get(key, 0) + 1
        return self.counts[key]


class BatchKeptFailing(RuntimeError):
    pass


class Bounded:
    """The pool's UDF, refusing a batch that has already killed its replica ``max_retries + 1`` times."""

    def __init__(self, udf: type, udf_kwargs: dict[str, Any], attempts: Any, max_retries: int) -> None:
        self.udf, self.attempts, self.max_retries = udf(**udf_kwargs), attempts, max_retries

    def __call__(self, batch: pa.Table) -> pa.Table:
        import ray

        key = batch.column(ROW_COLUMN)[0].as_py()
        attempt = ray.get(self.attempts.start.remote(key))
        if attempt > self.max_retries + 1:
            raise BatchKeptFailing(f"the batch from row {key} killed its replica {attempt - 1} times "
                                   f"(max_retries={self.max_retries})")
        return self.udf(batch.drop_columns([ROW_COLUMN]))


def shard_path(out_dir: Path, shard: int, suffix: str = ".parquet") -> Path:
    return Path(out_dir) / f"shard-{shard:05d}{suffix}"


def pending_shards(ctx: StageContext, n_shards: int, suffix: str = ".parquet") -> list[int]:
    done = ctx.manifest.shards(ctx.name, ctx.fingerprint, status="complete")
    return [i for i in range(n_shards) if not (i in done and shard_path(ctx.out_dir, i, suffix).exists())]


def batches(rows: pa.Table, shards: list[int], shard_size: int, batch_size: int) -> list[pa.Table]:
    """The rows of ``shards`` in batches of ``batch_size`` (none straddles two shards), each row tagged with its
    shard and its row number."""
    blocks = []
    for i in shards:
        part = rows.slice(i * shard_size, shard_size)
        part = part.append_column(SHARD_COLUMN, pa.array(np.full(len(part), i, dtype=np.int32)))
        part = part.append_column(ROW_COLUMN, pa.array(np.arange(len(part), dtype=np.int64) + i * shard_size))
        blocks += [part.slice(j, batch_size) for j in range(0, len(part), batch_size)]
    return blocks


def _dataset(rows: pa.Table, shards: list[int], shard_size: int, pool: ShardPool):
    import ray

    ds = ray.data.from_arrow(batches(rows, shards, shard_size, pool.batch_size))
    if pool.prepare is not None:  # CPU tasks, on any node with CPUs, stream their output to the pool
        ds = ds.map_batches(pool.prepare, fn_kwargs=pool.prepare_kwargs or {}, batch_size=pool.batch_size,
                            batch_format="pyarrow", num_cpus=pool.prepare_cpus)
    attempts = ray.remote(num_cpus=0)(Attempts).remote()
    kwargs = {"udf": pool.udf, "udf_kwargs": pool.udf_kwargs, "attempts": attempts, "max_retries": pool.max_retries}
    return ds.map_batches(  # no **ray_remote_args: Ray Data restarts replicas and retries by default; Bounded bounds it
        Bounded, fn_constructor_kwargs=kwargs, batch_size=pool.batch_size, batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=pool.concurrency), num_gpus=pool.num_gpus or None, num_cpus=pool.num_cpus,
    )


def _finish_shard(ctx: StageContext, shard: int, parts: list[pa.Table], started: datetime, attempts: int,
                  suffix: str = ".parquet") -> int:
    table = pa.concat_tables(parts)
    table = table.sort_by("image_id") if "image_id" in table.column_names else table
    nodes = ",".join(sorted(set(table.column("node").to_pylist()))) if "node" in table.column_names else None
    path = write_table(table.drop_columns([SHARD_COLUMN]), shard_path(ctx.out_dir, shard, suffix))
    ctx.manifest.record_shard(ctx.name, ctx.fingerprint, shard, "complete", rows=len(table), path=path,
                              node=nodes, attempts=attempts, started_at=started)
    return len(table)


def write_shards(ctx: StageContext, table: pa.Table, shard_size: int) -> int:
    """Rows computed in the driver (no Ray, no model: a user's captions file), written as the shards
    ``map_shards`` would write and recorded alike; shards already complete are kept. Returns rows written."""
    started, written = datetime.now(), 0
    for i in pending_shards(ctx, -(-len(table) // shard_size)):
        part = table.slice(i * shard_size, shard_size)
        part = part.append_column(SHARD_COLUMN, pa.array(np.full(len(part), i, dtype=np.int32)))
        written += _finish_shard(ctx, i, [part], started, attempts=1)
    return written


def map_shards(ctx: StageContext, rows: pa.Table, shard_size: int, pool: ShardPool, cluster: ClusterConfig,
               unit: str = "images") -> MapStats:
    """Run ``pool.udf`` over ``rows`` shard by shard; say what this call did."""
    n_shards = -(-len(rows) // shard_size)
    todo = pending_shards(ctx, n_shards, pool.suffix)
    if not todo:
        return MapStats()
    if len(todo) < n_shards:
        console.print(f"  {ctx.name}: {n_shards - len(todo)} of {n_shards} shards already done, resuming")
    init_ray(cluster, ctx.workdir / "logs")
    previous = ctx.manifest.shards(ctx.name, ctx.fingerprint)
    attempts = {i: (previous.get(i, {}).get("attempts") or 0) + 1 for i in todo}
    expected = {i: min(shard_size, len(rows) - i * shard_size) for i in todo}
    buffers: dict[int, list[pa.Table]] = defaultdict(list)
    counts: dict[int, int] = defaultdict(int)
    started, written, t0, first = datetime.now(), 0, time.perf_counter(), None
    with progress(ctx.name, total=sum(expected.values()), unit=unit) as advance:
        try:
            for batch in _dataset(rows, todo, shard_size, pool).iter_batches(batch_format="pyarrow", batch_size=None):
                if first is None:
                    first = (time.perf_counter() - t0, len(batch))
                for shard in pc.unique(batch.column(SHARD_COLUMN)).to_pylist():
                    part = batch.filter(pc.equal(batch.column(SHARD_COLUMN), shard))
                    buffers[shard].append(part)
                    counts[shard] += len(part)
                    advance(len(part))
                    if counts[shard] == expected[shard]:
                        written += _finish_shard(ctx, shard, buffers.pop(shard), started, attempts[shard],
                                                 pool.suffix)
                        todo.remove(shard)
        except Exception as err:  # the UDF raised, or a batch killed its replica more than max_retries times
            reason = f"{type(err).__name__}: {err}".splitlines()[0][:500]
            for i in todo:
                ctx.manifest.record_shard(ctx.name, ctx.fingerprint, i, "failed", attempts=attempts[i],
                                          error=reason, started_at=started)
            raise StageError(
                f"{ctx.name}: shard(s) {', '.join(map(str, todo))} failed ({reason}); "
                f"{n_shards - len(todo)} of {n_shards} shards are done and kept, run again to retry the rest"
            ) from err
    if todo:  # the stream ended without some rows: a UDF dropped them
        raise StageError(f"{ctx.name}: shard(s) {todo} came back incomplete")
    return MapStats(written, first[0], time.perf_counter() - t0, written - first[1])
