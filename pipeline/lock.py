"""One live process per work directory.

The lock is an ``fcntl.flock`` on ``<workdir>/.lock``: the kernel drops it when the holder dies, so a lock
left by a killed process never blocks the next run. The file holds the holder's pid and command so that a
second run can say who is using the directory.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
from pathlib import Path
from types import TracebackType


class WorkdirBusy(RuntimeError):
    """Another live process holds the work directory."""


class WorkdirLock:
    def __init__(self, workdir: Path):
        self.path = Path(workdir) / ".lock"
        self._fd: int | None = None

    def __enter__(self) -> WorkdirLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise WorkdirBusy(
                f"{self.path.parent} is in use by process {holder.get('pid', '?')} on {holder.get('host', '?')} "
                f"({holder.get('command', 'unknown command')}); wait for it or stop it"
            ) from None
        os.ftruncate(fd, 0)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv)}
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None):
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read_holder(fd: int) -> dict[str, object]:
    try:
        return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return {}
