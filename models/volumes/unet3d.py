"""DHC's 3D U-Net with deep supervision (xmed-lab/DHC ``code/models/unet_ds.py``, ``unet_3D_ds``), the network
URPC trains: the design, written anew.

Encoder: 5 blocks of two 3³ convolutions (InstanceNorm, ReLU) at n, 2n, 4n, 8n, 16n channels (DHC: 64 / 4 = 16),
max-pooled by 2 between them; decoder: trilinear upsampling by 2, the encoder's features *concatenated*, two
convolutions, Dropout3d of 0.5, 0.3, 0.2, 0.1 from the coarsest level to the finest while training (``dropout``).
Each decoder level has its own 1³ head to the classes, upsampled trilinearly to the input's size: the prediction
pyramid URPC compares. Input (B, 1, D, H, W) with each side a multiple of 16.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DROPOUT = (0.5, 0.3, 0.2, 0.1)  # after the decoder levels, coarsest first (DHC)


def double_conv(c_in: int, c_out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c in (c_in, c_out):
        layers += [nn.Conv3d(c, c_out, 3, padding=1), nn.InstanceNorm3d(c_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class UNet3DDS(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 14, n_filters: int = 16, dropout: bool = True):
        super().__init__()
        widths = [n_filters * 2 ** k for k in range(5)]  # n, 2n, 4n, 8n, 16n
        self.encoder = nn.ModuleList(double_conv(in_channels if k == 0 else widths[k - 1], widths[k]) for k in range(5))
        self.decoder = nn.ModuleList(double_conv(widths[k + 1] + widths[k], widths[k]) for k in reversed(range(4)))
        self.dropout = nn.ModuleList((nn.Dropout3d(p) if dropout else nn.Identity()) for p in DROPOUT)
        self.heads = nn.ModuleList(nn.Conv3d(widths[k], num_classes, 1) for k in reversed(range(4)))
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor, pyramid: bool = False) -> torch.Tensor | list[torch.Tensor]:
        """Logits at the input's size: the finest head's, or (``pyramid``) every head's, finest first."""
        size, skips = x.shape[2:], []
        for k, block in enumerate(self.encoder):
            x = block(x if k == 0 else F.max_pool3d(x, 2))
            skips.append(x)
        levels = []
        for block, drop, skip in zip(self.decoder, self.dropout, reversed(skips[:-1]), strict=True):
            x = drop(block(torch.cat([skip, F.interpolate(x, scale_factor=2, mode="trilinear")], 1)))
            levels.append(x)
        if not pyramid:
            return self.heads[-1](levels[-1])
        outs = [head(level) for head, level in zip(self.heads, levels, strict=True)]
        return [o if o.shape[2:] == size else F.interpolate(o, size=size, mode="trilinear") for o in reversed(outs)]
