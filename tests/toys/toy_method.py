"""A toy 3D method: one V-Net, CE (or DyCE) plus Dice on the labelled patches and nothing else."""

from __future__ import annotations

from typing import Any

import torch

from models.volumes import methods
from models.volumes.parts import Batch3D, Method, StepContext, dice_loss, vnet

DISPLAY = "Toy V-Net"
SEMI = False


def build(num_classes: int, volumes: Any) -> Method:
    return Method("toy", {"net": vnet(num_classes, volumes)}, num_classes=num_classes)


def step(m: Method, b: Batch3D, c: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    logits = m.networks["net"](b.labelled)
    loss = c.sup_ce(logits, b.labels) + dice_loss(logits, b.labels)
    return loss, {"loss_sup": loss.detach()}


methods.register("toy", __name__)
