"""The decoder D_V: [F_M, F_V] (or F_V alone without DLG) -> per-pixel class logits at the input size."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_block(cin: int, cout: int) -> nn.Sequential:
    # GroupNorm, not BatchNorm: batches are small and the EMA teacher then has no running statistics
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.GroupNorm(min(32, cout), cout),
                         nn.ReLU(inplace=True))


class MultiLevelDecoder(nn.Module):
    """[F_M, F_V] at the feature grid, fused top-down with the patch tokens of earlier ViT blocks up to 4×
    the grid (1/4 of the input for ViT-B/16), as SETR-MLA and DPT do: thin classes (pole, sign, light) need
    more than the last layer at 1/16.

    ``levels``: tokens of the earlier blocks, shallowest first, each (B, width, h, w). The deepest joins at
    the grid, the next at 2×, the shallowest at 4×.
    """

    def __init__(self, in_channels: int, level_channels: int, n_levels: int, channels: int, num_classes: int):
        super().__init__()
        self.top = conv_block(in_channels, channels)
        self.lateral = nn.ModuleList(nn.Sequential(nn.Conv2d(level_channels, channels, 1, bias=False),
                                                   nn.GroupNorm(min(32, channels), channels))
                                     for _ in range(n_levels))
        self.fuse = nn.ModuleList(conv_block(channels, channels) for _ in range(n_levels))
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: torch.Tensor, out_size: tuple[int, int], levels: list[torch.Tensor]) -> torch.Tensor:
        x = self.top(features)  # (B, D, h, w)
        for k, (lateral, fuse, tokens) in enumerate(zip(self.lateral, self.fuse, reversed(levels), strict=True)):
            f = lateral(tokens)  # (B, D, h, w)
            if k:  # deeper levels at the grid, shallower ones at 2x, 4x
                f = F.interpolate(f, scale_factor=2**k, mode="bilinear", align_corners=False)
            x = fuse(F.interpolate(x, size=f.shape[-2:], mode="bilinear", align_corners=False) + f)
        return F.interpolate(self.classifier(x), size=out_size, mode="bilinear", align_corners=False)


class Decoder(nn.Module):
    def __init__(self, in_channels: int, channels: int, num_classes: int):
        super().__init__()
        self.fuse = conv_block(in_channels, channels)  # at the feature grid (h, w)
        self.refine = conv_block(channels, channels)  # at (2h, 2w)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: torch.Tensor, out_size: tuple[int, int], levels: list | None = None) -> torch.Tensor:
        """features (B, in_channels, h, w) -> logits (B, C, *out_size); ``levels`` unused (one level)."""
        x = self.fuse(features)
        x = self.refine(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))
        return F.interpolate(self.classifier(x), size=out_size, mode="bilinear", align_corners=False)
