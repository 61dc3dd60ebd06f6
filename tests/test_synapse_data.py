"""The synapse task reads Synapse as its users keep it: the download as it unpacks, the renamed imagesTr/ layout,
DHC's npy/ arrays; each told apart by ``auto``, and a root with none of them named with what was looked for."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import load_config
from pipeline.runner import run_pipeline
from pipeline.stage import StageError

CASES = {"train.txt": ["0005", "0006"], "eval.txt": ["0007"], "test.txt": ["0008"]}
AFFINE = np.diag([-0.76, -0.76, 3.0, 1.0])  # a real CT's header: flipped in-plane axes, 0.76×0.76×3 mm voxels


def ct_case(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """x, y, z arrays as on disk: int16 HU and uint8 labels 0..13."""
    image = rng.integers(-1000, 1000, (32, 32, 8)).astype(np.int16)
    label = np.zeros((32, 32, 8), dtype=np.uint8)
    label[8:20, 8:20, 2:6] = rng.integers(1, 14)
    return image, label


def write_layout(root, layout: str) -> None:
    import nibabel as nib

    rng = np.random.default_rng(0)
    for case in (c for ids in CASES.values() for c in ids):
        image, label = ct_case(rng)
        files = {"raw": (f"RawData/Training/img/img{case}.nii.gz", f"RawData/Training/label/label{case}.nii.gz"),
                 "nifti": (f"imagesTr/img{case}.nii.gz", f"labelsTr/label{case}.nii.gz"),
                 "npy": (f"npy/{case}_image.npy", f"npy/{case}_label.npy")}[layout]
        for rel, array in zip(files, (image, label), strict=True):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            if layout == "npy":
                np.save(root / rel, array.transpose(2, 1, 0))
            else:
                header = nib.Nifti1Header()
                header.set_data_dtype(array.dtype)
                nib.save(nib.Nifti1Image(array, AFFINE, header), str(root / rel))


def splits(folder):
    folder.mkdir()
    for name, ids in CASES.items():
        (folder / name).write_text("\n".join(ids) + "\n")
    return folder


def ingest(tmp_path, root):
    cfg = load_config("configs/synapse_demo.yaml", [
        "volumes.data.name=synapse", f"volumes.data.root={root}", f"volumes.data.splits={splits(tmp_path / 's')}",
        f"paths.workdir={tmp_path / 'w'}"])
    return run_pipeline(cfg, only=["ingest"])[0].record


@pytest.mark.parametrize(("layout", "root_at"), [("raw", ""), ("raw", "RawData"), ("nifti", ""), ("npy", "")])
def test_each_layout_is_found_by_auto_and_ingested(tmp_path, layout, root_at):
    write_layout(tmp_path / "data", layout)
    record = ingest(tmp_path, tmp_path / "data" / root_at)
    assert record.rows == 4 and record.details["layout"] == layout and record.details["rejected"] == 0
    import pyarrow.parquet as pq

    index = pq.read_table(next((tmp_path / "w" / "ingest").glob("*/index.parquet"))).to_pylist()
    assert {r["image_id"]: (r["depth"], r["height"], r["width"]) for r in index}["0008"] == (8, 16, 16)


def test_a_root_with_no_layout_lists_what_was_looked_for(tmp_path):
    (tmp_path / "data" / "scans").mkdir(parents=True)
    with pytest.raises(StageError) as info:
        ingest(tmp_path, tmp_path / "data")
    message = str(info.value)
    assert message.startswith("stage ingest failed") or "volumes.data.root: no Synapse layout" in message
    for looked in ("RawData/Training/img", "imagesTr", "npy/*_image.npy"):
        assert looked in message, message


def test_a_prediction_is_written_on_the_case_s_own_grid_with_its_affine(tmp_path):
    """Labels of the evaluated (in-plane halved) grid go back to the CT's own grid and header: read back with
    nibabel they have the source's shape and affine and lie voxel for voxel on its labels."""
    import nibabel as nib

    from stages.synapse.cases import evaluated_spacing, geometry, halve, read_array, write_prediction

    write_layout(tmp_path, "raw")
    image_file = tmp_path / "RawData/Training/img/img0005.nii.gz"
    label_file = tmp_path / "RawData/Training/label/label0005.nii.gz"
    geo = geometry(image_file)
    _, evaluated = halve(read_array(image_file).astype(np.float32), read_array(label_file))
    assert evaluated.shape == (8, 16, 16) and evaluated_spacing(geo, evaluated.shape) == pytest.approx((3.0, 1.52, 1.52))
    write_prediction(evaluated, geo, tmp_path / "pred.nii.gz")
    back, source = nib.load(str(tmp_path / "pred.nii.gz")), nib.load(str(image_file))
    assert back.shape == source.shape and np.allclose(back.affine, source.affine) and back.get_data_dtype() == np.uint8
    assert np.allclose(back.header.get_zooms(), source.header.get_zooms())
    assert np.array_equal(np.asarray(back.dataobj), np.asarray(nib.load(str(label_file)).dataobj))


def test_the_drift_variant_moves_bends_and_darkens_each_case_its_own_way(tmp_path):
    """``volumes.demo.variant: drift``: a case's pose, organ shapes and intensities changed from a generator of its
    own; the default cases are the same with or without it."""
    from stages.synapse.cases import read_array
    from stages.synapse.demo import generate

    default, drifted = generate(tmp_path / "a", ["0005", "0006"], (8, 48, 48), 0, 20.0), \
        generate(tmp_path / "b", ["0005", "0006"], (8, 48, 48), 0, 20.0, "drift")
    again = generate(tmp_path / "c", ["0005"], (8, 48, 48), 0, 20.0, "default")
    base = read_array(default / "labelsTr/label0005.nii.gz")
    assert np.array_equal(base, read_array(again / "labelsTr/label0005.nii.gz"))
    moved = read_array(drifted / "labelsTr/label0005.nii.gz")
    assert moved.shape == base.shape and set(np.unique(moved)) <= set(range(14)) and len(np.unique(moved)) >= 10
    assert (moved != base).mean() > 0.02  # another pose and shape
    other = read_array(drifted / "labelsTr/label0006.nii.gz")
    shift = lambda lab: np.argwhere(lab == 6).mean(0) - np.argwhere(read_array(  # noqa: E731
        default / f"labelsTr/label{'0005' if lab is moved else '0006'}.nii.gz") == 6).mean(0)
    assert not np.allclose(shift(moved), shift(other), atol=0.5)  # each case its own pose
