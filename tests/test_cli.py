"""The real `semidavil` CLI, end to end, on a very small demo world."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import small_overrides


def semidavil(*args: str, cwd=None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def sets(workdir, *extra):
    return [arg for o in small_overrides(workdir, "cluster.num_cpus=2", *extra) for arg in ("--set", o)]


def test_single_stage_needs_its_inputs(tmp_path):
    proc = semidavil("stage", "train", *sets(tmp_path / "w"))
    assert proc.returncode == 1
    assert "needs ingest, split, embed_text complete first" in proc.stderr
    assert semidavil("stage", "nope").returncode == 2


def test_run_status_and_rerun(tmp_path):
    """From the user's own directory, with a relative work directory, as `semidavil run` is used; training
    on two DDP workers (gloo)."""
    workdir = tmp_path / "w"
    first = semidavil("run", *sets("w", "train.workers=2"), cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "mIoU19:" in first.stdout and "road" in first.stdout
    assert "world_size=2" in first.stderr
    status = semidavil("status", *sets("w", "train.workers=2"), cwd=tmp_path)
    assert status.returncode == 0
    for stage in ("ingest", "split", "caption", "embed_text", "train", "evaluate", "report"):
        line = next(line for line in status.stdout.splitlines() if f" {stage} " in line)
        assert "complete" in line, status.stdout
    second = semidavil("run", *sets("w", "train.workers=2"), cwd=tmp_path)
    assert second.returncode == 0
    assert second.stderr.count("skipped") == 7, second.stderr
    assert "▶" not in second.stderr
    assert (workdir / "manifest.duckdb").exists()
    assert list((workdir / "evaluate").glob("*/predictions/*.png"))
    report = next((workdir / "report").glob("*/report.md")).read_text()
    assert "(paper Table 3)" in report and "CT+DyCE+DLG (random init)" in report  # tiny random weights: no VLP
    assert "report:" in first.stdout


def test_a_busy_workdir_names_the_process_and_exits_at_once(tmp_path):
    from tests.test_manifest import _hold_lock_in_subprocess

    holder = _hold_lock_in_subprocess(tmp_path / "w")
    try:
        proc = semidavil("run", *sets(tmp_path / "w"), timeout=60)
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 1
    assert f"in use by process {holder.pid}" in proc.stderr
    assert not (tmp_path / "w" / "manifest.duckdb").exists()  # nothing was started
