"""DHC (Wang & Li, MICCAI 2023: dual debiased heterogeneous co-training) as its code runs: two V-Nets, one
weighted by DiffDW (difficulty-aware), the other by DistDW (distribution-aware) class weights, each taught the
other's pseudo-labels with its own weights: ``nn.CrossEntropyLoss(weight=w)`` as DHC's ``RobustCrossEntropyLoss``,
a weighted mean over Σ w[target] (DistDW gives the background weight 0: its voxels leave the mean)."""

from __future__ import annotations

from typing import Any

import torch

from models.volumes.parts import (
    Batch3D,
    Method,
    StepContext,
    dice_loss,
    ema,
    one_hot,
    setting,
    soft_dice,
    vnet,
    weighted_ce,
)

DISPLAY = "DHC"
PAPER = {False: (48.6, 10.7), True: (57.9, 6.4)}
KEYS: tuple[str, ...] = ()
STATE_FIELDS = {"diffdw": ("last_dice", "learn", "unlearn", "dice_weight", "weights"), "distdw": ("weights",)}


def build(num_classes: int, volumes: Any) -> Method:
    from models.volumes.vnet import init_weights

    return Method("dhc", {"a": init_weights(vnet(num_classes, volumes)), "b": init_weights(vnet(num_classes, volumes))},
                  num_classes=num_classes)


def loss_keys(volumes: Any) -> dict[str, Any]:
    """With DyCE: whether DHC's weights stay inside Eq. 9, and whether its unsupervised terms are DyCE too (each
    recorded only when on, so runs from before these keys keep their fingerprints)."""
    return {k: True for k, key in (("keeps_weights", "dyce_keeps_weights"), ("unsup", "dyce_unsup"))
            if setting(volumes, key, False)}


def initial_state(counts: torch.Tensor, patch: tuple[int, int, int], device: torch.device) -> dict[str, Any]:
    """DiffDW, and DistDW from the labelled cases' class counts."""
    return {"diffdw": DiffDW(len(counts), accumulate=50, device=device), "distdw": DistDW(counts.float().to(device))}


def distribution_weights(counts: torch.Tensor) -> torch.Tensor:
    """DistDW: log(max count / count) scaled to a maximum of 1, × the number of classes."""
    p = (counts.max() + 1e-8) / (counts + 1e-8)
    return torch.log(p) / torch.log(p).max() * len(counts)


class DistDW:
    """DHC's distribution-aware weights: from the labelled class counts, then an EMA of the counts of the
    network's own pseudo-labels on unlabelled batches (momentum 0.99)."""

    def __init__(self, labelled_counts: torch.Tensor, momentum: float = 0.99):
        self.weights, self.momentum = distribution_weights(labelled_counts.float()), momentum

    def update(self, unlabelled_logits: torch.Tensor) -> torch.Tensor:
        pred = unlabelled_logits.detach().argmax(1).flatten()
        counts = torch.bincount(pred, minlength=len(self.weights)).float().to(self.weights.device)
        self.weights = ema(distribution_weights(counts), self.weights, self.momentum)
        return self.weights


class DiffDW:
    """DHC's difficulty-aware weights: from how each class's Dice on the labelled batch rises (learnt) or falls
    (unlearnt), accumulated over ``accumulate`` steps, times an EMA of 1 − Dice."""

    def __init__(self, num_classes: int, accumulate: int = 50, device: torch.device | str = "cpu"):
        z = lambda: torch.zeros(num_classes, device=device)  # noqa: E731
        self.last_dice, self.learn, self.unlearn = z() + 1e-8, z(), z()
        self.dice_weight = torch.ones(num_classes, device=device)
        self.weights = torch.ones(num_classes, device=device) * num_classes
        self.momentum, self.num_classes = (accumulate - 1) / accumulate, num_classes

    def update(self, labelled_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        pred = one_hot(labelled_logits.detach().argmax(1), self.num_classes)
        dice = soft_dice(pred, labels, smooth=1e-8).clamp_min(1e-8)
        delta, ratio = dice - self.last_dice, torch.log(dice / self.last_dice)
        self.learn = ema(torch.where(delta > 0, delta, 0) * ratio, self.learn, self.momentum)
        self.unlearn = ema(torch.where(delta <= 0, delta, 0) * ratio, self.unlearn, self.momentum)
        self.last_dice = dice
        difficulty = ((self.unlearn + 1e-8) / (self.learn + 1e-8)).pow(1 / 5)
        self.dice_weight = ema(1 - dice, self.dice_weight, self.momentum)
        w = difficulty * self.dice_weight
        self.weights = w / w.max() * self.num_classes
        return self.weights





def step(m: Method, b: Batch3D, c: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    n, images = b.labelled.shape[0], torch.cat([b.labelled, b.unlabelled])
    out_a, out_b = m.networks["a"](images), m.networks["b"](images)
    w_a = c.state["diffdw"].update(out_a[:n], b.labels)  # DiffDW for network A, from its labelled predictions
    w_b = c.state["distdw"].update(out_b[n:])  # DistDW for network B, from its pseudo-labels on the unlabelled batch
    sup = c.sup_ce(out_a[:n], b.labels, w_a) + dice_loss(out_a[:n], b.labels, w_a) + \
        c.sup_ce(out_b[:n], b.labels, w_b) + dice_loss(out_b[:n], b.labels, w_b)
    pseudo_a, pseudo_b = out_a.detach().argmax(1), out_b.detach().argmax(1)
    if c.unsup_ce is not None:  # class-balanced by Eq. 9 over every voxel, DyCE's weights in place of DHC's
        unsup = c.unsup_ce(out_a, pseudo_b) + c.unsup_ce(out_b, pseudo_a)
    else:
        unsup = weighted_ce(out_a, pseudo_b, w_a) + weighted_ce(out_b, pseudo_a, w_b)
    return sup + c.unsup_weight * unsup, {"loss_sup": sup.detach(), "loss_unsup": unsup.detach(),
                                          "weight_min_a": w_a.min().detach(), "weight_min_b": w_b.min().detach()}
