"""DePL (Wang & Li, MICCAI 2023: debiased pseudo-labelling) as DHC runs it: two V-Nets, each taught the other's
pseudo-labels, debiased by that network's running class prior q̂ and kept where confident (≥ 0.9), the CE over
every voxel. DHC's ``train_depl.py`` computes DePL's adaptive margin (each network's unlabelled logits shifted by
the other's log prior) but trains on the unshifted logits; ``volumes.depl_margin: true`` trains on the shifted ones
as the DePL paper describes."""

from __future__ import annotations

from typing import Any

import torch

from models.volumes.parts import Batch3D, Method, StepContext, dice_loss, ema, masked_ce, setting, vnet

DISPLAY = "DePL"
PAPER = {False: (36.3, 36.0), True: (51.8, 9.2)}
KEYS = ("depl_threshold", "depl_margin")


def build(num_classes: int, volumes: Any) -> Method:
    from models.volumes.vnet import init_weights

    return Method("depl", {"a": init_weights(vnet(num_classes, volumes)),
                           "b": init_weights(vnet(num_classes, volumes), "xavier")}, num_classes=num_classes)


def initial_state(counts: torch.Tensor, patch: tuple[int, int, int], device: torch.device) -> dict[str, Any]:
    """Each network's class prior q̂, uniform at the start."""
    prior = torch.full((1, len(counts), *patch), 1 / len(counts), device=device)
    return {"qhat_a": prior.clone(), "qhat_b": prior.clone()}


def debiased(logits: torch.Tensor, qhat: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """softmax(logits − τ log q̂): DePL's pseudo-label distribution, debiased by the running class prior q̂."""
    return (logits.float() - tau * torch.log(qhat)).softmax(1)


def step(m: Method, b: Batch3D, c: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    n, images = b.labelled.shape[0], torch.cat([b.labelled, b.unlabelled])
    out_a, out_b = m.networks["a"](images), m.networks["b"](images)
    sup = sum(c.sup_ce(o[:n], b.labels) + dice_loss(o[:n], b.labels) for o in (out_a, out_b))
    qa, qb = c.state["qhat_a"], c.state["qhat_b"]
    conf_a, pseudo_a = debiased(out_a.detach(), qa).max(1)
    conf_b, pseudo_b = debiased(out_b.detach(), qb).max(1)
    c.state["qhat_a"] = ema(out_a[n:].detach().float().softmax(1).mean(0, keepdim=True), qa, 0.99)
    c.state["qhat_b"] = ema(out_b[n:].detach().float().softmax(1).mean(0, keepdim=True), qb, 0.99)
    limit, margin = setting(c.volumes, "depl_threshold"), setting(c.volumes, "depl_margin", False)
    logits_a, logits_b = (out_a + torch.log(qb), out_b + torch.log(qa)) if margin else (out_a, out_b)
    unsup = masked_ce(logits_a, pseudo_b, (conf_b >= limit).float()) + \
        masked_ce(logits_b, pseudo_a, (conf_a >= limit).float())
    return sup + c.unsup_weight * unsup, {"loss_sup": sup.detach(), "loss_unsup": unsup.detach()}
