"""Reading and resizing images and label maps with OpenCV (1.6x PIL's PNG decode on a 1914×1052 GTA5 frame).

Arrays are uint8, RGB, (H, W, 3); label maps uint8 (H, W). Sizes are (width, height), as in the config.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

cv2.setNumThreads(1)  # loader workers are processes already; OpenCV's own threads would oversubscribe the cores


def read_rgb(path: Path | str) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB; ValueError naming the file when it does not decode."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"{path}: image does not decode")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Area averaging when shrinking (no aliasing), bilinear when enlarging."""
    if (image.shape[1], image.shape[0]) == tuple(size):
        return image
    shrink = size[0] < image.shape[1]
    return cv2.resize(image, tuple(size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def resize_label(label: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest neighbour: class ids are not averaged."""
    if (label.shape[1], label.shape[0]) == tuple(size):
        return label
    return cv2.resize(label, tuple(size), interpolation=cv2.INTER_NEAREST)
