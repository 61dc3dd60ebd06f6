"""Outputs checked before reuse: a damaged or deleted output of a complete stage is found on the next run and
redone (only its shards, for caption and embed_text); a deleted manifest adopts what is intact on disk; a
garbage manifest is one line naming it; `semidavil verify` names every bad file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.outputs import COMPLETE_FILE, check_outputs
from pipeline.runner import MANIFEST_FILE, fingerprints, open_manifest, run_pipeline, stage_dir
from stages.trained import CHECKPOINT
from tests.conftest import run_here, small_overrides

STAGES = ["ingest", "split", "caption", "embed_text", "train"]


TRAINED = ("train.iterations=2", "caption.shard_size=8", "text.shard_size=8")  # 28 images: 4 shards


@pytest.fixture(scope="module")
def trained_once(tmp_path_factory):
    """The stages run once for the module (in this process); each test damages its own copy."""
    with pytest.MonkeyPatch.context() as mp:
        run_here(mp)
        workdir = tmp_path_factory.mktemp("trained") / "work"
        run_pipeline(load_config(None, small_overrides(workdir, *TRAINED)), STAGES)
    return workdir


@pytest.fixture
def trained(trained_once, tmp_path, monkeypatch):
    """A copy of the trained work directory in this test's tmp_path, and its config; its stages rerun in this
    process (the shards' resumption is ``map_shards``' own, with or without Ray Data)."""
    import shutil

    run_here(monkeypatch)
    shutil.copytree(trained_once, tmp_path / "work")
    return load_config(None, small_overrides(tmp_path / "work", *TRAINED))


def out(cfg, stage: str) -> Path:
    return stage_dir(cfg.paths.workdir, stage, fingerprints(cfg)[stage])


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def ran(outcomes, stage: str) -> bool:
    return not next(o for o in outcomes if o.stage == stage).skipped


@pytest.mark.parametrize("stage", ["caption", "embed_text"])
def test_a_truncated_shard_of_a_complete_stage_is_redone_alone(trained, stage, capsys):
    suffix = {"caption": ".parquet", "embed_text": ".arrow"}[stage]  # the text store is Arrow IPC, memory-mapped
    shards = sorted(out(trained, stage).glob(f"shard-*{suffix}"))
    assert len(shards) == 4
    damaged = f"shard-00001{suffix}"
    kept = {p.name: p.stat().st_mtime_ns for p in shards if p.name != damaged}
    truncate(shards[1])
    assert [p.path.name for p in check_outputs(out(trained, stage))] == [damaged]
    outcomes = run_pipeline(trained, STAGES)
    said = capsys.readouterr().err
    assert f"{stage}: damaged output of a complete run" in said and "redoing 1 shard(s)" in said
    assert ran(outcomes, stage) and not check_outputs(out(trained, stage))
    assert {p.name: p.stat().st_mtime_ns for p in out(trained, stage).glob(f"shard-*{suffix}")
            if p.name != damaged} == kept  # the intact shards were not rewritten
    later = {"caption": ["embed_text", "train"], "embed_text": ["train"]}[stage]
    assert not any(ran(outcomes, s) for s in later)  # the same content: what follows is reused


def test_a_truncated_checkpoint_of_a_complete_training_runs_it_again(trained, capsys):
    truncate(out(trained, "train") / CHECKPOINT)
    outcomes = run_pipeline(trained, STAGES)
    assert "train: damaged output of a complete run" in capsys.readouterr().err and ran(outcomes, "train")
    assert not check_outputs(out(trained, "train"))
    assert not any(ran(outcomes, s) for s in ("ingest", "caption", "embed_text"))


def test_a_deleted_manifest_adopts_the_intact_outputs_and_recaptions_nothing(trained, capsys):
    before = fingerprints(trained)
    (Path(trained.paths.workdir) / MANIFEST_FILE).unlink()
    outcomes = run_pipeline(trained, STAGES)
    assert not any(o for o in outcomes if not o.skipped), [o.stage for o in outcomes if not o.skipped]
    assert capsys.readouterr().err.count("adopted") == len(STAGES)
    assert fingerprints(trained) == before
    manifest = open_manifest(trained)
    assert len(manifest.shards("caption", before["caption"], status="complete")) == 4  # shards known again
    truncate(out(trained, "caption") / "shard-00002.parquet")  # and a damaged one is still redone alone
    run_pipeline(trained, ["ingest", "caption"])
    assert "redoing 1 shard(s)" in capsys.readouterr().err


def semidavil(*args, cwd):
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def test_verify_names_a_bad_file_and_a_garbage_manifest_is_one_line(trained):
    workdir = Path(trained.paths.workdir)
    repo = Path(__file__).resolve().parent.parent
    good = semidavil("verify", "--set", f"paths.workdir={workdir}", cwd=repo)
    assert good.returncode == 0 and "5 complete stage output(s) intact, 0 damaged" in good.stdout, good.stdout
    truncate(out(trained, "split") / "labelled.txt")
    (out(trained, "ingest") / COMPLETE_FILE).write_text("{ half a rec")
    found = semidavil("verify", "--set", f"paths.workdir={workdir}", cwd=repo)
    assert found.returncode == 1
    assert f"{out(trained, 'split') / 'labelled.txt'}: " in found.stdout.replace("\n", "")
    assert f"{out(trained, 'ingest') / COMPLETE_FILE}: missing or unreadable" in found.stdout.replace("\n", "")
    (workdir / MANIFEST_FILE).write_bytes(b"garbage" * 100)
    status = semidavil("status", "--set", f"paths.workdir={workdir}", cwd=repo)
    assert status.returncode == 1
    lines = status.stderr.strip().splitlines()
    assert len(lines) == 1 and "manifest.duckdb: not a DuckDB manifest" in lines[0] and "Traceback" not in status.stderr
