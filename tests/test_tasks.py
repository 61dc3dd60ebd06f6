"""A task is data: the street stages take their class set from the task (``cfg.task``), not from a constant."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import torch

from models.street.tiny import TINY_EMBED_DIM
from stages import tasks
from stages.street.evaluate.evaluator import write_metrics
from stages.street.train.loop import build_learner, checkpoint_meta


def twenty_classes(monkeypatch) -> tasks.ClassSet:
    """The street task with one class more than Cityscapes' 19, and a subset of its own."""
    import stages.street

    base = stages.street.CITYSCAPES
    extra = tasks.ClassSet((*base.names, "animal"), np.vstack([base.palette, [[1, 2, 3]]]).astype(np.uint8),
                           base.ignore_index, {**base.subsets, 2: (13, 19)})
    monkeypatch.setattr(stages.street, "classes", lambda cfg: extra)
    return extra


def test_training_builds_the_task_s_classes(monkeypatch, small_config):
    twenty_classes(monkeypatch)
    cfg = small_config()
    learner = build_learner(cfg, TINY_EMBED_DIM, torch.device("cpu"))
    images = torch.rand(1, 3, 64, 64)
    text, mask = torch.zeros(1, cfg.model.max_tokens, TINY_EMBED_DIM), torch.zeros(1, cfg.model.max_tokens).bool()
    with torch.no_grad():
        assert learner.student.eval()(images, text, mask).logits.shape[1] == 20
    assert checkpoint_meta(cfg, TINY_EMBED_DIM)["num_classes"] == 20


def test_metrics_name_the_task_s_classes_and_subsets(monkeypatch, small_config, tmp_path):
    twenty_classes(monkeypatch)
    conf = np.diag(np.arange(1, 21))  # every class right
    conf[19, 13] = conf[19, 19]  # half of the animals called car: IoU 0.5 for animal, car 14/28
    metrics = write_metrics(SimpleNamespace(cfg=small_config(), out_dir=tmp_path), conf, 3)
    assert metrics["mIoU2"] == np.mean([14 / 34, 20 / 40]), metrics
    assert set(metrics) == {"mIoU19", "mIoU16", "mIoU13", "mIoU2", "images"}
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert list(written["per_class"])[-1] == "animal" and written["per_class"]["animal"] == 0.5
