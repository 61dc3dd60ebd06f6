"""The per-worker training function without Ray: it learns, checkpoints, and continues after a crash."""

from __future__ import annotations

import pytest
import torch

import stages.train as train
from pipeline.runner import fingerprints, run_pipeline, stage_dir


@pytest.fixture
def loop_config(small_config, ray_local, tmp_path):
    cfg = small_config("train.iterations=4", "train.checkpoint_every=2", "train.log_every=1")
    run_pipeline(cfg, ["ingest", "split", "caption", "embed_text"])
    fps, workdir = fingerprints(cfg), cfg.paths.workdir
    inputs = {name: stage_dir(workdir, name, fps[name]) for name in train.INPUTS}
    return train.worker_config(cfg, inputs, tmp_path / "t", workdir, use_ray=False)


def test_train_func_runs_without_ray_and_resumes_from_its_checkpoint(loop_config, monkeypatch):
    tmp = loop_config["out_dir"]
    real_step, calls = train.train_step, {"n": 0}

    def crashing_step(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # the process dies during step 3, after the checkpoint of step 2
            raise RuntimeError("power cut")
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train, "train_step", crashing_step)
    with pytest.raises(RuntimeError, match="power cut"):
        train.train_func(loop_config)
    ckpt = train.load_checkpoint(f"{tmp}/{train.CHECKPOINT}")
    assert ckpt["step"] == 2
    monkeypatch.setattr(train, "train_step", real_step)

    logs = train.train_func(loop_config)  # continues from step 2
    assert logs["step"] == 4
    final = train.load_checkpoint(f"{tmp}/{train.CHECKPOINT}")
    assert final["step"] == 4
    assert not torch.equal(final["teacher"]["decoder.classifier.weight"], ckpt["teacher"]["decoder.classifier.weight"])
    assert [m["step"] for m in train.read_metrics(tmp)] == [1, 2, 3, 4]
    for m in train.read_metrics(tmp):
        assert set(m) >= {"loss", "loss_sup", "loss_ct", "ct_passed", "lr"}


def test_poly_schedule():
    assert train.poly_lr(0, 100, 0.9) == 1.0
    assert train.poly_lr(100, 100, 0.9) == 0.0
    assert train.poly_lr(50, 100, 0.9) == pytest.approx(0.5**0.9)
