"""Sliding-window inference: class probabilities for an image of any size from a model trained on crops."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from models.street.preprocess import normalize
from models.street.segmentor import Segmentor


def sliding_windows(length: int, crop: int, stride: int) -> list[int]:
    """Window starts covering [0, length) with windows of ``crop`` (the last one flush with the end)."""
    if length <= crop:
        return [0]
    starts = list(range(0, length - crop, stride))
    return starts + [length - crop]


@torch.no_grad()
def predict(model: Segmentor, image: torch.Tensor, text: torch.Tensor, mask: torch.Tensor, crop: int,
            num_classes: int, sliding: bool = True) -> torch.Tensor:
    """Class probabilities (1, C, H, W) for one normalised image (1, 3, H, W); windows of ``crop`` with a
    stride of 2/3 of it, averaged where they overlap; an image smaller than a window is padded."""
    _, _, h, w = image.shape
    if not sliding or (h <= crop and w <= crop):
        return model(image, text, mask).logits.softmax(1)
    stride = max(crop * 2 // 3, 1)
    probs = image.new_zeros(1, num_classes, h, w)
    count = image.new_zeros(1, 1, h, w)
    ph, pw = max(crop - h, 0), max(crop - w, 0)
    padded = F.pad(image, (0, pw, 0, ph))
    for top in sliding_windows(h + ph, crop, stride):
        for left in sliding_windows(w + pw, crop, stride):
            window = padded[:, :, top:top + crop, left:left + crop]
            p = model(window, text, mask).logits.softmax(1)
            hh, ww = min(crop, h - top), min(crop, w - left)
            probs[:, :, top:top + hh, left:left + ww] += p[:, :, :hh, :ww]
            count[:, :, top:top + hh, left:left + ww] += 1
    return probs / count


def label_map(model: Segmentor, image: np.ndarray, text: torch.Tensor, mask: torch.Tensor, crop: int,
              num_classes: int, sliding: bool, size: tuple[int, int]) -> np.ndarray:
    """(H, W) uint8 class ids at ``size`` for one (h, w, 3) uint8 RGB image, on the device of ``text``:
    what evaluate and ``predict`` both ask of the model."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].to(text.device).float().div(255)
    probs = predict(model, normalize(x), text, mask, crop, num_classes, sliding)
    probs = F.interpolate(probs, size=tuple(size), mode="bilinear", align_corners=False)
    return probs.argmax(1)[0].cpu().numpy().astype(np.uint8)
