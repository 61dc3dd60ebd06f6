"""bench/gpu.py --tiny: the GPU benchmark's whole path (training step and its parts, DyCE/CE, captioning
through CaptionBatch and raw generate, text tower, evaluation) runs on CPU with the tiny models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

FIGURES = {"machine", "setup", "train_step_synthetic", "train_step_loader", "step_part", "dyce_over_ce",
           "caption_decode", "caption", "text_tower", "evaluate"}


def test_the_gpu_benchmark_runs_its_whole_path_tiny_on_cpu(tmp_path):
    script = Path(__file__).resolve().parent.parent / "bench" / "gpu.py"
    done = subprocess.run([sys.executable, str(script), "--tiny"], capture_output=True, text=True, timeout=600,
                          cwd=tmp_path, env={**os.environ, "HF_HUB_OFFLINE": "1"})  # from anywhere, offline
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert not [x for x in lines if x["figure"] == "error"], lines
    assert {x["figure"] for x in lines} == FIGURES
    parts = {x["part"] for x in lines if x["figure"] == "step_part"}
    assert parts == {"teacher_forward", "mixing", "student_forward_backward_and_losses", "adamw", "ema"}
    assert [x["batch"] for x in lines if x["figure"] == "caption"] == [2, 4]
    assert all(x["seconds_per_step"] > 0 for x in lines if x["figure"].startswith("train_step"))
