from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from pipeline.lock import WorkdirBusy, WorkdirLock
from pipeline.manifest import Manifest
from pipeline.store import write_atomic, write_parquet


def test_stage_runs_and_shards(tmp_path):
    m = Manifest(tmp_path / "manifest.duckdb")
    run = m.start_run("run")
    sr = m.start_stage(run, "caption", "fp1", tmp_path / "out")
    assert m.latest_stage_run("caption", "fp1").status == "running"
    m.record_shard("caption", "fp1", 0, "complete", rows=8, path=tmp_path / "s0", node="n1")
    m.record_shard("caption", "fp1", 1, "failed", error="boom", attempts=2)
    m.end_stage(sr, "complete", rows=8, details={"x": 1})
    m.end_run(run, "complete")
    rec = m.latest_stage_run("caption", "fp1", status="complete")
    assert rec.rows == 8 and rec.details == {"x": 1} and rec.seconds >= 0
    assert m.latest_stage_run("caption", "other") is None
    assert set(m.shards("caption", "fp1")) == {0, 1}
    assert m.shards("caption", "fp1", status="complete")[0]["node"] == "n1"
    assert m.shards("caption", "fp1")[1]["error"] == "boom"
    m.record_rejected("ingest", "fpi", [("a.png", "bad"), ("b.png", "worse")])
    m.record_rejected("ingest", "fpi", [("a.png", "bad")])  # replaces, never duplicates
    assert m.rejected("ingest") == [("ingest", "a.png", "bad")]


def test_a_new_run_marks_dead_runs_interrupted(tmp_path):
    m = Manifest(tmp_path / "manifest.duckdb")
    run = m.start_run("run")
    m.start_stage(run, "train", "fp", tmp_path)
    Manifest(tmp_path / "manifest.duckdb").start_run("run again")
    assert m.latest_stage_run("train", "fp").status == "interrupted"


def _hold_lock_in_subprocess(workdir):
    code = textwrap.dedent(f"""
        import time
        from pipeline.lock import WorkdirLock
        with WorkdirLock({str(workdir)!r}):
            print("locked", flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_lock_names_the_live_holder_and_a_killed_holder_does_not_block(tmp_path):
    proc = _hold_lock_in_subprocess(tmp_path)
    try:
        with pytest.raises(WorkdirBusy, match=f"process {proc.pid}"):
            with WorkdirLock(tmp_path):
                pass
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert (tmp_path / ".lock").exists()  # the stale file is still there...
    with WorkdirLock(tmp_path):  # ...and does not block
        pass


def test_lock_is_exclusive_within_a_process_too(tmp_path):
    with WorkdirLock(tmp_path):
        with pytest.raises(WorkdirBusy):
            with WorkdirLock(tmp_path):
                pass


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"

    def fail(tmp):
        tmp.write_text("half")
        raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        write_atomic(target, fail)
    assert list(tmp_path.iterdir()) == []
    import pyarrow as pa

    write_parquet(pa.table({"a": [1]}), target.with_suffix(".parquet"))
    assert [p.name for p in tmp_path.iterdir()] == ["out.parquet"]
    time.sleep(0)
