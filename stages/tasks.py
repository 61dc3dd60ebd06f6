"""What a task is (DESIGN §7); the registry itself, the only list of tasks, is ``pipeline.tasks``.

Two tasks today: ``street`` (SSDA street scenes, 2D RGB, the paper's Tables 1-4; ``stages/street/``) and
``synapse`` (semi-supervised 3D abdominal CT, background + 13 organs, the paper's Table 5, with no language
stages; ``stages/synapse/``). The runner, ``plan``, ``status``, the CLI, ``sweep``/``ablate``, ``split`` and the
report read a task through this registry and name none.

A task is a package whose ``__init__`` (light: no torch) defines:

- ``CONFIG``: its config class, a subclass of ``pipeline.config.Config`` that adds the task's sections (a config
  names its task by ``task``, and holds that task's sections and the shared ones: ``paths``, ``cluster``,
  ``execution``, ``plugins``); ``CONFIG.resolved()`` turns its ``auto`` keys into values before any fingerprint;
- ``STAGES``: {stage name: module}, inputs first (``stages.split`` and ``stages.report`` serve every task);
- ``classes(cfg) -> ClassSet``: its class set (names, palette, ignore index, reported subsets);
- ``ablation(cfg) -> [(name, overrides)]``: the cells of its ablation (``semidavil ablate``);
- ``write_report(ctx, runs) -> StageResult``: its evaluated runs as its tables; ``REPORT_KEYS(cfg)``: what the report's
  fingerprint reads of the config;
- ``results(metrics) -> [renderables]``: what ``run`` prints of an evaluation;
- optional: ``DEFAULT_SPLIT_FILE`` (the labelled list without ``data.split_file``), ``SWEEP_LABELLED`` (an error
  message when labelled counts make no sense for it), ``PREDICTS`` and ``predictor()`` (``predict``/``export`` serve
  its checkpoints with that module),
  ``notes(cfg) -> [str]`` (warnings before a grid).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.tasks import TASKS, names, register, task_of  # noqa: F401  (the registry, re-exported)


@dataclass(frozen=True)
class ClassSet:
    """Names (index = class id), a colour per class, the ignored label, and the evaluation subsets."""

    names: tuple[str, ...]
    palette: np.ndarray  # (n, 3) uint8
    ignore_index: int
    subsets: dict[str | int, tuple[int, ...]]  # reported subsets of class ids (street: 19/16/13)
    short: tuple[str, ...] = ()  # column headings (Table 5's Sp, RK, ...); the names when empty

    def __len__(self) -> int:
        return len(self.names)

    def colourise(self, labels: np.ndarray) -> np.ndarray:
        return colourise(labels, self.palette)


def colourise(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Class ids -> (..., 3) uint8 colours of ``palette``; ignored or unknown ids black."""
    n = len(palette)
    return np.where((labels < n)[..., None], palette[np.minimum(labels, n - 1)], 0).astype(np.uint8)


LEGACY = "street"  # the task of records written before records named theirs (run.json, checkpoints)


def all_stage_names() -> tuple[str, ...]:
    """Every stage name of every registered task, in DAG order where they share one."""
    return tuple(dict.fromkeys(s for t in names() for s in task_of(t).STAGES))
