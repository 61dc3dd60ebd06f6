"""`semidavil predict` and `semidavil export` with tiny models: a checkpoint, a real-size photo, the demo
world's val images, an unreadable file; and the export round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from models.street.tiny import TINY_EMBED_DIM
from pipeline.cli import app
from pipeline.config import load_config
from stages.checkpoint import save_checkpoint
from stages.street import demo_world
from stages.street.train.loop import build_learner, checkpoint_meta
from tests.conftest import small_overrides


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A checkpoint as training writes it, teacher and student apart (the teacher one EMA step behind)."""
    tmp = tmp_path_factory.mktemp("trained")
    cfg = load_config(None, small_overrides(tmp / "w", "train.crop_size=128", "caption.max_new_tokens=6"))
    learner = build_learner(cfg, TINY_EMBED_DIM, torch.device("cpu"))
    with torch.no_grad():
        for p in learner.student.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = tmp / "checkpoints" / "last.safetensors"
    save_checkpoint(path, 5, learner.student, learner.teacher, learner.optimizer, checkpoint_meta(cfg, TINY_EMBED_DIM))
    return path


@pytest.fixture(scope="module")
def val_dir(tmp_path_factory) -> Path:
    _, target = demo_world.generate(tmp_path_factory.mktemp("demo"), 1, 1, 3, 64, 128, seed=3)
    return target / "leftImg8bit" / "val"


def invoke(*args: str):
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def test_predict_writes_a_prediction_and_an_overlay_per_image_at_its_size(trained, val_dir, tmp_path):
    photo = tmp_path / "photo.png"  # a real Cityscapes-size frame
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (1024, 2048, 3), dtype=np.uint8)).save(photo)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    out = tmp_path / "out"
    result = invoke("predict", str(trained.parent.parent), str(photo), str(val_dir), str(broken), "--out", str(out))
    inputs = [photo, *sorted(val_dir.rglob("*.png"))]
    assert len(inputs) == 4
    for image in inputs:
        size = Image.open(image).size
        for kind in ("pred", "overlay"):
            written = out / f"{image.stem}_{kind}.png"
            assert written.exists(), sorted(p.name for p in out.iterdir())
            assert Image.open(written).size == size
    assert len(list(out.glob("*.png"))) == 8
    assert "broken.png" in result.output and "does not decode" in result.output
    assert "4 images" in result.output


def test_predict_names_an_input_that_matches_nothing(trained, tmp_path):
    result = CliRunner().invoke(app, ["predict", str(trained), str(tmp_path / "nope*.png"), "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "nope*.png" in result.output


def test_export_then_predict_equals_predicting_from_the_checkpoint(trained, val_dir, tmp_path):
    exported = tmp_path / "model.safetensors"
    invoke("export", str(trained.parent.parent), "--out", str(exported))  # a run directory
    assert exported.stat().st_size < trained.stat().st_size  # the teacher alone: no student, no optimizer
    image = sorted(val_dir.rglob("*.png"))[0]
    for source, out in ((trained, "a"), (exported, "b")):
        invoke("predict", str(source), str(image), "--out", str(tmp_path / out))
    a = np.asarray(Image.open(tmp_path / "a" / f"{image.stem}_pred.png"))
    b = np.asarray(Image.open(tmp_path / "b" / f"{image.stem}_pred.png"))
    np.testing.assert_array_equal(a, b)
    # the student differs from the teacher, and `--model student` is what predicts then
    invoke("predict", str(trained), str(image), "--out", str(tmp_path / "s"), "--model", "student")
    invoke("export", str(trained), "--out", str(tmp_path / "student.safetensors"), "--model", "student")
    invoke("predict", str(tmp_path / "student.safetensors"), str(image), "--out", str(tmp_path / "t"))
    s = np.asarray(Image.open(tmp_path / "s" / f"{image.stem}_pred.png"))
    t = np.asarray(Image.open(tmp_path / "t" / f"{image.stem}_pred.png"))
    np.testing.assert_array_equal(s, t)
    assert (s != a).any()  # so the comparisons above can tell the networks apart


def test_an_exported_file_refuses_the_other_network(trained, tmp_path):
    exported = tmp_path / "model.safetensors"
    invoke("export", str(trained), "--out", str(exported))
    result = CliRunner().invoke(app, ["predict", str(exported), str(exported), "--out", str(tmp_path / "o"),
                                      "--model", "student"])
    assert result.exit_code == 1
    assert "teacher" in result.output and str(exported) in result.output
