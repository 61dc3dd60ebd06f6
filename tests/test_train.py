"""The per-worker training function: it learns, checkpoints without pickle, and resumes exactly."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import stages.street.train
import stages.street.train.loop as train
from pipeline.config import load_config
from pipeline.runner import fingerprints, run_pipeline, stage_dir
from stages.checkpoint import CheckpointError, load_checkpoint
from tests.conftest import run_here, small_overrides


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, ray_local):
    """The stages training reads, run once for this module (in this process: test_caption runs them under Ray)."""
    cfg = load_config(None, small_overrides(tmp_path_factory.mktemp("train") / "w", "train.iterations=6",
                                            "execution.train.checkpoint_every=2", "execution.train.log_every=1"))
    with pytest.MonkeyPatch.context() as patch:
        run_here(patch)
        run_pipeline(cfg, ["ingest", "split", "caption", "embed_text"])
    fps = fingerprints(cfg)
    return cfg, {name: stage_dir(cfg.paths.workdir, name, fps[name]) for name in stages.street.train.INPUTS}


@pytest.fixture
def loop_config(inputs, tmp_path):
    cfg, dirs = inputs
    return train.worker_config(cfg, dirs, tmp_path / "t", cfg.paths.workdir, use_ray=False)


def checkpoint_of(config) -> Path:
    return Path(config["out_dir"]) / train.CHECKPOINT


def logged_steps(config) -> list[int]:
    """Every line of the metrics log, in the order written (not de-duplicated)."""
    path = Path(config["out_dir"]) / train.METRICS
    return [json.loads(line)["step"] for line in path.read_text().splitlines()] if path.exists() else []


def test_checkpoint_round_trip_keeps_weights_optimizer_and_generators(loop_config):
    train.train_func(loop_config)
    ckpt = load_checkpoint(checkpoint_of(loop_config))
    assert ckpt.step == 6 and ckpt.meta["num_classes"] == 19
    assert {int(s["step"]) for s in ckpt.optimizer["state"].values()} == {6}  # AdamW's own step count
    assert ckpt.optimizer["param_groups"][0]["betas"] == [0.9, 0.999]
    assert set(ckpt.rng) >= {"python", "numpy", "torch"}
    assert not torch.equal(ckpt.student["decoder.classifier.weight"], ckpt.teacher["decoder.classifier.weight"])


def test_a_pickled_checkpoint_is_refused_and_its_payload_never_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    for name in ("last.safetensors", "last.pt"):
        path = tmp_path / name
        path.write_bytes(pickle.dumps({"step": 1, "meta": Payload()}))
        with pytest.raises(CheckpointError, match=f"{name}: not a safetensors checkpoint.*refused"):
            load_checkpoint(path)
    torch.save({"meta": Payload()}, tmp_path / "torch.pt")  # what torch.save of a dict writes: a zip of pickles
    with pytest.raises(CheckpointError, match="torch.pt"):
        load_checkpoint(tmp_path / "torch.pt")
    assert not marker.exists()


def test_resume_after_sigkill_continues_from_the_last_checkpoint(loop_config, tmp_path, monkeypatch):
    """The whole process group is killed during training; the restart starts at the checkpoint's step with
    its weights and optimizer, draws the batches it would have drawn, and ends where an unbroken run ends."""
    cfg = loop_config["cfg"]  # every pixel passes the threshold: the strong view's random draws count
    config = {**loop_config, "cfg": {**cfg, "train": {**cfg["train"], "iterations": 40},
                                     "loss": {**cfg["loss"], "confidence_threshold": 0.0}}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    code = ("import json, sys, stages.street.train.loop as t; t.train_func(json.load(open(sys.argv[1])))")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "config.json")], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not checkpoint_of(config).exists() or len(logged_steps(config)) < 5:
        assert proc.poll() is None, "training ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    ckpt = load_checkpoint(checkpoint_of(config))
    logged_before = len(logged_steps(config))
    assert 0 < ckpt.step < 40

    seen = {}
    real_step = train.train_step

    def first_step_sees(batch, model, teacher, *args, **kwargs):
        if not seen:
            seen["student"] = {k: v.clone() for k, v in model.state_dict().items()}
            seen["image"] = batch.labelled.clone()
        return real_step(batch, model, teacher, *args, **kwargs)

    monkeypatch.setattr(train, "train_step", first_step_sees)
    train.train_func(config)
    assert logged_steps(config)[logged_before] == ckpt.step + 1  # the first step after the restart
    for key, value in ckpt.student.items():
        assert torch.equal(seen["student"][key], value), key
    final = load_checkpoint(checkpoint_of(config))
    assert final.step == 40 and {int(s["step"]) for s in final.optimizer["state"].values()} == {40}

    unbroken = {**config, "out_dir": str(tmp_path / "unbroken")}
    monkeypatch.setattr(train, "train_step", real_step)
    train.train_func(unbroken)
    reference = load_checkpoint(checkpoint_of(unbroken))
    for key, value in reference.student.items():  # same batches, same augmentation, same result
        torch.testing.assert_close(final.student[key], value, rtol=1e-4, atol=1e-5, msg=key)


def test_poly_schedule():
    assert train.poly_lr(0, 100, 0.9) == 1.0
    assert train.poly_lr(100, 100, 0.9) == 0.0
    assert train.poly_lr(50, 100, 0.9) == pytest.approx(0.5**0.9)


def test_ray_train_replaces_a_killed_worker_and_goes_on_from_the_checkpoint(loop_config, tmp_path):
    """FailureConfig: the worker process dies (SIGKILL) at step 5; Ray Train starts a new one, which resumes
    from the step-4 checkpoint it reported, and the run ends at the last step without starting over."""
    marker = tmp_path / "killed"

    def dies_once(config):  # pickled by value into the Ray worker
        import os
        import signal

        import stages.street.train.loop as t

        real, calls = t.train_step, {"n": 0}

        def step(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 5 and not os.path.exists(config["marker"]):
                open(config["marker"], "w").close()
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*args, **kwargs)

        t.train_step = step
        return t.train_func(config)

    config = {**loop_config, "use_ray": True, "marker": str(marker)}
    cfg = train.Config.model_validate(config["cfg"])
    ex = cfg.execution.model_copy(update={"train": cfg.execution.train.model_copy(update={"max_failures": 1})})
    train.fit_on_ray(config, cfg.model_copy(update={"execution": ex}), "killed-worker", dies_once)
    assert marker.exists()  # it did die
    assert logged_steps(config) == [1, 2, 3, 4, 5, 6]  # steps 1-4, then 5-6 after the restart: not from 1 again
    assert load_checkpoint(checkpoint_of(config)).step == 6


def ddp_probe(config):  # pickled by value into each Ray Train worker
    """train_func, recording per rank: the batches drawn, who saved a checkpoint, where it started, and a
    digest of the student's weights at the end."""
    import hashlib
    import json
    from pathlib import Path

    import ray.train

    import stages.street.train.loop as t
    import stages.training as shared

    rank = ray.train.get_context().get_world_rank()
    seen, real_optimise, real_next, real_save = {}, t.optimise, t.next_batch, shared.save_state
    drawn = []

    def optimise(w, step):
        seen["worker"] = w
        return real_optimise(w, step)

    def next_batch(*args, **kwargs):
        batch = real_next(*args, **kwargs)
        drawn.append(hashlib.sha256(batch.labelled.cpu().numpy().tobytes()).hexdigest()[:16])
        return batch

    def save(*args, **kwargs):
        Path(config["out_dir"], f"saved-by-rank-{rank}").touch()
        return real_save(*args, **kwargs)

    t.optimise, t.next_batch, shared.save_state = optimise, next_batch, save
    logs = t.train_func(config)
    w = seen["worker"]
    digest = hashlib.sha256(b"".join(v.detach().cpu().numpy().tobytes()
                                     for v in w.learner.student.state_dict().values())).hexdigest()
    Path(config["out_dir"], f"probe-{rank}-{config['cfg']['train']['iterations']}.json").write_text(
        json.dumps({"weights": digest, "drawn": drawn, "start": w.start, "world": w.world}))
    return logs


def test_two_ddp_workers_share_gradients_draw_their_own_batches_and_resume(loop_config):
    """train.workers=2 under Ray Train (gloo): after every step both ranks hold the same student (gradients are
    all-reduced), each rank draws its own batches, rank 0 alone writes the checkpoint, and a resumed 2-worker
    run continues from it."""
    out = Path(loop_config["out_dir"])

    def fit(iterations: int) -> list[dict]:
        config = json.loads(json.dumps({**loop_config, "use_ray": True}))
        config["cfg"]["train"].update(iterations=iterations, workers=2)
        config["cfg"]["execution"]["train"].update(cpus_per_worker=1, checkpoint_every=2)
        cfg = train.Config.model_validate(config["cfg"])
        train.fit_on_ray(config, cfg, f"ddp-{iterations}", ddp_probe)
        return [json.loads((out / f"probe-{r}-{iterations}.json").read_text()) for r in (0, 1)]

    first = fit(2)
    assert [p["world"] for p in first] == [2, 2] and [p["start"] for p in first] == [0, 0]
    assert first[0]["weights"] == first[1]["weights"]  # all-reduced gradients: one model on both ranks
    assert all(a != b for a, b in zip(first[0]["drawn"], first[1]["drawn"], strict=True))  # their own batches
    assert sorted(p.name for p in out.glob("saved-by-rank-*")) == ["saved-by-rank-0"]
    assert load_checkpoint(checkpoint_of(loop_config)).step == 2
    resumed = fit(4)
    assert [p["start"] for p in resumed] == [2, 2] and len(resumed[0]["drawn"]) == 2  # steps 3-4 only
    assert resumed[0]["weights"] == resumed[1]["weights"] and resumed[0]["weights"] != first[0]["weights"]
    assert load_checkpoint(checkpoint_of(loop_config)).step == 4
    assert sorted(p.name for p in out.glob("saved-by-rank-*")) == ["saved-by-rank-0"]
