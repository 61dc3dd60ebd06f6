"""Which target images to label (issue 37): image scores from a model's prediction, and diverse sets over image
descriptors. Pure functions of tensors and arrays; the ``select`` command (``stages/street/select.py``) feeds them.

- ``ripu_map``: RIPU's region score (Xie et al., CVPR 2022; BIT-DA/RIPU ``FloatingRegionScore``): in the
  (2r+1)² window around each pixel, the impurity of the predicted classes (the entropy of their histogram) times
  the mean prediction entropy, both divided by log C; ``image_score`` averages it over the image (or averages the
  entropy alone).
- ``k_centre``: k-centre greedy (the core-set of Sener & Savarese, ICLR 2018): each next image the one farthest from
  every image already chosen, so the set covers the descriptors.
- ``mixed``: uncertainty within diversity: the images grouped into ``budget`` clusters (k-means seeded by
  k-centre), the most uncertain image of each.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def entropy_map(probs: torch.Tensor) -> torch.Tensor:
    """(C, H, W) class probabilities -> (H, W) prediction entropy divided by log C (0: certain, 1: uniform)."""
    p = probs.float()
    return -(p * torch.log(p + 1e-6)).sum(0) / math.log(probs.shape[0])


def ripu_map(probs: torch.Tensor, radius: int = 1) -> torch.Tensor:
    """(C, H, W) class probabilities -> (H, W) region impurity × region prediction uncertainty, each over the
    (2r+1)² window (pixels outside the image left out of the window, as RIPU's zero-padded counts)."""
    c, size = probs.shape[0], 2 * radius + 1
    one_hot = F.one_hot(probs.argmax(0), c).permute(2, 0, 1).float()[None]
    share = F.avg_pool2d(one_hot, size, 1, radius, count_include_pad=False)[0]  # class histogram / count
    impurity = -(share * torch.log(share + 1e-6)).sum(0) / math.log(c)
    uncertainty = F.avg_pool2d(entropy_map(probs)[None, None], size, 1, radius, count_include_pad=False)[0, 0]
    return impurity * uncertainty


def image_score(probs: torch.Tensor, kind: str = "ripu", radius: int = 1) -> float:
    """An image's score from its (C, H, W) class probabilities (higher: more worth labelling): the mean RIPU
    region score, or the mean entropy."""
    return float((ripu_map(probs, radius) if kind == "ripu" else entropy_map(probs)).mean())


def _distances(features: np.ndarray, centre: np.ndarray) -> np.ndarray:
    return np.linalg.norm(features - centre, axis=1)


def k_centre(features: np.ndarray, budget: int, chosen: list[int] | tuple[int, ...] = ()) -> list[int]:
    """``budget`` more row indices of ``features`` (N, D), each the farthest from all chosen so far (``chosen``:
    already labelled; with none, the first is the row nearest the mean). Deterministic."""
    features = np.asarray(features, dtype=np.float64)
    picked: list[int] = []
    nearest = np.full(len(features), np.inf)
    for i in chosen:
        nearest = np.minimum(nearest, _distances(features, features[i]))
    if not len(chosen):
        picked.append(int(np.argmin(_distances(features, features.mean(0)))))
        nearest = _distances(features, features[picked[0]])
    while len(picked) < budget:
        nearest[list(chosen) + picked] = -1.0
        i = int(np.argmax(nearest))
        picked.append(i)
        nearest = np.minimum(nearest, _distances(features, features[i]))
    return picked[:budget]


def squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) squared Euclidean distances between the rows of a and b, without an (N, M, D) array."""
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T, 0.0)


def kmeans(features: np.ndarray, k: int, iterations: int = 20) -> np.ndarray:
    """(N,) cluster of each row: Lloyd's k-means from k-centre seeds (deterministic)."""
    features = np.asarray(features, dtype=np.float64)
    centres = features[k_centre(features, k)]
    for _ in range(iterations):
        assign = np.argmin(squared_distances(features, centres), axis=1)
        moved = np.array([features[assign == j].mean(0) if (assign == j).any() else centres[j] for j in range(k)])
        if np.allclose(moved, centres):
            break
        centres = moved
    return np.argmin(squared_distances(features, centres), axis=1)


def mixed(features: np.ndarray, scores: np.ndarray, budget: int) -> list[int]:
    """The most uncertain row of each of ``budget`` clusters (by descending score)."""
    assign, scores = kmeans(features, budget), np.asarray(scores, dtype=np.float64)
    best = [int(np.flatnonzero(assign == j)[np.argmax(scores[assign == j])]) for j in range(budget)
            if (assign == j).any()]
    rest = [int(i) for i in np.argsort(-scores, kind="stable") if i not in best]  # an empty cluster: next best
    return sorted(best + rest[:budget - len(best)], key=lambda i: -scores[i])
