"""Sliding-window inference in any number of dimensions, for both tasks: a street image (2D, windows of the
training crop) and a CT volume (3D, DHC's patches and strides)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Window starts covering [0, length): ceil((length − window) / stride) + 1 of them, the last flush with the
    end (DHC's rule; the same starts as range(0, length − window, stride) plus the last)."""
    if length <= window:
        return [0]
    n = math.ceil((length - window) / stride) + 1
    return sorted({min(stride * k, length - window) for k in range(n)})


@torch.no_grad()
def sliding_window(probs: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, window: tuple[int, ...],
                   strides: tuple[int, ...], num_classes: int) -> torch.Tensor:
    """Class probabilities (1, C, *spatial) of ``x`` (1, channels, *spatial): ``probs`` of every window summed,
    divided by the number of windows that saw each position. A side smaller than its window is zero-padded at the
    end. The sums are kept on ``x``'s device, in float32 (or ``x``'s floating type)."""
    spatial = x.shape[2:]
    pad = [max(w - s, 0) for w, s in zip(window, spatial, strict=True)]
    if any(pad):
        x = F.pad(x, [p for side in reversed(pad) for p in (0, side)])
    full = x.shape[2:]
    dtype = x.dtype if x.is_floating_point() else torch.float32
    total = torch.zeros((1, num_classes, *full), dtype=dtype, device=x.device)
    count = torch.zeros((1, 1, *full), dtype=dtype, device=x.device)
    axes = [window_starts(n, w, s) for n, w, s in zip(full, window, strides, strict=True)]
    for starts in itertools.product(*axes):
        region = (slice(None), slice(None), *(slice(s, s + w) for s, w in zip(starts, window, strict=True)))
        total[region] += probs(x[region]).to(total)
        count[region] += 1
    return (total / count)[(slice(None), slice(None), *(slice(0, n) for n in spatial))]
