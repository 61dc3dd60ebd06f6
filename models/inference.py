"""The street model's inference: class probabilities for an image of any size from a model trained on crops
(``models.sliding``'s windows)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from models.sliding import sliding_window
from models.street.preprocess import normalize
from models.street.segmentor import Segmentor


@torch.no_grad()
def predict(model: Segmentor, image: torch.Tensor, text: torch.Tensor, mask: torch.Tensor, crop: int,
            num_classes: int, sliding: bool = True) -> torch.Tensor:
    """Class probabilities (1, C, H, W) for one normalised image (1, 3, H, W); windows of ``crop`` with a
    stride of 2/3 of it, averaged where they overlap; an image smaller than a window is padded."""
    _, _, h, w = image.shape
    if not sliding or (h <= crop and w <= crop):
        return model(image, text, mask).logits.softmax(1)
    stride = max(crop * 2 // 3, 1)
    return sliding_window(lambda window: model(window, text, mask).logits.softmax(1), image, (crop, crop),
                          (stride, stride), num_classes)


def prob_map(model: Segmentor, image: np.ndarray, text: torch.Tensor, mask: torch.Tensor, crop: int,
             num_classes: int, sliding: bool) -> torch.Tensor:
    """(1, C, h, w) class probabilities for one (h, w, 3) uint8 RGB image, on the device of ``text``."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].to(text.device).float().div(255)
    return predict(model, normalize(x), text, mask, crop, num_classes, sliding)


def label_map(model: Segmentor, image: np.ndarray, text: torch.Tensor, mask: torch.Tensor, crop: int,
              num_classes: int, sliding: bool, size: tuple[int, int]) -> np.ndarray:
    """(H, W) uint8 class ids at ``size`` for one (h, w, 3) uint8 RGB image, on the device of ``text``:
    what evaluate and ``predict`` both ask of the model."""
    probs = prob_map(model, image, text, mask, crop, num_classes, sliding)
    probs = F.interpolate(probs, size=tuple(size), mode="bilinear", align_corners=False)
    return probs.argmax(1)[0].cpu().numpy().astype(np.uint8)
