"""Model selection as DHC: the mean DSC of the eval cases every ``volumes.eval_every`` steps, the best networks
kept and tested by default, training stopped after ``volumes.patience`` evaluations without a better one."""

from __future__ import annotations

import json

from pipeline.config import load_config
from pipeline.runner import run_pipeline
from stages.checkpoint import checkpoint_step, load_checkpoint
from stages.synapse.evaluate.evaluator import chosen_checkpoint
from stages.synapse.train import loop
from stages.trained import read_metrics
from tests.test_volumes import TINY


def train(tmp_path, monkeypatch, scores: list[float], *extra: str):
    """A tiny synapse training in this process whose evaluations score ``scores`` in turn."""
    cfg = load_config("configs/synapse_demo.yaml", [f"paths.workdir={tmp_path}", *TINY, "train.iterations=6",
                                                   "execution.train.checkpoint_every=6", "volumes.eval_every=2", *extra])
    run_pipeline(cfg, ["ingest", "split"])
    inputs = {"ingest": next((tmp_path / "ingest").glob("*")), "split": next((tmp_path / "split").glob("*"))}
    seen = iter(scores)
    monkeypatch.setattr(loop, "mean_dsc", lambda *args: next(seen))
    out = tmp_path / "t"
    loop.train_func(loop.worker_config(cfg, inputs, out, use_ray=False))
    return out


def test_the_best_evaluation_is_kept_and_tested_though_the_last_is_worse(tmp_path, monkeypatch):
    out = train(tmp_path, monkeypatch, [0.4, 0.7, 0.5])  # evaluations at steps 2, 4, 6: the best at step 4
    best, which = chosen_checkpoint(out, "best")
    assert which == "best" and checkpoint_step(best) == 4
    last, which = chosen_checkpoint(out, "last")
    assert which == "last" and checkpoint_step(last) == 6
    assert load_checkpoint(best).meta["eval_dsc"] == 0.7
    assert sorted(load_checkpoint(best).networks) == sorted(load_checkpoint(last).networks)
    assert json.loads((out / loop.SELECTION).read_text()) == {"best_dsc": 0.7, "best_step": 4, "since_best": 1,
                                                              "last_dsc": 0.5}
    assert [m.get("eval_dsc") for m in read_metrics(out) if m["step"] in (2, 4, 6)] == [0.4, 0.7, 0.5]


def test_training_stops_when_the_patience_runs_out(tmp_path, monkeypatch):
    out = train(tmp_path, monkeypatch, [0.6, 0.5, 0.4], "volumes.patience=1")  # no better at step 4: stop there
    metrics = read_metrics(out)
    assert metrics[-1]["step"] == 4 and metrics[-1]["stopped_early"] is True
    assert checkpoint_step(out / "checkpoints" / "last.safetensors") == 4
    assert checkpoint_step(chosen_checkpoint(out, "best")[0]) == 2


def test_without_selection_the_last_checkpoint_is_tested(tmp_path, monkeypatch):
    out = train(tmp_path, monkeypatch, [], "volumes.eval_every=0")
    path, which = chosen_checkpoint(out, "best")
    assert which == "last" and checkpoint_step(path) == 6 and not (out / loop.SELECTION).exists()
