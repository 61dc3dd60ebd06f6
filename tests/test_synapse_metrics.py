"""DSC, ASD (in voxels and in mm) and HD95 equal medpy's, on random masks and on DHC's absent-organ cases."""

from __future__ import annotations

import numpy as np
import pytest
from medpy.metric import binary

from stages.synapse.metrics import MISSING_ASD, asd, dice, hd95, organ_scores

SPACING = (3.0, 0.76 * 2, 0.76 * 2)  # D×H×W of a CT evaluated on the in-plane halved grid


def blobs(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two overlapping random masks of irregular shape."""
    from scipy.ndimage import binary_dilation

    rng = np.random.default_rng(seed)
    a = binary_dilation(rng.random((12, 20, 20)) > 0.97, iterations=2)
    b = binary_dilation(rng.random((12, 20, 20)) > 0.97, iterations=2) | a & (rng.random(a.shape) > 0.5)
    return a, b


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scores_equal_medpys_on_random_masks(seed):
    a, b = blobs(seed)
    assert dice(a, b) == pytest.approx(binary.dc(a, b))
    assert asd(a, b) == pytest.approx(binary.asd(a, b))
    assert asd(a, b, SPACING) == pytest.approx(binary.asd(a, b, voxelspacing=SPACING))
    assert hd95(a, b, SPACING) == pytest.approx(binary.hd95(a, b, voxelspacing=SPACING))
    assert hd95(b, a) == pytest.approx(binary.hd95(b, a))


def test_an_organ_on_one_side_only_and_on_neither_follow_dhcs_rules():
    pred, label = np.zeros((6, 8, 8), np.uint8), np.zeros((6, 8, 8), np.uint8)
    label[2:4, 2:5, 2:5] = 7
    one_sided = organ_scores(pred, label, 7, SPACING)
    assert (one_sided.dsc, one_sided.asd) == (0.0, MISSING_ASD) and np.isnan(one_sided.hd95_mm)
    assert binary.dc(pred == 7, label == 7) == 0.0  # medpy agrees on the DSC; its ASD raises on an empty mask
    with pytest.raises(RuntimeError):
        binary.asd(pred == 7, label == 7)
    assert organ_scores(pred, pred, 7, SPACING) == (1.0, 0.0, 0.0, 0.0)
    pred[2:4, 2:5, 3:6] = 7
    both = organ_scores(pred, label, 7, SPACING)
    assert both == pytest.approx((binary.dc(pred == 7, label == 7), binary.asd(pred == 7, label == 7),
                                  binary.asd(pred == 7, label == 7, voxelspacing=SPACING),
                                  binary.hd95(pred == 7, label == 7, voxelspacing=SPACING)))
