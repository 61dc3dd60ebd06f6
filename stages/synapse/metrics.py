"""DSC and ASD of 3D segmentations, as medpy defines them and DHC applies them (``evaluate_Ntimes.py``).

- ``dice(a, b)`` = 2|A ∩ B| / (|A| + |B|) (medpy ``binary.dc``; 0 when both are empty).
- ``asd(a, b)``: medpy ``binary.asd``, one-way: the mean, over the surface voxels of ``a``, of the Euclidean
  distance to the nearest surface voxel of ``b``; a surface voxel is a foreground voxel that a 6-connected
  erosion removes (the volume's edge counts as background); distances in voxels of the evaluated grid.

Per case and organ, DHC's rules for an organ missing from the prediction or the ground truth:
both present → DSC and ASD as above; present in one only → DSC 0, ASD 128; absent from both → DSC 100 %
and ASD 0. (DHC's code writes 1 there on its 0-100 scale, i.e. 1 %; we write 100 %, the value the rule
means. An organ absent from both is rare in Synapse, where the test cases show all 13.) Means: over cases per
organ, then over organs.
"""

from __future__ import annotations

import numpy as np

MISSING_ASD = 128.0  # DHC's ASD for an organ present in only one of prediction and ground truth


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    total = int(a.sum()) + int(b.sum())
    return 2.0 * int(np.logical_and(a, b).sum()) / total if total else 0.0


def surface(mask: np.ndarray) -> np.ndarray:
    from scipy.ndimage import binary_erosion, generate_binary_structure

    mask = mask.astype(bool)
    return mask ^ binary_erosion(mask, structure=generate_binary_structure(mask.ndim, 1), iterations=1)


def asd(a: np.ndarray, b: np.ndarray) -> float:
    """Mean distance from ``a``'s surface to ``b``'s (both non-empty), in voxels."""
    from scipy.ndimage import distance_transform_edt

    if not a.any() or not b.any():
        raise ValueError("asd: both masks must hold a foreground voxel")
    return float(distance_transform_edt(~surface(b))[surface(a)].mean())


def organ_scores(pred: np.ndarray, label: np.ndarray, organ: int) -> tuple[float, float]:
    """(DSC in [0, 1], ASD in voxels) of one organ in one case, by DHC's rules."""
    p, g = pred == organ, label == organ
    if p.any() and g.any():
        return dice(p, g), asd(p, g)
    if p.any() or g.any():
        return 0.0, MISSING_ASD
    return 1.0, 0.0


def case_scores(pred: np.ndarray, label: np.ndarray, organs: tuple[int, ...]) -> dict[int, tuple[float, float]]:
    return {o: organ_scores(pred, label, o) for o in organs}


def summarise(per_case: dict[str, dict[int, tuple[float, float]]], organs: tuple[int, ...]
              ) -> tuple[dict[int, tuple[float, float]], float, float]:
    """Per organ (mean DSC, mean ASD) over the cases, and the mean of those over the organs."""
    per_organ = {o: (float(np.mean([c[o][0] for c in per_case.values()])),
                     float(np.mean([c[o][1] for c in per_case.values()]))) for o in organs}
    return per_organ, float(np.mean([v[0] for v in per_organ.values()])), \
        float(np.mean([v[1] for v in per_organ.values()]))
