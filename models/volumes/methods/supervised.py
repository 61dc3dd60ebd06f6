"""The supervised-only V-Net: (CE or DyCE) + Dice on the labelled cases alone (the paper's Table 5 first row)."""

from __future__ import annotations

from typing import Any

import torch

from models.volumes.parts import Batch3D, Method, StepContext, dice_loss, vnet

DISPLAY = "Supervised V-Net"
PAPER = {False: (62.1, 10.3)}  # the paper's V-Net line (DHC's "V-Net (fully)")
SEMI = False
KEYS: tuple[str, ...] = ()


def build(num_classes: int, volumes: Any) -> Method:
    return Method("supervised", {"net": vnet(num_classes, volumes)}, num_classes=num_classes)


def step(m: Method, b: Batch3D, c: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    logits = m.networks["net"](b.labelled)
    ce, dc = c.sup_ce(logits, b.labels), dice_loss(logits, b.labels)
    return ce + dc, {"loss_ce": ce.detach(), "loss_dice": dc.detach()}
