"""Progress bars and the console, on stderr so that stdout stays for results.

By default the console is quiet: Ray's own output (its Python loggers, its C++ core worker, its workers'
lines) goes to ``<workdir>/logs/ray-console.log`` and Ray's session logs, and the terminal shows one line per
stage start and end, our progress bars and results. ``semidavil --verbose`` shows everything.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)
QUIET = {"on": False}  # set by the CLI: Ray's own output kept off the terminal


def route_ray_output(log_path: Path) -> None:
    """Send file descriptor 2 (where Ray's loggers and its C++ core worker write) to ``log_path``; the
    console, tracebacks and warnings keep the terminal. Call once Ray's modules are imported, so that their
    log handlers hold the old stream."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    terminal = os.fdopen(os.dup(2), "w", buffering=1, encoding=getattr(sys.stderr, "encoding", None) or "utf-8")
    with open(log_path, "a") as log:
        os.dup2(log.fileno(), 2)
    sys.stderr = terminal  # the console (stderr=True) writes to whatever sys.stderr is when it prints: here the
    # terminal, and under a test's CliRunner its capture


class Rate(TextColumn):
    """Items per second."""

    def __init__(self, unit: str):
        super().__init__("")
        self.unit = unit

    def render(self, task):  # noqa: ANN001 (rich's Task)
        speed = task.finished_speed or task.speed
        return f"{speed:.1f} {self.unit}/s" if speed else f"- {self.unit}/s"


@contextmanager
def progress(description: str, total: int, unit: str = "items") -> Iterator[callable]:
    """Yield ``advance(n)``; shows done/total, rate and time left."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
               Rate(unit), TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)
