"""DHC's V-Net (xmed-lab/DHC ``code/models/vnet.py``) for 3D CT: the design, written anew.

Encoder: 5 stages of 1, 2, 3, 3, 3 convolutions (3³, BatchNorm, ReLU) at n, 2n, 4n, 8n, 16n channels, each but
the last followed by a strided 2³ convolution (BatchNorm, ReLU) that halves the size; decoder: transposed 2³
convolutions back up, the encoder's features *added* (not concatenated), 3, 3, 2, 1 convolutions, and a 1³
convolution to the classes. Dropout3d(0.5) after the bottleneck and after the last block while training
(``dropout``). Input (B, 1, D, H, W) with each side a multiple of 16; output (B, classes, D, H, W) logits.
"""

from __future__ import annotations

import torch
from torch import nn

STAGES = (1, 2, 3, 3, 3)  # convolutions per encoder stage; the decoder mirrors 3, 3, 2, 1


def conv_stack(n_convs: int, c_in: int, c_out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for k in range(n_convs):
        layers += [nn.Conv3d(c_in if k == 0 else c_out, c_out, 3, padding=1), nn.BatchNorm3d(c_out),
                   nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def resample(c_in: int, c_out: int, up: bool) -> nn.Sequential:
    conv = (nn.ConvTranspose3d if up else nn.Conv3d)(c_in, c_out, 2, stride=2)
    return nn.Sequential(conv, nn.BatchNorm3d(c_out), nn.ReLU(inplace=True))


class VNet(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 14, n_filters: int = 32, dropout: bool = True):
        super().__init__()
        widths = [n_filters * 2 ** k for k in range(5)]  # n, 2n, 4n, 8n, 16n
        self.encoder = nn.ModuleList(
            conv_stack(n, in_channels if k == 0 else widths[k], widths[k]) for k, n in enumerate(STAGES))
        self.down = nn.ModuleList(resample(widths[k], widths[k + 1], up=False) for k in range(4))
        self.up = nn.ModuleList(resample(widths[k + 1], widths[k], up=True) for k in reversed(range(4)))
        self.decoder = nn.ModuleList(conv_stack(n, widths[k], widths[k]) for n, k in zip((3, 3, 2, 1), (3, 2, 1, 0)))
        self.head = nn.Conv3d(n_filters, num_classes, 1)
        self.dropout = nn.Dropout3d(0.5) if dropout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for k, block in enumerate(self.encoder):
            x = block(x)
            if k < 4:
                skips.append(x)
                x = self.down[k](x)
        x = self.dropout(x)
        for up, block, skip in zip(self.up, self.decoder, reversed(skips)):
            x = block(up(x) + skip)
        return self.head(self.dropout(x))


def init_weights(net: nn.Module, init: str = "kaiming") -> nn.Module:
    """DHC's initialisation: Kaiming-normal (or, for DePL's second network, Xavier-normal, so the two networks
    start apart) convolutions, BatchNorm weight 1 and bias 0."""
    conv_init = {"kaiming": nn.init.kaiming_normal_, "xavier": nn.init.xavier_normal_}[init]
    for m in net.modules():
        if isinstance(m, nn.Conv3d):
            conv_init(m.weight)
        elif isinstance(m, nn.BatchNorm3d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return net
