"""URPC (Luo et al., MICCAI 2021) as DHC runs it: DHC's deeply supervised 3D U-Net, (CE + Dice) at every scale
of the pyramid, and the rectified pyramid consistency on the unlabelled batch."""

from __future__ import annotations

from typing import Any

import torch

from models.volumes.parts import Batch3D, Method, StepContext, dice_loss, setting

DISPLAY = "URPC"
PAPER = {False: (25.7, 72.7), True: (48.9, 10.1)}
VERSION = 2  # 2: Dice smoothed 1e-8 as DHC's train_urpc.py (was 1)
KEYS = ("unet_filters",)
DICE_SMOOTH = 1e-8  # as DHC's UA-MT and URPC scripts set their SoftDiceLoss


def check(volumes: Any) -> None:
    if max(volumes.patch) < 32:
        raise ValueError(f"patch: URPC's U-Net normalises each patch's 1/16-size bottleneck per sample "
                         f"(InstanceNorm), which needs a side of 32 or more, got {tuple(volumes.patch)}")


def build(num_classes: int, volumes: Any) -> Method:
    from models.volumes.unet3d import UNet3DDS

    net = UNet3DDS(1, num_classes, setting(volumes, "unet_filters", 16), setting(volumes, "dropout"))
    return Method("urpc", {"net": net}, num_classes=num_classes)


def consistency(logits: list[torch.Tensor]) -> torch.Tensor:
    """URPC's rectified pyramid consistency on unlabelled logits, one (B, C, D, H, W) per scale, as DHC computes
    it: with p̄ the scales' mean softmax, per scale s the voxel variance v = KL(p̄ ‖ p_s) summed over classes, and
    mean((p̄ − p_s)² · e^(−v)) / mean(e^(−v)) + mean(v), averaged over the scales."""
    logp = [o.float().log_softmax(1) for o in logits]
    mean = sum(lp.exp() for lp in logp) / len(logp)
    total = 0
    for lp in logp:
        variance = (mean * (torch.log(mean + 1e-16) - lp)).sum(1, keepdim=True)
        w = torch.exp(-variance)
        total = total + ((mean - lp.exp()) ** 2 * w).mean() / (w.mean() + 1e-8) + variance.mean()
    return total / len(logp)


def step(m: Method, b: Batch3D, c: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(CE + Dice) of each of the 4 scales on the labelled batch, summed and divided by 8, plus the rectified
    pyramid consistency on the unlabelled batch."""
    n = b.labelled.shape[0]
    outs = m.networks["net"](torch.cat([b.labelled, b.unlabelled]), pyramid=True)
    ce = sum(c.sup_ce(o[:n], b.labels) for o in outs)
    dc = sum(dice_loss(o[:n], b.labels, smooth=DICE_SMOOTH) for o in outs)
    sup = (ce + dc) / (2 * len(outs))
    cons = consistency([o[n:] for o in outs])
    return sup + c.unsup_weight * cons, {"loss_sup": sup.detach(), "loss_unsup": cons.detach()}
