"""The EMA teacher both tasks use (Mean Teacher; SemiDAViL's Eq. 6; UA-MT's teacher): one copy, one update."""

from __future__ import annotations

import copy

import torch
from torch import nn


def make_teacher(student: nn.Module) -> nn.Module:
    """A frozen copy of the student, to be moved by ``ema_update`` only."""
    return copy.deepcopy(student).requires_grad_(False).eval()


def ema_alpha(step: int, alpha: float, warmup: bool = True) -> float:
    """Mean Teacher's warm-up: α_t = min(1 − 1/(t+1), α), so the teacher follows a random student early and
    reaches α after ~1/(1−α) steps; without warm-up, α throughout."""
    return min(1.0 - 1.0 / (step + 1), alpha) if warmup else alpha


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, alpha: float) -> None:
    """θ_T ← α·θ_T + (1 − α)·θ_S (Eq. 6); buffers are copied."""
    t_params, s_params = list(teacher.parameters()), list(student.parameters())
    torch._foreach_lerp_(t_params, s_params, 1.0 - alpha)
    for t_buf, s_buf in zip(teacher.buffers(), student.buffers(), strict=True):
        t_buf.copy_(s_buf)
