"""UA-MT (Yu et al., MICCAI 2019) as DHC runs it: a V-Net student, its EMA teacher, and the squared error to the
teacher's prediction where the teacher is certain (the entropy of its mean over noisy passes below a threshold)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from models.ema import ema_alpha, ema_update
from models.volumes.parts import Batch3D, Method, StepContext, dice_loss, setting, sigmoid_rampup, vnet

DISPLAY = "UA-MT"
PAPER = {False: (20.3, 71.7), True: (48.1, 10.9)}
VERSION = 2  # 2: Dice smoothed 1e-8 as DHC's train_uamt.py (was 1)
KEYS = ("ema_alpha", "uamt_passes")
DICE_SMOOTH = 1e-8  # DHC's train_uamt.py: SoftDiceLoss(smooth=1e-8)


def build(num_classes: int, volumes: Any) -> Method:
    student, teacher = vnet(num_classes, volumes), vnet(num_classes, volumes)
    teacher.load_state_dict(student.state_dict())
    teacher.requires_grad_(False)
    return Method("uamt", {"student": student}, {"teacher": teacher}, num_classes)


def uncertainty(teacher: nn.Module, images: torch.Tensor, passes: int) -> torch.Tensor:
    """(B, 1, D, H, W) entropy of the teacher's mean softmax over ``passes`` noisy views (UA-MT; DHC runs them
    two views per forward)."""
    probs = 0
    with torch.no_grad():
        for _ in range(passes // 2):
            views = images.repeat(2, 1, 1, 1, 1)
            views = views + torch.clamp(torch.randn_like(views) * 0.1, -0.2, 0.2)
            p = teacher(views).float().softmax(1)
            probs = probs + p[: images.shape[0]] + p[images.shape[0]:]
    mean = probs / (2 * (passes // 2))
    return -(mean * torch.log(mean + 1e-6)).sum(1, keepdim=True)


def threshold(step: int, total: int) -> float:
    """(0.75 + 0.25 · ramp) · ln 2: DHC's UA-MT threshold on the entropy (ln 2 as in DHC's code, though Synapse
    has 14 classes)."""
    return (0.75 + 0.25 * sigmoid_rampup(step, total)) * math.log(2)


def consistency(student_u: torch.Tensor, teacher_u: torch.Tensor, uncert: torch.Tensor, limit: float
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ mask · (softmax_s − softmax_t)² / (2 Σ mask): the squared error where the teacher is certain
    (uncertainty < ``limit``), as DHC computes it; and the mask."""
    mask = (uncert < limit).float()
    dist = (student_u.float().softmax(1) - teacher_u.float().softmax(1)) ** 2
    return (mask * dist).sum() / (2 * mask.sum() + 1e-16), mask


def step(m: Method, b: Batch3D, c: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    student, teacher = m.networks["student"], m.frozen["teacher"]
    n = b.labelled.shape[0]
    out = student(torch.cat([b.labelled, b.unlabelled]))
    with torch.no_grad():
        noisy = b.unlabelled + torch.clamp(torch.randn_like(b.unlabelled) * 0.1, -0.2, 0.2)
        teacher_u = teacher(noisy)
    uncert = uncertainty(teacher, b.unlabelled, setting(c.volumes, "uamt_passes"))
    ce, dc = c.sup_ce(out[:n], b.labels), dice_loss(out[:n], b.labels, smooth=DICE_SMOOTH)
    sup = 0.5 * (ce + dc)
    cons, mask = consistency(out[n:], teacher_u, uncert, threshold(c.step, c.total))
    return sup + c.unsup_weight * cons, {"loss_sup": sup.detach(), "loss_unsup": cons.detach(),
                                         "certain": mask.mean().detach()}


def teacher(m: Method, step: int, c: StepContext) -> None:
    """The EMA teacher after each step, α_e = min(1 − 1/(e+1), α) with e the epoch, as DHC's UA-MT counts it (so
    α reaches 0.99 after ~99 epochs, not ~99 steps)."""
    epoch = step // max(c.epoch_steps, 1)
    ema_update(m.frozen["teacher"], m.networks["student"], ema_alpha(epoch, setting(c.volumes, "ema_alpha")))
