"""The real `semidavil` CLI, end to end, on a very small demo world."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import small_overrides


def semidavil(*args: str, cwd=None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def sets(workdir, *extra):
    return [arg for o in small_overrides(workdir, "cluster.num_cpus=2", *extra) for arg in ("--set", o)]


def test_single_stage_needs_its_inputs(tmp_path):
    proc = semidavil("stage", "train", *sets(tmp_path / "w"))
    assert proc.returncode == 1
    assert "needs ingest, split, embed_text complete first" in proc.stderr
    assert semidavil("stage", "nope").returncode == 2


RAY_LINE = re.compile(r"\(\w[\w()]* pid=\d+\)|\(raylet\)|core_worker\.cc|\[\d{4}-\d\d-\d\d [\d:,]+ [EWI] \d+|"
                      r"^\d{4}-\d\d-\d\d [\d:,]+\s+(INFO|WARNING|ERROR|DEBUG) |RayDeprecationWarning|"
                      r"Reporting training result")


def constant_miou(confusion: np.ndarray) -> float:
    """mIoU19 of predicting the most frequent ground-truth class everywhere."""
    c = int(confusion.sum(1).argmax())
    return float(confusion[c].sum() / confusion.sum()) / int((confusion.sum(1) > 0).sum())


def test_run_status_and_rerun(tmp_path):
    """From the user's own directory, with a relative work directory, as `semidavil run` is used; training
    on two DDP workers (gloo); the captioner, text tower and image tower load from files saved in the formats
    real weights come in, offline. The console is quiet: no line of Ray's own."""
    from tests.test_saved_weights import saved_weights

    workdir = tmp_path / "w"
    files = saved_weights(tmp_path / "weights")
    weights = [f"caption.model={files['caption']}", f"text.pretrained={files['clip']}",
               f"model.vision_pretrained={files['clip']}", "model.vision_init=clip"]
    first = semidavil("run", *sets("w", "train.workers=2", "train.iterations=30", *weights), cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "mIoU19:" in first.stdout and "road" in first.stdout
    ray_lines = [line for line in first.stderr.splitlines() if RAY_LINE.search(line)]
    assert not ray_lines, ray_lines[:5]
    assert (workdir / "logs" / "ray-console.log").exists()
    train_dir = next((workdir / "train").iterdir())
    assert json.loads((train_dir / "metrics.jsonl").read_text().splitlines()[-1])["workers"] == 2
    assert json.loads((train_dir / "setup.json").read_text())["vlp"]  # CLIP weights from the file
    evaluated = next((workdir / "evaluate").iterdir())
    metrics = json.loads((evaluated / "metrics.json").read_text())
    assert metrics["mIoU19"] > constant_miou(np.load(evaluated / "confusion.npy")), metrics  # it learns
    # `predict` captions and embeds on the fly, and sees an image exactly as evaluate saw it through the stores
    example = json.loads((evaluated / "run.json").read_text())["examples"][0]
    predicted = semidavil("predict", str(train_dir), example["image"], "--out", str(tmp_path / "preds"),
                          "--format", "labelids")
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    ours = np.asarray(Image.open(tmp_path / "preds" / f"{Path(example['image']).stem}_pred.png").convert("RGB"))
    np.testing.assert_array_equal(ours, np.asarray(Image.open(example["prediction"]).convert("RGB")))
    # labelId PNGs named after the image, as cityscapesscripts and the benchmark server take them, alike in both
    name = Path(example["image"]).name  # <city>_<seq>_<frame>_leftImg8bit.png
    saved = np.asarray(Image.open(evaluated / "predictions" / "labelIds" / name))
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "preds" / "labelIds" / name)), saved)
    assert set(np.unique(saved)) <= {7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33}
    status = semidavil("status", *sets("w", "train.workers=2", "train.iterations=30", *weights), cwd=tmp_path)
    assert status.returncode == 0
    assert f"captions (caption.model {files['caption']}): 28 images, 0 empty" in status.stdout.replace("\n", "")
    for stage in ("ingest", "split", "caption", "embed_text", "train", "evaluate", "report"):
        line = next(line for line in status.stdout.splitlines() if f" {stage} " in line)
        assert "complete" in line, status.stdout
    second = semidavil("run", *sets("w", "train.workers=2", "train.iterations=30", *weights), cwd=tmp_path)
    assert second.returncode == 0
    assert second.stderr.count("skipped") == 7, second.stderr
    assert "▶" not in second.stderr
    assert (workdir / "manifest.duckdb").exists()
    assert list((workdir / "evaluate").glob("*/predictions/*.png"))
    report = next((workdir / "report").glob("*/report.md")).read_text()
    assert "(paper Table 3)" in report and "| SemiDAViL |" in report  # CLIP weights from a file: VLP
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
