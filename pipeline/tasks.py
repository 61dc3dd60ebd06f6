"""The registry of tasks (DESIGN §7): the only list of them, one line per task. It sits below the config so that
validating a config can ask the task named by ``task`` for its sections (``CONFIG``); ``stages.tasks`` documents
what a task module defines and holds what tasks share (``ClassSet``)."""

from __future__ import annotations

from models.registry import Entry, Registry


def _no_notes(cfg: object) -> list[str]:
    return []


TASKS = Registry("task", "task", {
    "street": "stages.street",
    "synapse": "stages.synapse",
}, {"DEFAULT_SPLIT_FILE": None, "SWEEP_LABELLED": None, "PREDICTS": False, "notes": _no_notes, "selector": None})
register, names = TASKS.register, TASKS.names


def task_of(name: str) -> Entry:
    """The registered task ``name`` (ValueError naming the ``task`` key for an unknown one)."""
    return TASKS.get(name)
