"""The supervised-only V-Net: (CE or DyCE) + Dice on the labelled cases alone (at 20 %: 4 of the 20 training
cases). The paper's published V-Net row is the fully supervised one (``fully``), not this."""

from __future__ import annotations

from typing import Any

import torch

from models.volumes.parts import Batch3D, Method, StepContext, dice_loss, vnet

DISPLAY = "Supervised V-Net"
SEMI = False
KEYS: tuple[str, ...] = ()


def build(num_classes: int, volumes: Any) -> Method:
    return Method("supervised", {"net": vnet(num_classes, volumes)}, num_classes=num_classes)


def step(m: Method, b: Batch3D, c: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    logits = m.networks["net"](b.labelled)
    ce, dc = c.sup_ce(logits, b.labels), dice_loss(logits, b.labels)
    return ce + dc, {"loss_ce": ce.detach(), "loss_dice": dc.detach()}
