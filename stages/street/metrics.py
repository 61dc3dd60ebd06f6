"""The numbers users publish: confusion counts, per-class IoU and mIoU over the 19/16/13-class sets.

As the Cityscapes scripts do, a class with no pixel in the ground truth *and* none predicted has no IoU
(NaN) and is left out of the mean; a class absent from the ground truth but predicted somewhere scores 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from stages.street.datasets import CLASS_SETS, IGNORE


def confusion(pred: np.ndarray, label: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) counts, rows = ground truth, columns = prediction; ignored pixels left out."""
    valid = label != IGNORE
    idx = label[valid].astype(np.int64) * num_classes + pred[valid].astype(np.int64)
    return np.bincount(idx, minlength=num_classes**2).reshape(num_classes, num_classes)


def iou_per_class(conf: np.ndarray) -> np.ndarray:
    """IoU = TP / (TP + FP + FN) per class; NaN for a class absent from both labels and predictions."""
    tp = np.diag(conf).astype(np.float64)
    denom = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, tp / denom, np.nan)


def miou(iou: np.ndarray, class_set: int | Sequence[int]) -> float:
    """Mean IoU over a class set — Cityscapes' 19, 16 or 13, or the class ids of a task's subset — classes with
    no pixel anywhere left out."""
    values = iou[list(CLASS_SETS[class_set] if isinstance(class_set, int) else class_set)]
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
