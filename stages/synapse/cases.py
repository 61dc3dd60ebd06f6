"""CT volumes of the volumetric task: Synapse's layouts, reading, checks and DHC's preprocessing.

Layouts of a Synapse root (``LAYOUTS``; ``auto`` takes the first that is there):
- the download (``raw``): ``RawData/Training/img/img00XX.nii.gz`` and ``RawData/Training/label/label00XX.nii.gz``
  (``root`` the folder holding ``RawData/``, ``RawData/`` itself, or ``Training/``), read with nibabel;
- renamed (``nifti``): ``imagesTr/img00XX.nii.gz`` and ``labelsTr/label00XX.nii.gz`` (MONAI's model zoo, DHC's
  ``code/data/preprocess.py``);
- DHC's arrays (``npy``): ``npy/00XX_image.npy`` and ``npy/00XX_label.npy`` (as DHC writes them; or directly in
  the root), Hounsfield units on the volume's grid.

Arrays are D×H×W as DHC has them (SimpleITK's z, y, x order: nibabel's x, y, z transposed). Preprocessing, as
DHC: intensities clipped to the HU window [−75, 275] and scaled to [0, 1] by the volume's own min and max, then
the in-plane size halved (trilinear for the image, nearest for the labels), depth kept. Labels are 0..13.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

NUM_LABELS = 14  # background + 13 organs
VOLUMES = "volumes"  # the preprocessed arrays, under the ingest stage's directory


@dataclass(frozen=True)
class Case:
    case_id: str  # "0009"
    split: str  # train | val | test
    image_path: Path
    label_path: Path


@dataclass(frozen=True)
class Layout:
    """Where a layout keeps its cases: the folders under the root it may start at (first found wins), and the
    image and label file of a case relative to that folder."""

    bases: tuple[str, ...]
    probe: str  # a folder (or file pattern) that marks the layout under a base
    image: str  # with {case}
    label: str


LAYOUTS = {
    "raw": Layout(("RawData/Training", "Training", "."), "img", "img/img{case}.nii.gz", "label/label{case}.nii.gz"),
    "nifti": Layout((".",), "imagesTr", "imagesTr/img{case}.nii.gz", "labelsTr/label{case}.nii.gz"),
    "npy": Layout(("npy", "."), "*_image.npy", "{case}_image.npy", "{case}_label.npy"),
}


def layout_base(root: Path, layout: str) -> Path | None:
    """The folder under ``root`` that holds ``layout``'s files, or None."""
    spec = LAYOUTS[layout]
    for base in spec.bases:
        folder = Path(root) / base
        if (folder / spec.probe).is_dir() or (folder.is_dir() and any(folder.glob(spec.probe))):
            return folder
    return None


def detect_layout(root: Path, layout: str) -> str:
    """``layout``, or with ``auto`` the first of ``LAYOUTS`` found under ``root``; an error listing every place
    looked at when none is there."""
    for name in LAYOUTS if layout == "auto" else (layout,):
        if layout_base(root, name) is not None:
            return name
    looked = "; ".join(f"{name}: {', '.join(str(Path(root) / b / LAYOUTS[name].probe) for b in LAYOUTS[name].bases)}"
                       for name in (LAYOUTS if layout == "auto" else (layout,)))
    raise FileNotFoundError(f"no Synapse layout under {root} (looked for {looked})")


def case_files(root: Path, case_id: str, layout: str) -> tuple[Path, Path]:
    base, spec = layout_base(root, layout) or Path(root), LAYOUTS[layout]
    return base / spec.image.format(case=case_id), base / spec.label.format(case=case_id)


def read_split_lists(folder: Path) -> dict[str, list[str]]:
    """{train, val, test: case ids} from ``train.txt``, ``eval.txt``, ``test.txt`` (GenericSSL's names)."""
    lists = {}
    for split, name in (("train", "train.txt"), ("val", "eval.txt"), ("test", "test.txt")):
        path = Path(folder) / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing (a split folder holds train.txt, eval.txt and test.txt)")
        lists[split] = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return lists


def list_cases(root: Path, layout: str, splits: dict[str, list[str]]) -> list[Case]:
    return [Case(c, split, *case_files(root, c, layout)) for split, ids in splits.items() for c in ids]


def read_array(path: Path) -> np.ndarray:
    """A volume as D×H×W: NIfTI (x, y, z on disk) transposed to z, y, x; npy as stored."""
    path = Path(path)
    if path.name.endswith((".nii", ".nii.gz")):
        import nibabel as nib

        return np.asarray(nib.load(str(path)).dataobj).transpose(2, 1, 0)
    return np.load(path, allow_pickle=False)


def check_case(case: Case) -> tuple[tuple[int, int, int], np.ndarray, np.ndarray] | str:
    """(shape, image, label) of a usable case, or the reason to reject it."""
    for kind, path in (("image", case.image_path), ("label", case.label_path)):
        if not path.is_file():
            return f"missing {kind} file {path}"
    try:
        image = read_array(case.image_path)
    except Exception as err:  # nibabel and numpy raise many kinds; any means the file is unusable
        return f"image does not read ({type(err).__name__}: {str(err)[:80]})"
    try:
        label = read_array(case.label_path)
    except Exception as err:
        return f"label does not read ({type(err).__name__}: {str(err)[:80]})"
    if image.ndim != 3:
        return f"image has {image.ndim} dimensions, not 3"
    if label.shape != image.shape:
        return f"label shape {label.shape} differs from image shape {image.shape}"
    if not np.all(np.isfinite(image)):
        return "image holds NaN or infinite values"
    if np.any(label != np.round(label)) or label.min() < 0 or label.max() >= NUM_LABELS:
        return f"label values outside 0..{NUM_LABELS - 1} (min {label.min()}, max {label.max()})"
    return image.shape, image, label


def window(image: np.ndarray, hu: tuple[float, float]) -> np.ndarray:
    """Clip to the HU window and scale to [0, 1] by the clipped volume's min and max (DHC's ``read_data``)."""
    clipped = np.clip(image.astype(np.float32), hu[0], hu[1])
    lo, hi = float(clipped.min()), float(clipped.max())
    return (clipped - lo) / (hi - lo) if hi > lo else np.zeros_like(clipped)


def halve(image: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """In-plane size halved (H // 2, W // 2), depth kept: trilinear for the image, nearest for the labels."""
    import torch
    import torch.nn.functional as F

    d, h, w = image.shape
    size = (d, h // 2, w // 2)
    img = F.interpolate(torch.from_numpy(image)[None, None], size=size, mode="trilinear", align_corners=False)
    lab = F.interpolate(torch.from_numpy(label.astype(np.float32))[None, None], size=size, mode="nearest")
    return img[0, 0].numpy(), lab[0, 0].numpy().astype(np.uint8)


def preprocess(image: np.ndarray, label: np.ndarray, hu: tuple[float, float], halve_plane: bool
               ) -> tuple[np.ndarray, np.ndarray]:
    """DHC's preprocessing: the HU window, then (``halve_plane``) the in-plane halving."""
    image, label = window(image, hu), label.astype(np.uint8)
    return halve(image, label) if halve_plane else (image, label)


def write_nifti(path: Path, volume: np.ndarray) -> None:
    """D×H×W written as NIfTI's x, y, z (as the released Synapse files are), whole or not at all."""
    import gzip

    import nibabel as nib

    from pipeline.store import write_atomic

    path = Path(path)
    data = nib.Nifti1Image(np.ascontiguousarray(volume.transpose(2, 1, 0)), np.eye(4)).to_bytes()
    write_atomic(path, lambda tmp: tmp.write_bytes(gzip.compress(data, compresslevel=1) if path.name.endswith(".gz")
                                                   else data))


def load_case(ingest_dir: Path, case_id: str) -> tuple[np.ndarray, np.ndarray]:
    """A case's preprocessed (image, label) as ingest wrote them, memory-mapped."""
    folder = Path(ingest_dir) / VOLUMES
    return (np.load(folder / f"{case_id}_image.npy", mmap_mode="r"),
            np.load(folder / f"{case_id}_label.npy", mmap_mode="r"))


@dataclass(frozen=True)
class Geometry:
    """A case's original grid: its shape and voxel size (D×H×W, mm) and, for NIfTI, its affine and header."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float] | None  # None: npy arrays carry no voxel size
    affine: np.ndarray
    header: object | None


def geometry(path: Path) -> Geometry:
    """The original grid of a case's image file (NIfTI header; npy: its shape alone, identity affine)."""
    path = Path(path)
    if not path.name.endswith((".nii", ".nii.gz")):
        shape = tuple(int(n) for n in np.load(path, mmap_mode="r").shape)
        return Geometry(shape, None, np.eye(4), None)
    import nibabel as nib

    image = nib.load(str(path))
    x, y, z = (float(v) for v in image.header.get_zooms()[:3])
    nx, ny, nz = image.shape[:3]
    return Geometry((nz, ny, nx), (z, y, x), image.affine, image.header)


def evaluated_spacing(geo: Geometry, evaluated: tuple[int, ...]) -> tuple[float, float, float] | None:
    """The voxel size of the evaluated grid (in-plane halved: twice the original's), D×H×W in mm."""
    if geo.spacing is None:
        return None
    return tuple(s * o / e for s, o, e in zip(geo.spacing, geo.shape, evaluated, strict=True))


def write_prediction(pred: np.ndarray, geo: Geometry, path: Path) -> None:
    """Labels of the evaluated grid brought back to the case's original grid (nearest neighbour, the inverse of
    the halving) and written with the source image's affine and header: they overlay on the CT in 3D Slicer or
    ITK-SNAP."""
    import gzip

    import nibabel as nib
    import torch
    import torch.nn.functional as F

    from pipeline.store import write_atomic

    if tuple(pred.shape) != geo.shape:
        up = F.interpolate(torch.from_numpy(pred.astype(np.float32))[None, None], size=geo.shape, mode="nearest")
        pred = up[0, 0].numpy()
    header = geo.header.copy() if geo.header is not None else None
    image = nib.Nifti1Image(np.ascontiguousarray(pred.astype(np.uint8).transpose(2, 1, 0)), geo.affine, header)
    image.set_data_dtype(np.uint8)
    image.header.set_slope_inter(1, 0)
    data = image.to_bytes()
    write_atomic(Path(path), lambda tmp: tmp.write_bytes(gzip.compress(data, compresslevel=1)))
