"""A toy task: ``ingest`` draws numbers from the seed, ``evaluate`` scores their mean, the report lists the runs."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from pipeline.config import Config, Section
from stages import tasks


class ToyTrain(Section):
    seed: int = 0


class ToyConfig(Config):
    """The toy task's sections beside the shared ones: ``train.seed`` alone."""

    task: Literal["toy"] = "toy"
    train: ToyTrain = ToyTrain()


CONFIG = ToyConfig
STAGES = {"ingest": "tests.toys.toy_task.ingest", "evaluate": "tests.toys.toy_task.evaluate",
          "report": "stages.report"}
CLASSES = tasks.ClassSet(("nothing", "something"), np.array([(0, 0, 0), (255, 255, 255)], dtype=np.uint8), 255, {})


def classes(cfg: Any) -> tasks.ClassSet:
    return CLASSES


def ablation(cfg: Any) -> list[tuple[str, tuple[str, ...]]]:
    return [(f"seed {s}", (f"train.seed={s}",)) for s in (0, 1)]


def REPORT_KEYS(cfg: Any) -> dict[str, Any]:  # noqa: N802
    return {"task": cfg.task}


def write_report(ctx: Any, runs: list[dict[str, Any]]) -> Any:
    from pipeline.stage import StageResult

    lines = [f"seed {r['seed']}: {r['score']:.3f}" for r in runs]
    (ctx.out_dir / "report.md").write_text("# toy\n\n" + "\n".join(lines) + "\n")
    return StageResult(len(runs))


def results(metrics: dict[str, Any]) -> list[Any]:
    return [f"toy score: {metrics['score']:.3f}"]


tasks.register("toy", __name__)
