"""Progress bars and the console, on stderr so that stdout stays for results."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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
