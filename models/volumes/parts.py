"""What the 3D methods of the paper's Table 5 share (``models.volumes.methods``: one module per method), as DHC's
code runs them (xmed-lab/DHC), with DyCE (Eq. 9) as a plug-in: the batch, the networks, the step's context, Dice,
the supervised CE term, the masked CE of pseudo-labels, the ramp-up.

Every method returns (loss, logs) for a step on a labelled batch (image, labels) and an unlabelled batch, and
predicts with the network(s) DHC evaluates. Where DyCE goes: **in place of each supervised cross-entropy term**
(the labelled voxels, with their ground truth), as in SemiDAViL itself, where Eq. 9 weighs the labelled pixels
and the consistency term keeps its own form. The methods' unsupervised terms stay as each method defines
them: UA-MT's is a mean-squared error, not a CE; URPC's a rectified squared error between each scale's
prediction and the pyramid's mean (DyCE takes each scale's supervised CE); DePL's pseudo-labels are already
debiased by its own class prior and DHC's weighted by its DistDW/DiffDW class weights, and mining the hardest pseudo-labelled voxels
would mine the teacher's errors (``StepContext.unsup_ce`` makes DHC's class-balanced by Eq. 9 without mining,
``volumes.dyce_unsup``, off by default). The Dice terms stay (with DHC's class weights where DHC has them).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.losses import DyCELoss


def sigmoid_rampup(step: float, length: float) -> float:
    """exp(−5 (1 − t/T)²), t clipped to [0, T] (Laine & Aila): the unsupervised weight's ramp-up."""
    if length <= 0:
        return 1.0
    phase = 1.0 - min(max(step, 0.0), length) / length
    return float(math.exp(-5.0 * phase * phase))


def one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, D, H, W) int -> (B, C, D, H, W) float."""
    return F.one_hot(labels.long(), num_classes).movedim(-1, 1).float()


def soft_dice(probs: torch.Tensor, labels: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """(C,) Dice of each class over the whole batch (DHC's ``SoftDiceLoss``, batch dice)."""
    target = one_hot(labels, probs.shape[1])
    axes = (0, *range(2, probs.dim()))
    tp = (probs * target).sum(axes)
    fp = (probs * (1 - target)).sum(axes)
    fn = ((1 - probs) * target).sum(axes)
    return (2 * tp + smooth) / (2 * tp + fp + fn + smooth + 1e-8)


def dice_loss(logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None = None,
              smooth: float = 1.0) -> torch.Tensor:
    """1 − mean foreground Dice of softmax(logits), each class × its weight where given (DHC: −mean, the same
    gradient); ``smooth`` as the method's script sets it (DHC: 1 by default, 1e-8 in UA-MT's and URPC's)."""
    dc = soft_dice(logits.float().softmax(1), labels, smooth)[1:]
    if weight is not None:
        dc = dc * weight[1:]
    return 1 - dc.mean()


class SupervisedCE(nn.Module):
    """The cross-entropy term of a supervised loss: plain (or class-weighted, DHC) CE, or DyCE (Eq. 9). With
    DyCE, a method's own class weights (DHC's DistDW/DiffDW) are dropped (``keep_weights`` false: DyCE's
    weights replace them) or kept inside Eq. 9 (true: ``DyCELoss``'s ``class_weight``)."""

    def __init__(self, dyce: bool, hard_ratio: float, omega: float, keep_weights: bool = False):
        super().__init__()
        self.dyce = DyCELoss(hard_ratio, omega, ignore_index=255) if dyce else None
        self.keep_weights = keep_weights

    def forward(self, logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        if self.dyce is not None:
            return self.dyce(logits, labels.long(), weight if self.keep_weights else None)
        return F.cross_entropy(logits.float(), labels.long(), weight=weight)


@dataclass
class Batch3D:
    labelled: torch.Tensor  # (Bl, 1, D, H, W) in [0, 1]
    labels: torch.Tensor  # (Bl, D, H, W) int64
    unlabelled: torch.Tensor | None  # (Bu, 1, D, H, W), None for supervised-only


@dataclass
class Method:
    """A method's networks (trained by their optimizers), frozen helpers (UA-MT's teacher) and state."""

    name: str
    networks: dict[str, nn.Module]  # optimised
    frozen: dict[str, nn.Module] = field(default_factory=dict)  # EMA teacher: saved, not optimised
    num_classes: int = 14

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Logits DHC evaluates: the network, UA-MT's student, or the mean of DePL's and DHC's two networks."""
        nets = [self.networks[n] for n in ("a", "b") if n in self.networks] or [next(iter(self.networks.values()))]
        return sum(net(x) for net in nets) / len(nets)


def masked_ce(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
              weight: torch.Tensor | None = None) -> torch.Tensor:
    """Per-voxel CE (class-weighted where given) × mask, averaged over every voxel (DHC's weighted CE)."""
    loss = F.cross_entropy(logits.float(), target.long(), weight=weight, reduction="none")
    return (loss * mask).mean() if mask is not None else loss.mean()


def weighted_ce(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """PyTorch's class-weighted CE, mean reduction: Σ w[t]·CE / Σ w[t] (DHC's ``RobustCrossEntropyLoss(weight)``)."""
    return F.cross_entropy(logits.float(), target.long(), weight=weight.float())


def ema(current: torch.Tensor, past: torch.Tensor, momentum: float) -> torch.Tensor:
    """momentum · past + (1 − momentum) · current: the running statistics of DePL and DHC."""
    return momentum * past + (1 - momentum) * current


@dataclass
class StepContext:
    """What a step needs besides the batch: the supervised CE term, the unsupervised weight, progress, the
    ``volumes`` config section (each method reads its own keys there) and the method's running state."""

    sup_ce: SupervisedCE
    unsup_weight: float
    step: int
    total: int
    volumes: Any = None  # the volumes config section (pydantic model)
    state: dict = field(default_factory=dict)  # the method's running state (``initial_state``)
    unsup_ce: nn.Module | None = None  # DHC's unsupervised CE terms as DyCE (volumes.dyce_unsup); None: its own CE
    epoch_steps: int = 1  # steps in one of DHC's epochs (one pass over the unlabelled cases): what its schedules count


Step = Callable[[Method, Batch3D, StepContext], tuple[torch.Tensor, dict[str, torch.Tensor]]]


def setting(volumes: Any, key: str, default: Any = None) -> Any:
    """A ``volumes`` key from the config section or from a checkpoint's saved dict (older ones may lack it)."""
    return volumes.get(key, default) if isinstance(volumes, dict) else getattr(volumes, key)


def vnet(num_classes: int, volumes: Any) -> nn.Module:
    """DHC's V-Net of ``volumes.n_filters``, with its dropout or none (``volumes.dropout``)."""
    from models.volumes.vnet import VNet

    return VNet(1, num_classes, setting(volumes, "n_filters"), setting(volumes, "dropout"))
