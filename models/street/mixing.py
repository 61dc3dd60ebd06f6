"""Mixed strong views for consistency training (DACS / ClassMix, DESIGN §4), as pure tensor functions.

A mixed image takes the pixels under ``mask`` from image i and the rest from its partner ``perm[i]``; the
teacher's pseudo-labels and confidences are mixed with the same mask, and so is the language: the mixed
image's F_L is both captions' tokens, concatenated with their masks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def partners(batch_size: int) -> torch.Tensor:
    """Image i is mixed with image i+1 (the last with the first): every image pastes and receives once."""
    return torch.roll(torch.arange(batch_size), -1)


def classmix_masks(labels: torch.Tensor, num_classes: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """ClassMix: (B, H, W) bool, True on the pixels of half of the classes each image's ``labels`` show
    (rounded up), chosen at random. A label >= ``num_classes`` (ignored) is no class: never pasted, not
    counted. No device sync: classes are drawn for all images at once."""
    b = labels.shape[0]
    flat = labels.flatten(1).clamp(max=num_classes)  # every ignored label -> one extra slot
    present = torch.zeros(b, num_classes + 1, dtype=torch.bool, device=labels.device)
    present.scatter_(1, flat, True)
    present[:, num_classes] = False
    scores = torch.rand(b, num_classes + 1, generator=generator, device="cpu").to(labels.device)
    scores = scores.masked_fill(~present, 2.0)  # absent classes sort last
    rank = scores.argsort(1).argsort(1)  # (B, C + 1): each class's place in the random order
    chosen = rank < (present.sum(1, keepdim=True) + 1) // 2  # the first half of the present classes
    return torch.gather(chosen, 1, flat).view_as(labels)


def cutmix_masks(shape: tuple[int, int, int], device: torch.device, generator: torch.Generator | None = None,
                 ratio: float = 0.5) -> torch.Tensor:
    """CutMix: (B, H, W) bool, True inside one random box of ``ratio`` of the image's area per image."""
    b, h, w = shape
    bh, bw = int(h * ratio**0.5), int(w * ratio**0.5)
    tops = torch.randint(0, h - bh + 1, (b,), generator=generator)
    lefts = torch.randint(0, w - bw + 1, (b,), generator=generator)
    ys, xs = torch.arange(h)[None, :, None], torch.arange(w)[None, None, :]
    inside = (ys >= tops[:, None, None]) & (ys < (tops + bh)[:, None, None]) & \
             (xs >= lefts[:, None, None]) & (xs < (lefts + bw)[:, None, None])
    return inside.to(device)


def mix(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pixels of ``a`` under ``mask`` (B, H, W), of ``b`` elsewhere; ``a``/``b`` (B, H, W) or (B, C, H, W)."""
    m = mask if a.dim() == 3 else mask[:, None]
    return torch.where(m, a, b)


def mix_text(top: torch.Tensor, top_mask: torch.Tensor, base: torch.Tensor, base_mask: torch.Tensor,
             max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """F_L of mixed images: the pasted (top) image's caption tokens, then the base image's, cut to ``max_tokens``.

    Each text (B, n, c) with valid tokens first, and its mask (B, n); the two n may differ.
    Returns (B, n', c), (B, n'), n' <= max_tokens.
    """
    n = max(top.shape[1], base.shape[1])
    top, top_mask = pad_tokens(top, top_mask, n)
    base, base_mask = pad_tokens(base, base_mask, n)
    b = top.shape[0]
    pos = torch.arange(2 * n, device=top.device)[None].expand(b, -1)  # (B, 2n): places in the joined row
    len_a = top_mask.sum(1, keepdim=True)  # (B, 1)
    len_b = base_mask.sum(1, keepdim=True)
    from_a = pos < len_a
    idx = torch.where(from_a, pos, pos - len_a).clamp(0, n - 1)  # the token each place takes
    joined_a = torch.gather(top, 1, idx[..., None].expand(-1, -1, top.shape[2]))
    joined_b = torch.gather(base, 1, idx[..., None].expand(-1, -1, top.shape[2]))
    valid = pos < len_a + len_b
    joined = torch.where(from_a[..., None], joined_a, joined_b) * valid[..., None]
    keep = min(max_tokens, 2 * n)
    return joined[:, :keep], valid[:, :keep]


def pad_tokens(text: torch.Tensor, mask: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Text (B, m, c) and mask (B, m) padded with empty tokens to n >= m."""
    return F.pad(text, (0, 0, 0, n - text.shape[1])), F.pad(mask, (0, n - mask.shape[1]))


def class_thresholds(confidence: torch.Tensor, pseudo: torch.Tensor, num_classes: int, threshold: float,
                     quantile: float, cap: bool = True) -> torch.Tensor:
    """Class-wise confidence thresholds (C,): τ_c = min(Th, the ``quantile`` of the teacher's confidence
    over the pixels it labels c in this batch), so that a class the teacher is less sure of (a rare one)
    still teaches: a fixed Th lets only the head classes through. Classes it does not predict keep Th.
    ``cap`` False: τ_c is the quantile alone, so the same share of every class passes however sure the
    teacher has grown (an over-confident teacher passes everything under the cap).

    One sort of (class, confidence) keys; no device sync.
    """
    conf, labels = confidence.flatten().float(), pseudo.flatten()
    order = (labels.double() * 2 + conf.double()).argsort()  # grouped by class, confidence ascending
    sorted_conf = conf[order]
    counts = torch.zeros(num_classes, dtype=torch.long, device=conf.device).index_add_(
        0, labels, torch.ones_like(labels))
    starts = torch.cumsum(counts, 0) - counts
    pick = starts + (quantile * (counts - 1).clamp_min(0).double()).floor().long()
    per_class = sorted_conf[pick.clamp(0, conf.numel() - 1)]
    per_class = per_class.clamp(max=threshold) if cap else per_class
    return torch.where(counts > 0, per_class, torch.full_like(per_class, threshold))
