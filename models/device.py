"""Where a model runs: one rule for every stage and tool."""

from __future__ import annotations

import torch


def pick_device(num_gpus: float = 1.0) -> torch.device:
    """CUDA when GPUs are asked for (``num_gpus > 0``) and one is there; else the CPU."""
    return torch.device("cuda" if num_gpus > 0 and torch.cuda.is_available() else "cpu")
