"""Losses (paper §3.3-3.4, DESIGN §4). Each is computed in float32, also under bf16 autocast."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn


def pixel_ce(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """Per-pixel CE ℓ_i, (B, H, W); 0 at ignored pixels."""
    return F.cross_entropy(logits.float(), target, ignore_index=ignore_index, reduction="none")


class CrossEntropyLoss(nn.Module):
    """Mean CE over valid pixels (Eq. 5): the baseline that DyCE replaces (``loss.dyce: false``)."""

    def __init__(self, ignore_index: int = 255):
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), target, ignore_index=self.ignore_index)


class DyCELoss(nn.Module):
    """Dynamic class-balanced CE (Eq. 9).

    Over the valid pixels of the whole batch: H = the ⌈h·N⌉ pixels of largest CE, f_c = pixels of class c
    in H, f_H = |H|, and  L = f_H^(-ω) · Σ_c f_c^(ω-1) · Σ_{i∈H, y_i=c} ℓ_i.
    ω = 1 is the mean CE over H (OHEM); ω = 0 is the sum of the per-class mean CEs.
    Ties at the threshold go to the earliest pixels, so |H| is exactly ⌈h·N⌉.

    Nothing here waits for the device: N, f_H and the threshold stay tensors. The k-th largest CE is found
    by ``topk`` over the ⌈h·numel⌉ largest (an upper bound of f_H known without a sync: 0.17 ms on an H100
    where ``kthvalue`` took 11.4 ms), or on CPU by ``kthvalue``, the faster there (``select``).
    """

    def __init__(self, hard_ratio: float = 0.2, omega: float = 0.5, ignore_index: int = 255,
                 select: Literal["auto", "topk", "kthvalue"] = "auto"):
        super().__init__()
        if not 0 < hard_ratio <= 1 or not 0 <= omega <= 1:
            raise ValueError("DyCELoss needs 0 < hard_ratio <= 1 and 0 <= omega <= 1")
        self.hard_ratio, self.omega, self.ignore_index, self.select = hard_ratio, omega, ignore_index, select

    def forward(self, logits: torch.Tensor, target: torch.Tensor, class_weight: torch.Tensor | None = None
                ) -> torch.Tensor:
        """logits (B, C, H, W), target (B, H, W) int64 -> scalar. ``class_weight`` (C,), where given: another
        method's class weights w_c (DHC's) kept inside Eq. 9: each f_c^(ω-1) is multiplied by w_c / w̄, w̄ the
        mean weight of the classes present in H, so constant weights give Eq. 9 exactly and no class gains more
        than (classes in H)× its Eq. 9 weight. (Dividing by the mean weight of H's pixels instead, as PyTorch's
        weighted CE does, blew the loss up by sqrt(f_H / f_fg) when DHC gives the background, most of H, a
        weight near 0: docs/BENCHMARKS.md.)"""
        num_classes = logits.shape[1]
        ce = pixel_ce(logits, target, self.ignore_index).flatten()  # ℓ_i; 0 where ignored
        labels = target.flatten()
        valid = labels != self.ignore_index
        k = torch.ceil(valid.sum().double() * self.hard_ratio).long()  # f_H = ⌈h·N⌉, on the device
        with torch.no_grad():  # which pixels are in H, and their class weights; no gradient flows here
            hard = self._hardest(ce.detach(), valid, k)
            classes = torch.where(hard, labels, num_classes)  # pixels outside H count in a spare bin
            f_c = torch.zeros(num_classes + 1, device=ce.device).index_add_(0, classes, torch.ones_like(ce))[:num_classes]
            table = torch.cat([f_c.clamp_min(1.0).pow(self.omega - 1.0), f_c.new_zeros(1)])  # 1 / f_c^(1-ω)
            scale = torch.ones((), device=ce.device)
            if class_weight is not None:
                w = class_weight.detach().float().to(ce.device)
                table[:num_classes] *= w
                present = f_c > 0
                scale = (w * present).sum() / present.sum().clamp_min(1)  # w̄: the mean weight of H's classes
            weight = table[classes]  # per pixel: its class weight on H, 0 elsewhere
        # no valid pixel: every weight is 0, so the loss and its gradient are 0
        return (weight * ce).sum() / (k.clamp_min(1).double().pow(self.omega).float() * scale.clamp_min(1e-8))

    def _hardest(self, ce: torch.Tensor, valid: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Mask of the k valid pixels of largest CE; ties at the threshold go to the earliest pixels."""
        if self.hard_ratio == 1:  # every valid pixel: class balance without mining
            return valid
        score = ce.masked_fill(~valid, -1.0)  # ℓ ≥ 0, so ignored pixels rank below every valid one
        use_topk = self.select == "topk" or (self.select == "auto" and score.is_cuda)
        if use_topk:
            k_max = math.ceil(self.hard_ratio * score.numel())  # ≥ k, known without asking the device
            top = score.topk(k_max, sorted=True).values
            threshold = top[(k - 1).clamp_min(0)]  # the k-th largest (the largest when k = 0: nothing is valid)
        else:  # CPU: a sync costs nothing, and kthvalue beats topk of a large k
            if int(k) == 0:
                return torch.zeros_like(valid)
            threshold = score.kthvalue(score.numel() - int(k) + 1).values
        hard = score > threshold
        ties = (score == threshold) & valid
        missing = k - hard.sum()
        return hard | (ties & (ties.cumsum(0) <= missing))


def build_supervised_loss(dyce: bool, hard_ratio: float, omega: float, ignore_index: int) -> nn.Module:
    return DyCELoss(hard_ratio, omega, ignore_index) if dyce else CrossEntropyLoss(ignore_index)


def pseudo_labels(teacher_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's hard pseudo-label and its confidence (max softmax), each (B, H, W)."""
    confidence, pseudo = teacher_logits.detach().float().softmax(dim=1).max(dim=1)
    return pseudo, confidence


def consistency_loss(student_logits: torch.Tensor, pseudo: torch.Tensor, confidence: torch.Tensor,
                     threshold: float | torch.Tensor = 0.95, omega: float = 1.0, ignore_index: int = 255
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """L_CT (Eq. 4): CE of the student's strong-view prediction against the teacher's hard pseudo-label
    on the weak view, where the teacher's confidence ≥ Th, averaged over all unlabelled pixels.

    ``threshold``: Th, or one threshold per class (C,), applied by each pixel's pseudo-label.
    ``omega`` < 1 balances the classes as DyCE does (Eq. 9 over every passed pixel, no mining), scaled by
    the share of pixels that passed: rare pseudo-classes weigh more. ω = 1 is Eq. 4 exactly.
    Returns the loss and the mask of pixels that passed (B, H, W) float.
    """
    with torch.no_grad():
        th = threshold[pseudo] if isinstance(threshold, torch.Tensor) else threshold
        passed = confidence >= th
    target = pseudo.masked_fill(~passed, ignore_index)
    balanced = DyCELoss(hard_ratio=1.0, omega=omega, ignore_index=ignore_index)(student_logits, target)
    return balanced * passed.float().mean(), passed.float()


def passed_per_class(pseudo: torch.Tensor, passed: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C,): the share of each class's pseudo-labelled pixels that passed the threshold (0 where none)."""
    labels = pseudo.flatten()
    total = torch.zeros(num_classes, device=labels.device).index_add_(0, labels, torch.ones_like(passed.flatten()))
    hits = torch.zeros(num_classes, device=labels.device).index_add_(0, labels, passed.flatten())
    return hits / total.clamp_min(1)
