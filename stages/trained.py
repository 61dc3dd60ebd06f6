"""What a training run leaves in its directory, and the model rebuilt from it.

Train writes these files; evaluate, report, ``predict`` and ``export`` read them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CHECKPOINT = "checkpoints/last.safetensors"
BEST = "checkpoints/best.safetensors"  # the networks at the best evaluation during training (model selection)
METRICS = "metrics.jsonl"
SETUP = "setup.json"  # what this training actually used: the report's CT/DyCE/VLP/DLG columns


def read_metrics(out_dir: Path) -> list[dict[str, float]]:
    """The metrics log, one entry per logged step (a step logged twice across a restart: the last)."""
    path = Path(out_dir) / METRICS
    if not path.exists():
        return []
    by_step = {}
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        by_step[entry["step"]] = entry
    return [by_step[s] for s in sorted(by_step)]


def read_setup(out_dir: Path) -> dict[str, Any]:
    return json.loads((Path(out_dir) / SETUP).read_text())
