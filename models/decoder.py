"""The decoder D_V: [F_M, F_V] (or F_V alone without DLG) -> per-pixel class logits at the input size."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_block(cin: int, cout: int) -> nn.Sequential:
    # GroupNorm, not BatchNorm: batches are small and the EMA teacher then has no running statistics
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.GroupNorm(min(32, cout), cout),
                         nn.ReLU(inplace=True))


class Decoder(nn.Module):
    def __init__(self, in_channels: int, channels: int, num_classes: int):
        super().__init__()
        self.fuse = conv_block(in_channels, channels)  # at the feature grid (h, w)
        self.refine = conv_block(channels, channels)  # at (2h, 2w)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: torch.Tensor, out_size: tuple[int, int]) -> torch.Tensor:
        """features (B, in_channels, h, w) -> logits (B, C, *out_size)."""
        x = self.fuse(features)
        x = self.refine(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))
        return F.interpolate(self.classifier(x), size=out_size, mode="bilinear", align_corners=False)
