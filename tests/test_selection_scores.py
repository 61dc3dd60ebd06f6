"""The scores and sets behind `select` (issue 37): RIPU's region score against a direct computation of its
definition, and k-centre greedy, k-means and the mixed strategy on points whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import torch

from models.selection import entropy_map, image_score, k_centre, kmeans, mixed, ripu_map


def ripu_by_loops(logits: torch.Tensor, radius: int) -> np.ndarray:
    """RIPU's score by its definition, pixel by pixel: over the window inside the image, the entropy of the
    predicted-class histogram times the mean pixel entropy, each over log C."""
    c, h, w = logits.shape
    p = logits.softmax(0).numpy()
    pixel = -(p * np.log(p + 1e-6)).sum(0) / math.log(c)
    pred = p.argmax(0)
    out = np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            ys, xs = slice(max(y - radius, 0), y + radius + 1), slice(max(x - radius, 0), x + radius + 1)
            share = np.bincount(pred[ys, xs].ravel(), minlength=c) / pred[ys, xs].size
            impurity = -(share * np.log(share + 1e-6)).sum() / math.log(c)
            out[y, x] = impurity * pixel[ys, xs].mean()
    return out


def test_ripu_map_is_the_definition():
    logits = torch.randn(5, 9, 11, generator=torch.Generator().manual_seed(0)) * 3
    for radius in (1, 2):
        np.testing.assert_allclose(ripu_map(logits.softmax(0), radius).numpy(), ripu_by_loops(logits, radius), atol=1e-5)


def test_a_pure_certain_image_scores_zero_and_a_mixed_uncertain_one_scores_higher():
    certain = torch.zeros(4, 8, 8)
    certain[2] = 20.0
    certain = certain.softmax(0)
    assert image_score(certain) < 1e-4 and float(entropy_map(certain).max()) < 1e-4
    stripes = torch.zeros(4, 8, 8)
    stripes[0, :, ::2], stripes[1, :, 1::2] = 1.0, 1.0  # alternating classes, each at low confidence
    stripes = stripes.softmax(0)
    assert image_score(stripes) > 0.2 and image_score(stripes, "entropy") > image_score(stripes)


def test_k_centre_covers_the_clusters_and_skips_the_chosen():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], float)
    points = np.concatenate([c + rng.normal(0, 0.3, (5, 2)) for c in centres])
    picked = k_centre(points, 4)
    assert sorted(i // 5 for i in picked) == [0, 1, 2, 3]
    more = k_centre(points, 3, chosen=[0, 5])  # clusters 0 and 1 already labelled
    assert {i // 5 for i in more[:2]} == {2, 3} and not {0, 5} & set(more)


def test_kmeans_and_mixed_take_the_most_uncertain_of_each_cluster():
    rng = np.random.default_rng(1)
    points = np.concatenate([c + rng.normal(0, 0.2, (6, 2)) for c in ([0, 0], [8, 0], [0, 8])])
    assign = kmeans(points, 3)
    assert len(set(assign)) == 3 and all(len(set(assign[k * 6:(k + 1) * 6])) == 1 for k in range(3))
    scores = rng.random(18)
    chosen = mixed(points, scores, 3)
    assert sorted(chosen) == sorted(int(np.argmax(scores[k * 6:(k + 1) * 6])) + 6 * k for k in range(3))
