"""Semi-supervised 3D segmentation methods of the paper's Table 5, as DHC's code runs them (xmed-lab/DHC), with
DyCE (Eq. 9) as a plug-in: supervised-only V-Net, UA-MT, DePL and DHC.

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
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from models.losses import DyCELoss
from models.unet3d import UNet3DDS
from models.vnet import VNet, init_weights

METHODS = ("supervised", "uamt", "urpc", "depl", "dhc")


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


def dice_loss(logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """1 − mean foreground Dice of softmax(logits), each class × its weight where given (DHC: −mean, the same
    gradient)."""
    dc = soft_dice(logits.float().softmax(1), labels)[1:]
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


# UA-MT ------------------------------------------------------------------------------------------------
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


def uamt_threshold(step: int, total: int) -> float:
    """(0.75 + 0.25 · ramp) · ln 2: DHC's UA-MT threshold on the entropy (ln 2 as in DHC's code, though Synapse
    has 14 classes)."""
    return (0.75 + 0.25 * sigmoid_rampup(step, total)) * math.log(2)


def uamt_consistency(student_u: torch.Tensor, teacher_u: torch.Tensor, uncert: torch.Tensor, threshold: float
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ mask · (softmax_s − softmax_t)² / (2 Σ mask): the squared error where the teacher is certain
    (uncertainty < threshold), as DHC computes it; and the mask."""
    mask = (uncert < threshold).float()
    dist = (student_u.float().softmax(1) - teacher_u.float().softmax(1)) ** 2
    return (mask * dist).sum() / (2 * mask.sum() + 1e-16), mask


# URPC -------------------------------------------------------------------------------------------------
def urpc_consistency(logits: list[torch.Tensor]) -> torch.Tensor:
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


# DePL -------------------------------------------------------------------------------------------------
def debiased(logits: torch.Tensor, qhat: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """softmax(logits − τ log q̂): DePL's pseudo-label distribution, debiased by the running class prior q̂."""
    return (logits.float() - tau * torch.log(qhat)).softmax(1)


def masked_ce(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
              weight: torch.Tensor | None = None) -> torch.Tensor:
    """Per-voxel CE (class-weighted where given) × mask, averaged over every voxel (DHC's weighted CE)."""
    loss = F.cross_entropy(logits.float(), target.long(), weight=weight, reduction="none")
    return (loss * mask).mean() if mask is not None else loss.mean()


# DHC --------------------------------------------------------------------------------------------------
def ema(current: torch.Tensor, past: torch.Tensor, momentum: float) -> torch.Tensor:
    return momentum * past + (1 - momentum) * current


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


# building and stepping -------------------------------------------------------------------------------
def build_method(name: str, num_classes: int, n_filters: int, dropout: bool, unet_filters: int = 16) -> Method:
    """The method's networks: V-Nets of ``n_filters``, or for URPC DHC's deeply supervised U-Net of
    ``unet_filters``; each with its dropout or none (``dropout``)."""
    vnet = lambda: VNet(1, num_classes, n_filters, dropout)  # noqa: E731
    if name == "supervised":
        return Method(name, {"net": vnet()}, num_classes=num_classes)
    if name == "urpc":
        return Method(name, {"net": UNet3DDS(1, num_classes, unet_filters, dropout)}, num_classes=num_classes)
    if name == "uamt":
        student = vnet()
        teacher = vnet()
        teacher.load_state_dict(student.state_dict())
        for p in teacher.parameters():
            p.requires_grad_(False)
        return Method(name, {"student": student}, {"teacher": teacher}, num_classes)
    if name == "depl":
        return Method(name, {"a": init_weights(vnet()), "b": init_weights(vnet(), "xavier")}, num_classes=num_classes)
    if name == "dhc":
        return Method(name, {"a": init_weights(vnet()), "b": init_weights(vnet())}, num_classes=num_classes)
    raise ValueError(f"volumes.method: {name!r} is not one of {', '.join(METHODS)}")


@dataclass
class StepContext:
    """What a step needs besides the batch: the supervised CE term, the unsupervised weight, progress, state."""

    sup_ce: SupervisedCE
    unsup_weight: float
    step: int
    total: int
    ema_alpha: float = 0.99
    uamt_passes: int = 8
    depl_threshold: float = 0.9
    state: dict = field(default_factory=dict)  # DePL's q̂ (qhat_a, qhat_b), DHC's DistDW and DiffDW
    unsup_ce: nn.Module | None = None  # DHC's unsupervised CE terms as DyCE (volumes.dyce_unsup); None: DHC's weighted CE


def supervised_step(m: Method, b: Batch3D, c: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    logits = m.networks["net"](b.labelled)
    ce, dc = c.sup_ce(logits, b.labels), dice_loss(logits, b.labels)
    return ce + dc, {"loss_ce": ce.detach(), "loss_dice": dc.detach()}


def uamt_step(m: Method, b: Batch3D, c: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    student, teacher = m.networks["student"], m.frozen["teacher"]
    n = b.labelled.shape[0]
    out = student(torch.cat([b.labelled, b.unlabelled]))
    with torch.no_grad():
        noisy = b.unlabelled + torch.clamp(torch.randn_like(b.unlabelled) * 0.1, -0.2, 0.2)
        teacher_u = teacher(noisy)
    uncert = uncertainty(teacher, b.unlabelled, c.uamt_passes)
    ce, dc = c.sup_ce(out[:n], b.labels), dice_loss(out[:n], b.labels)
    sup = 0.5 * (ce + dc)
    cons, mask = uamt_consistency(out[n:], teacher_u, uncert, uamt_threshold(c.step, c.total))
    return sup + c.unsup_weight * cons, {"loss_sup": sup.detach(), "loss_unsup": cons.detach(),
                                         "certain": mask.mean().detach()}


def urpc_step(m: Method, b: Batch3D, c: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """DHC's URPC: (CE + Dice) of each of the 4 scales on the labelled batch, summed and divided by 8, plus the
    rectified pyramid consistency on the unlabelled batch."""
    n = b.labelled.shape[0]
    outs = m.networks["net"](torch.cat([b.labelled, b.unlabelled]), pyramid=True)
    ce = sum(c.sup_ce(o[:n], b.labels) for o in outs)
    dc = sum(dice_loss(o[:n], b.labels) for o in outs)
    sup = (ce + dc) / (2 * len(outs))
    cons = urpc_consistency([o[n:] for o in outs])
    return sup + c.unsup_weight * cons, {"loss_sup": sup.detach(), "loss_unsup": cons.detach()}


def depl_step(m: Method, b: Batch3D, c: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    a, bnet = m.networks["a"], m.networks["b"]
    n, images = b.labelled.shape[0], torch.cat([b.labelled, b.unlabelled])
    out_a, out_b = a(images), bnet(images)
    sup = sum(c.sup_ce(o[:n], b.labels) + dice_loss(o[:n], b.labels) for o in (out_a, out_b))
    qa, qb = c.state["qhat_a"], c.state["qhat_b"]  # the running class priors (uniform at the start)
    conf_a, pseudo_a = debiased(out_a.detach(), qa).max(1)
    conf_b, pseudo_b = debiased(out_b.detach(), qb).max(1)
    c.state["qhat_a"] = ema(out_a[n:].detach().float().softmax(1).mean(0, keepdim=True), qa, 0.99)
    c.state["qhat_b"] = ema(out_b[n:].detach().float().softmax(1).mean(0, keepdim=True), qb, 0.99)
    # adaptive marginal loss: each network's logits shifted by the other's log prior (DePL)
    unsup = masked_ce(out_a + torch.log(qb), pseudo_b, (conf_b >= c.depl_threshold).float()) + \
        masked_ce(out_b + torch.log(qa), pseudo_a, (conf_a >= c.depl_threshold).float())
    return sup + c.unsup_weight * unsup, {"loss_sup": sup.detach(), "loss_unsup": unsup.detach()}


def dhc_step(m: Method, b: Batch3D, c: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    a, bnet = m.networks["a"], m.networks["b"]
    n, images = b.labelled.shape[0], torch.cat([b.labelled, b.unlabelled])
    out_a, out_b = a(images), bnet(images)
    diff, dist = c.state["diffdw"], c.state["distdw"]
    w_a = diff.update(out_a[:n], b.labels)  # DiffDW for network A, from its labelled predictions
    w_b = dist.update(out_b[n:])  # DistDW for network B, from its pseudo-labels on the unlabelled batch
    sup = c.sup_ce(out_a[:n], b.labels, w_a) + dice_loss(out_a[:n], b.labels, w_a) + \
        c.sup_ce(out_b[:n], b.labels, w_b) + dice_loss(out_b[:n], b.labels, w_b)
    pseudo_a, pseudo_b = out_a.detach().argmax(1), out_b.detach().argmax(1)
    if c.unsup_ce is not None:  # class-balanced by Eq. 9 over every voxel, DyCE's weights in place of DHC's
        unsup = c.unsup_ce(out_a, pseudo_b) + c.unsup_ce(out_b, pseudo_a)
    else:
        unsup = masked_ce(out_a, pseudo_b, weight=w_a) + masked_ce(out_b, pseudo_a, weight=w_b)
    return sup + c.unsup_weight * unsup, {"loss_sup": sup.detach(), "loss_unsup": unsup.detach(),
                                          "weight_min_a": w_a.min().detach(), "weight_min_b": w_b.min().detach()}


STEPS = {"supervised": supervised_step, "uamt": uamt_step, "urpc": urpc_step, "depl": depl_step, "dhc": dhc_step}


def method_step(m: Method, b: Batch3D, c: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    loss, logs = STEPS[m.name](m, b, c)
    return loss, {"loss": loss.detach(), **logs}


def update_teacher(m: Method, step: int, alpha: float) -> None:
    """UA-MT's EMA teacher, α_t = min(1 − 1/(t+1), α) (the mean teacher's warm-up), buffers copied."""
    if "teacher" not in m.frozen:
        return
    a = min(1 - 1 / (step + 1), alpha)
    with torch.no_grad():
        for t, s in zip(m.frozen["teacher"].parameters(), m.networks["student"].parameters(), strict=True):
            t.mul_(a).add_(s.detach(), alpha=1 - a)
        for t, s in zip(m.frozen["teacher"].buffers(), m.networks["student"].buffers(), strict=True):
            t.copy_(s)
