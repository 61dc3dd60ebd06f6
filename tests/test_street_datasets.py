"""ACDC and BDD100K read in the layouts they ship in (file names included), as source and as target; ACDC's
conditions selectable."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.config import ConfigError, load_config
from pipeline.runner import check_config, run_pipeline
from stages.street.datasets import load_label

ACDC_FRAMES = {"fog": ["GOPR0475_frame_000041", "GOPR0476_frame_000112"], "night": ["GOPR0351_frame_000159"],
               "rain": ["GOPR0400_frame_000003"], "snow": ["GP010122_frame_000047"]}


def label(rng) -> np.ndarray:
    mask = rng.integers(0, 19, (16, 32)).astype(np.uint8)
    mask[:2] = 255
    return mask


def acdc_root(root):
    rng = np.random.default_rng(0)
    for condition, frames in ACDC_FRAMES.items():
        for split in ("train", "val"):
            for stem in frames:
                sequence = stem.split("_frame")[0]
                image = root / "rgb_anon" / condition / split / sequence / f"{stem}_rgb_anon.png"
                gt = root / "gt" / condition / split / sequence / f"{stem}_gt_labelTrainIds.png"
                for path in (image, gt):
                    path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 255, (16, 32, 3), dtype=np.uint8)).save(image)
                Image.fromarray(label(rng)).save(gt)
    return root


def bdd_root(root):
    rng = np.random.default_rng(1)
    for split, names in (("train", ["0a0a0b1a-7c39d841", "0a0c3694-24b5193a"]), ("val", ["7d2f7975-e0c1c5a7"])):
        for name in names:
            image, mask = root / "images/10k" / split / f"{name}.jpg", root / "labels/sem_seg/masks" / split / f"{name}.png"
            for path in (image, mask):
                path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (16, 32, 3), dtype=np.uint8)).save(image, quality=90)
            Image.fromarray(label(rng)).save(mask)
    (root / "images/10k/test").mkdir(parents=True)  # the test frames have no mask: not read
    Image.fromarray(np.zeros((16, 32, 3), np.uint8)).save(root / "images/10k/test/ac6d4f42-00000000.jpg")
    return root


def ingest(tmp_path, source: str, target: str, *extra: str) -> list[dict]:
    roots = {"acdc": acdc_root(tmp_path / "acdc"), "bdd100k": bdd_root(tmp_path / "bdd")}
    cfg = check_config(load_config(None, [f"paths.workdir={tmp_path / 'w'}", f"data.source.name={source}",
                                          f"data.source.root={roots[source]}", f"data.target.name={target}",
                                          f"data.target.root={roots[target]}", "data.strict=true", *extra]))
    run_pipeline(cfg, only=["ingest"])
    return pq.read_table(next((tmp_path / "w" / "ingest").glob("*/index.parquet"))).to_pylist()


@pytest.mark.parametrize(("source", "target"), [("acdc", "bdd100k"), ("bdd100k", "acdc")])
def test_acdc_and_bdd100k_are_read_as_they_ship_in_either_role(tmp_path, source, target):
    rows = ingest(tmp_path, source, target)
    by_dataset = {d: [r for r in rows if r["dataset"] == d] for d in ("acdc", "bdd100k")}
    assert len(by_dataset["acdc"]) == 2 * 5 and len(by_dataset["bdd100k"]) == 3  # BDD's test frame left out
    assert {r["domain"] for r in by_dataset[source]} == {"source"} and {r["domain"] for r in by_dataset[target]} == \
        {"target"}
    acdc = next(r for r in by_dataset["acdc"] if r["image_id"] == "acdc/val/GOPR0351_frame_000159")
    assert acdc["label_path"] == "gt/night/val/GOPR0351/GOPR0351_frame_000159_gt_labelTrainIds.png"
    bdd = next(r for r in by_dataset["bdd100k"] if r["split"] == "val")
    assert bdd["image_path"] == "images/10k/val/7d2f7975-e0c1c5a7.jpg"
    written = np.asarray(Image.open(tmp_path / "bdd" / "labels/sem_seg/masks/val/7d2f7975-e0c1c5a7.png"))
    assert np.array_equal(load_label(tmp_path / "bdd" / bdd["label_path"], "bdd100k"), written)  # trainIds as stored


def test_acdc_conditions_are_selectable(tmp_path):
    rows = ingest(tmp_path, "bdd100k", "acdc", "data.target.subsets=[fog,snow]")
    assert len([r for r in rows if r["dataset"] == "acdc"]) == 2 * 3
    with pytest.raises(ConfigError, match="data.target.subsets: haze not among acdc's"):
        check_config(load_config(None, ["data.target.name=acdc", f"data.target.root={tmp_path}",
                                        "data.target.subsets=[haze]"]))
