"""DSC, ASD and HD95 of 3D segmentations, as medpy defines them and DHC applies them (``evaluate_Ntimes.py``).

- ``dice(a, b)`` = 2|A ∩ B| / (|A| + |B|) (medpy ``binary.dc``; 0 when both are empty).
- ``asd(a, b, spacing)``: medpy ``binary.asd``, one-way: the mean, over the surface voxels of ``a``, of the
  Euclidean distance to the nearest surface voxel of ``b``; a surface voxel is a foreground voxel that a
  6-connected erosion removes (the volume's edge counts as background); in voxels of the evaluated grid (DHC's
  figure), or in millimetres with the voxel ``spacing``.
- ``hd95(a, b, spacing)``: medpy ``binary.hd95``: the 95th percentile of the surface distances both ways.

Per case and organ, DHC's rules for an organ missing from the prediction or the ground truth:
both present → DSC and ASD as above; present in one only → DSC 0, ASD 128; absent from both → DSC 100 %
and ASD 0. The millimetre ASD and HD95 have no such rule in DHC: where an organ is in one only they are NaN (left
out of the means), where it is in neither 0. (DHC's code writes 1 there on its 0-100 scale, i.e. 1 %; we write 100 %, the value the rule
means. An organ absent from both is rare in Synapse, where the test cases show all 13.) Means: over cases per
organ, then over organs.
"""

from __future__ import annotations

from typing import NamedTuple

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


def surface_distances(a: np.ndarray, b: np.ndarray, spacing: tuple[float, ...] | None = None) -> np.ndarray:
    """From each surface voxel of ``a`` the distance to the nearest surface voxel of ``b`` (both non-empty)."""
    from scipy.ndimage import distance_transform_edt

    if not a.any() or not b.any():
        raise ValueError("surface distances: both masks must hold a foreground voxel")
    return distance_transform_edt(~surface(b), sampling=spacing)[surface(a)]


def asd(a: np.ndarray, b: np.ndarray, spacing: tuple[float, ...] | None = None) -> float:
    """Mean distance from ``a``'s surface to ``b``'s, in voxels (or in the units of ``spacing``)."""
    return float(surface_distances(a, b, spacing).mean())


def hd95(a: np.ndarray, b: np.ndarray, spacing: tuple[float, ...] | None = None) -> float:
    """The 95th percentile of the surface distances from ``a`` to ``b`` and from ``b`` to ``a``."""
    return float(np.percentile(np.hstack((surface_distances(a, b, spacing), surface_distances(b, a, spacing))), 95))


class OrganScore(NamedTuple):
    dsc: float  # in [0, 1]
    asd: float  # voxels of the evaluated grid (DHC's)
    asd_mm: float = float("nan")
    hd95_mm: float = float("nan")


def organ_scores(pred: np.ndarray, label: np.ndarray, organ: int, spacing: tuple[float, ...] | None = None
                 ) -> OrganScore:
    """DSC, ASD in voxels, and with ``spacing`` (mm per voxel, D×H×W) ASD and HD95 in mm, of one organ in one
    case, by DHC's rules."""
    p, g = pred == organ, label == organ
    if p.any() and g.any():
        mm = (asd(p, g, spacing), hd95(p, g, spacing)) if spacing is not None else ()
        return OrganScore(dice(p, g), asd(p, g), *mm)
    if p.any() or g.any():
        return OrganScore(0.0, MISSING_ASD)
    return OrganScore(1.0, 0.0, *((0.0, 0.0) if spacing is not None else ()))


def case_scores(pred: np.ndarray, label: np.ndarray, organs: tuple[int, ...],
                spacing: tuple[float, ...] | None = None) -> dict[int, OrganScore]:
    return {o: organ_scores(pred, label, o, spacing) for o in organs}


def summarise(per_case: dict[str, dict[int, tuple[float, ...]]], organs: tuple[int, ...]
              ) -> tuple[dict[int, OrganScore], float, float]:
    """Per organ the mean of each score over the cases (NaN left out), and the means of DSC and ASD over the
    organs."""
    per_organ = {o: OrganScore(*(_mean([OrganScore(*c[o])[k] for c in per_case.values()]) for k in range(4)))
                 for o in organs}
    return per_organ, float(np.mean([v.dsc for v in per_organ.values()])), \
        float(np.mean([v.asd for v in per_organ.values()]))


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not np.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")
