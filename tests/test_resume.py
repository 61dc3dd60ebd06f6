"""Resume: a run stopped after the caption stage skips ingest and caption when started again."""

from __future__ import annotations

import os

import pytest

import stages.street.embed_text
from pipeline.runner import run_pipeline, status_rows
from tests.conftest import run_here


def statuses(cfg):
    return {r["stage"]: r["status"] for r in status_rows(cfg)}


def test_stopped_run_resumes_from_the_manifest(small_config, ray_local, monkeypatch):
    cfg = small_config()

    def stopped(ctx):
        raise KeyboardInterrupt  # the user stops the run as embed_text begins

    monkeypatch.setattr(stages.street.embed_text, "run", stopped)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(cfg)
    monkeypatch.undo()
    assert statuses(cfg) == {"ingest": "complete", "split": "complete", "caption": "complete",
                             "embed_text": "interrupted",
                             "train": "pending", "evaluate": "pending", "report": "pending"}

    outcomes = run_pipeline(cfg)
    assert [(o.stage, o.skipped) for o in outcomes] == [
        ("ingest", True), ("split", True), ("caption", True), ("embed_text", False), ("train", False), ("evaluate", False),
        ("report", False)]
    assert set(statuses(cfg).values()) == {"complete"}
    assert outcomes[-2].record.details["images"] == 4
    assert outcomes[-2].record.details["ran_on"]["pid"] != os.getpid()  # the model was built in a Ray actor

    assert all(o.skipped for o in run_pipeline(cfg))  # nothing is redone


def test_changed_key_reruns_only_what_reads_it(small_config, monkeypatch):
    run_here(monkeypatch)  # which stages rerun is the runner's choice, with or without Ray
    cfg = small_config()
    run_pipeline(cfg, ["ingest"])
    run_pipeline(cfg, ["caption"])
    changed = small_config("caption.max_new_tokens=2")
    outcomes = run_pipeline(changed, ["ingest", "caption"])
    assert [o.skipped for o in outcomes] == [True, False]
