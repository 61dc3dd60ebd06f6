"""Demo volumes for the volumetric task: CT-like abdomens written in Synapse's released NIfTI layout.

Each case is a body (soft tissue in air) holding 13 organ-like bodies at roughly anatomical places, with sizes
that follow Synapse's imbalance: one large liver, a stomach and spleen, two kidneys, vessels as tubes along the
depth (aorta, inferior vena cava, portal & splenic veins, esophagus), a pancreas, a gallbladder, and two tiny
adrenal glands; the kidneys and adrenal glands lie in retroperitoneal fat, which outlines them as in CT (without
it the adrenal glands had the HU of the tissue around them, and no method learnt them: docs/BENCHMARKS.md).
Intensities are HU-like (organs 20–200 HU, close to each other as in CT), jittered per case, with Gaussian noise.
Case ids are Synapse's (GenericSSL's split lists), so the shipped split serves the demo.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stages.synapse.cases import write_nifti

# organ id: (centre (z, y, x) as fractions of the volume, radii (z, y, x) as fractions, HU)
ORGANS: dict[int, tuple[tuple[float, float, float], tuple[float, float, float], float]] = {
    6: ((0.45, 0.45, 0.30), (0.30, 0.20, 0.17), 60.0),  # liver (image left = patient right)
    7: ((0.45, 0.40, 0.66), (0.18, 0.11, 0.10), 25.0),  # stomach
    1: ((0.45, 0.60, 0.76), (0.15, 0.08, 0.06), 45.0),  # spleen
    2: ((0.60, 0.66, 0.34), (0.12, 0.06, 0.045), 150.0),  # right kidney
    3: ((0.60, 0.66, 0.66), (0.12, 0.06, 0.045), 150.0),  # left kidney
    11: ((0.55, 0.52, 0.54), (0.07, 0.035, 0.10), 100.0),  # pancreas
    4: ((0.55, 0.38, 0.38), (0.07, 0.035, 0.035), 10.0),  # gallbladder
    12: ((0.38, 0.58, 0.35), (0.06, 0.03, 0.03), 35.0),  # right adrenal gland
    13: ((0.38, 0.58, 0.65), (0.06, 0.027, 0.027), 35.0),  # left adrenal gland
}
# organs in retroperitoneal fat (within Gerota's fascia: the kidneys and adrenal glands), whose outline in CT is
# the fat around them: each in a fat ellipsoid of FAT_MARGIN × its radii (background), cut into its neighbours
FAT_WRAPPED, FAT_MARGIN = (2, 3, 12, 13), 1.8
# vessels: organ id: ((y, x) centre as fractions, radius as a fraction of the width, z range, HU)
TUBES: dict[int, tuple[tuple[float, float], float, tuple[float, float], float]] = {
    8: ((0.62, 0.52), 0.030, (0.0, 1.0), 200.0),  # aorta
    9: ((0.60, 0.44), 0.028, (0.0, 1.0), 160.0),  # inferior vena cava
    10: ((0.50, 0.48), 0.015, (0.30, 0.70), 180.0),  # portal & splenic veins
    5: ((0.58, 0.50), 0.022, (0.0, 0.30), 50.0),  # esophagus
}


def _grid(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d, h, w = shape
    return np.meshgrid(np.linspace(0, 1, d), np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")


def make_case(shape: tuple[int, int, int], rng: np.random.Generator, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """(HU image float32, labels uint8), both D×H×W."""
    z, y, x = _grid(shape)
    image = np.full(shape, -1000.0, dtype=np.float32)  # air
    body = ((y - 0.5) / 0.42) ** 2 + ((x - 0.5) / 0.46) ** 2 <= 1
    image[body] = -100.0 + rng.normal(0, 10)  # fat
    inner = ((y - 0.52) / 0.36) ** 2 + ((x - 0.5) / 0.40) ** 2 <= 1
    image[inner] = 35.0 + rng.normal(0, 5)  # muscle and bowel around the organs
    label = np.zeros(shape, dtype=np.uint8)
    placed = {organ: (np.array(centre) + rng.normal(0, 0.02, 3), np.array(radii) * rng.uniform(0.85, 1.15, 3), hu)
              for organ, (centre, radii, hu) in ORGANS.items()}

    def ellipsoid(c: np.ndarray, r: np.ndarray) -> np.ndarray:
        return ((z - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((x - c[2]) / r[2]) ** 2 <= 1

    for organ, (c, r, hu) in placed.items():  # the organs outside the fat first, so that the fat cuts into them
        if organ not in FAT_WRAPPED:
            inside = ellipsoid(c, r)
            label[inside], image[inside] = organ, hu + rng.normal(0, 8)
    for organ in FAT_WRAPPED:
        fat = ellipsoid(placed[organ][0], FAT_MARGIN * placed[organ][1])
        label[fat], image[fat] = 0, -90.0 + rng.normal(0, 8)
    for organ in FAT_WRAPPED:
        c, r, hu = placed[organ]
        inside = ellipsoid(c, r)
        label[inside], image[inside] = organ, hu + rng.normal(0, 8)
    for organ, ((cy, cx), radius, (z0, z1), hu) in TUBES.items():
        cy, cx = cy + rng.normal(0, 0.01), cx + rng.normal(0, 0.01)
        bend = 0.03 * np.sin(2 * np.pi * z + rng.uniform(0, 2 * np.pi))  # a vessel wanders along the depth
        inside = (((y - cy) ** 2 + (x - cx - bend) ** 2) <= (radius * rng.uniform(0.9, 1.1)) ** 2) & (z >= z0) & (z <= z1)
        label[inside], image[inside] = organ, hu + rng.normal(0, 8)
    image += rng.normal(0, noise, shape).astype(np.float32)
    return image, label


def smooth_field(shape: tuple[int, int, int], rng: np.random.Generator, sigma: float) -> np.ndarray:
    """A smooth random field in [-1, 1]: Gaussian-filtered noise, scaled to its largest magnitude."""
    from scipy.ndimage import gaussian_filter

    field = gaussian_filter(rng.normal(0, 1, shape), sigma)
    return (field / (np.abs(field).max() + 1e-8)).astype(np.float32)


def drift(image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The ``drift`` variant, written without regard to any method's result: each case's pose (in-plane rotation up
    to ±15°, shift up to ±6 %), its organs bent out of their ellipsoids by a smooth displacement of up to 3 voxels,
    and its intensities drifted (a case offset of N(0, 15) HU and a smooth ±10 % bias field)."""
    from scipy.ndimage import map_coordinates

    d, h, w = image.shape
    zz, yy, xx = np.meshgrid(np.arange(d), np.arange(h), np.arange(w), indexing="ij")
    angle, shift = np.deg2rad(rng.uniform(-15, 15)), rng.uniform(-0.06, 0.06, 2) * (h, w)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    sy = cy + (yy - cy) * np.cos(angle) - (xx - cx) * np.sin(angle) - shift[0] + 3 * smooth_field(image.shape, rng, 4)
    sx = cx + (yy - cy) * np.sin(angle) + (xx - cx) * np.cos(angle) - shift[1] + 3 * smooth_field(image.shape, rng, 4)
    coords = np.stack([zz, sy, sx])
    moved = map_coordinates(image, coords, order=1, mode="constant", cval=-1000.0)
    labels = map_coordinates(label, coords, order=0, mode="constant", cval=0).astype(np.uint8)
    bias = 1 + 0.1 * smooth_field(image.shape, rng, 8)
    body = moved > -500
    moved[body] = moved[body] * bias[body] + rng.normal(0, 15)
    return moved.astype(np.float32), labels


VARIANTS = {"default": None, "drift": drift}  # volumes.demo.variant


def generate(root: Path, case_ids: list[str], shape: tuple[int, int, int], seed: int, noise: float,
             variant: str = "default") -> Path:
    """Write every case under ``root`` (imagesTr/, labelsTr/); cases already written are kept. A variant reshapes
    each case after it is made, from a generator of its own (the default cases are the same with or without)."""
    root = Path(root)
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    for case_id in case_ids:
        image_path, label_path = root / "imagesTr" / f"img{case_id}.nii.gz", root / "labelsTr" / f"label{case_id}.nii.gz"
        if image_path.exists() and label_path.exists():
            continue
        rng = np.random.default_rng([seed, int(case_id)])
        image, label = make_case(shape, rng, noise)
        if VARIANTS[variant] is not None:
            image, label = VARIANTS[variant](image, label, np.random.default_rng([seed, int(case_id), 1]))
        write_nifti(label_path, label)
        write_nifti(image_path, image.astype(np.int16))
    return root
