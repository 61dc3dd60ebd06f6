"""Official layouts, label maps, splits and broken files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.config import ConfigError, load_config
from pipeline.runner import fingerprints, rejected_files, run_pipeline, stage_dir
from pipeline.stage import StageError
from stages.index import INDEX_FILE, INDEX_SCHEMA, SPLIT_FILE, read_index, read_split
from stages.split import labelled_split
from stages.street.datasets import CITYSCAPES_ID_TO_TRAIN, CLASS_SETS, dataset_roots, load_label
from stages.street.datasets.synthia import SYNTHIA_ID_TO_TRAIN

H, W = 4, 6


def png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def rgb() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8)


def ids(value: int = 7) -> np.ndarray:
    return np.full((H, W), value, dtype=np.uint8)


def make_cityscapes(root: Path, n_train: int = 6, n_val: int = 2) -> Path:
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            city = ("aachen", "bremen")[i % 2]
            stem = f"{city}_{i:06d}_000019"
            png(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", rgb())
            png(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", ids(26))
    return root


def make_gta5(root: Path, n: int = 5) -> Path:
    for i in range(n):
        png(root / "images" / f"{i:05d}.png", rgb())
        png(root / "labels" / f"{i:05d}.png", ids(7))
    return root


def synthia_label(path: Path, class_ids: np.ndarray) -> Path:
    """SYNTHIA's format: 16-bit, 3 channels, class id in the first (R) channel."""
    path.parent.mkdir(parents=True, exist_ok=True)
    bgr = np.zeros((*class_ids.shape, 3), dtype=np.uint16)
    bgr[..., 2] = class_ids  # R, in OpenCV's BGR order
    bgr[..., 1] = 1000  # instance ids live in another channel
    assert cv2.imwrite(str(path), bgr)
    return path


def make_synthia(root: Path, n: int = 3) -> Path:
    for i in range(n):
        png(root / "RGB" / f"{i:07d}.png", rgb())
        synthia_label(root / "GT" / "LABELS" / f"{i:07d}.png", np.full((H, W), 3, dtype=np.uint16))
    return root


def config(tmp_path: Path, source: str, source_root: Path, target_root: Path, *extra: str):
    return load_config(None, [f"data.source.name={source}", f"data.source.root={source_root}",
                              "data.target.name=cityscapes", f"data.target.root={target_root}",
                              "data.labelled_target=2", f"paths.workdir={tmp_path / 'work'}", *extra])


def index_of(cfg) -> list[dict]:
    """The index rows with absolute paths."""
    fp = fingerprints(cfg)["ingest"]
    return read_index(stage_dir(cfg.paths.workdir, "ingest", fp) / INDEX_FILE, dataset_roots(cfg.data, cfg.paths.workdir))


# maps and class sets ---------------------------------------------------------------------------------
def test_cityscapes_and_gta5_label_ids_map_to_train_ids(tmp_path):
    values = np.arange(0, 34, dtype=np.uint8).reshape(2, 17)
    path = png(tmp_path / "l.png", values)
    for dataset in ("cityscapes", "gta5"):
        out = load_label(path, dataset)
        assert out.dtype == np.uint8 and out.shape == (2, 17)
        for label_id, train_id in zip(values.flat, out.flat, strict=True):
            assert train_id == CITYSCAPES_ID_TO_TRAIN.get(int(label_id), 255)
    assert CITYSCAPES_ID_TO_TRAIN[7] == 0 and CITYSCAPES_ID_TO_TRAIN[33] == 18 and 0 not in CITYSCAPES_ID_TO_TRAIN


def test_synthia_is_read_as_16_bit_first_channel(tmp_path):
    class_ids = np.arange(0, 24, dtype=np.uint16).reshape(4, 6)
    out = load_label(synthia_label(tmp_path / "s.png", class_ids), "synthia")
    expected = np.vectorize(lambda v: SYNTHIA_ID_TO_TRAIN.get(int(v), 255))(class_ids)
    np.testing.assert_array_equal(out, expected)
    # an 8-bit reader would have lost these values: PIL turns the file into something else
    with Image.open(tmp_path / "s.png") as im:
        assert not np.array_equal(np.asarray(im.convert("RGB"))[..., 0], class_ids)


def test_class_sets():
    assert len(CLASS_SETS[19]) == 19 and len(CLASS_SETS[16]) == 16 and len(CLASS_SETS[13]) == 13
    assert not {9, 14, 16} & set(CLASS_SETS[16])
    assert not {3, 4, 5, 9, 14, 16} & set(CLASS_SETS[13])
    assert set(SYNTHIA_ID_TO_TRAIN.values()) == set(CLASS_SETS[16])


# splits ----------------------------------------------------------------------------------------------
def test_split_is_deterministic_and_order_free():
    data = load_config(None, ["data.labelled_target=3", "data.seed=5"]).data
    names = [f"cityscapes/train/c_{i:06d}_000019" for i in range(40)]
    a = labelled_split(names, data)
    assert a == labelled_split(list(reversed(names)), data) and len(a) == 3 and a == sorted(a)
    other = load_config(None, ["data.labelled_target=3", "data.seed=6"]).data
    assert labelled_split(names, other) != a
    # pinned: the same seed gives the same list on any machine
    assert a == ["cityscapes/train/c_000010_000019", "cityscapes/train/c_000018_000019",
                 "cityscapes/train/c_000036_000019"]


def test_user_split_file(tmp_path):
    names = [f"cityscapes/train/aachen_{i:06d}_000019" for i in range(5)]
    split = tmp_path / "split.txt"
    split.write_text("# my images\naachen_000001_000019_leftImg8bit.png\ncityscapes/train/aachen_000003_000019\n")
    data = load_config(None, [f"data.split_file={split}"]).data
    assert labelled_split(names, data) == [names[1], names[3]]
    split.write_text("aachen_000001_000019\nnot_an_image\n")
    with pytest.raises(StageError, match=r"split.txt:2: 'not_an_image'"):
        labelled_split(names, data)


# the index -------------------------------------------------------------------------------------------
def test_index_columns_and_split(tmp_path):
    cfg = config(tmp_path, "gta5", make_gta5(tmp_path / "gta5"), make_cityscapes(tmp_path / "cs"))
    outcomes = run_pipeline(cfg, ["ingest", "split"])
    assert outcomes[1].record.details["labelled"] == 2 and outcomes[1].record.details["unlabelled"] == 4
    fp = fingerprints(cfg)["ingest"]
    table = pq.read_table(stage_dir(cfg.paths.workdir, "ingest", fp) / INDEX_FILE)
    assert table.schema.equals(INDEX_SCHEMA)
    stored = table.to_pylist()
    assert {r["image_path"] for r in stored if r["domain"] == "source"} == {f"images/{i:05d}.png" for i in range(5)}
    assert all(not Path(r["image_path"]).is_absolute() and len(r["image_hash"]) == 32 for r in stored)
    rows = index_of(cfg)
    assert len({r["image_id"] for r in rows}) == len(rows) == 5 + 6 + 2
    assert all(Path(r["image_path"]).exists() and Path(r["label_path"]).exists() for r in rows)
    assert {r["dataset"] for r in rows if r["domain"] == "source"} == {"gta5"}
    assert {(r["height"], r["width"]) for r in rows} == {(H, W)}
    labelled = read_split(stage_dir(cfg.paths.workdir, "split", fingerprints(cfg)["split"]))
    target_train = {r["image_id"] for r in rows if r["domain"] == "target" and r["split"] == "train"}
    assert len(labelled) == 2 and labelled <= target_train
    assert (stage_dir(cfg.paths.workdir, "split", fingerprints(cfg)["split"]) / SPLIT_FILE).exists()


def test_synthia_source_ingests(tmp_path):
    cfg = config(tmp_path, "synthia", make_synthia(tmp_path / "syn"), make_cityscapes(tmp_path / "cs"))
    run_pipeline(cfg, ["ingest"])
    assert sum(r["domain"] == "source" for r in index_of(cfg)) == 3


# bad input -------------------------------------------------------------------------------------------
def break_gta5(root: Path) -> dict[str, str]:
    """Add broken files to a GTA5 tree; return {image name: expected reason}."""
    (root / "images" / "90000.png").write_bytes(png(root / "tmp.png", rgb()).read_bytes()[:60])  # truncated
    (root / "tmp.png").unlink()
    (root / "images" / "90001.png").write_bytes(b"")  # empty
    (root / "images" / "90002.png").write_text("not an image")
    png(root / "images" / "90003.png", rgb())  # no label
    png(root / "images" / "90004.png", rgb())
    png(root / "labels" / "90004.png", np.zeros((H + 1, W), np.uint8))  # wrong size
    png(root / "images" / "90005.png", rgb())
    png(root / "labels" / "90005.png", ids(200))  # outside 0..33
    return {"90000.png": "image does not decode", "90001.png": "image does not decode",
            "90002.png": "image does not decode", "90003.png": "missing label file",
            "90004.png": "90004.png: size 6x5 differs from the image's 6x4", "90005.png": "label value 200 outside"}


def test_broken_files_are_recorded_and_skipped(tmp_path):
    gta5 = make_gta5(tmp_path / "gta5")
    expected = break_gta5(gta5)
    cfg = config(tmp_path, "gta5", gta5, make_cityscapes(tmp_path / "cs"))
    outcome = run_pipeline(cfg, ["ingest"])[0]
    assert outcome.record.details["rejected"] == len(expected)
    rejected = {Path(path).name: reason for _, path, reason in rejected_files(cfg)}
    assert set(rejected) == set(expected)
    for name, reason in expected.items():
        assert reason in rejected[name], (name, rejected[name])
    rows = index_of(cfg)
    assert not {Path(r["image_path"]).name for r in rows} & set(expected) and len(rows) == 5 + 6 + 2
    status = subprocess.run([sys.executable, "-m", "pipeline", "status", "--set", "data.source.name=gta5",
                             "--set", f"data.source.root={gta5}", "--set", "data.target.name=cityscapes",
                             "--set", f"data.target.root={tmp_path / 'cs'}", "--set", "data.labelled_target=2",
                             "--set", f"paths.workdir={tmp_path / 'work'}"],
                            capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert "Rejected files (6)" in status.stdout
    for name in expected:
        assert name in status.stdout


def test_strict_fails_naming_every_rejected_file(tmp_path):
    gta5 = make_gta5(tmp_path / "gta5")
    expected = break_gta5(gta5)
    cfg = config(tmp_path, "gta5", gta5, make_cityscapes(tmp_path / "cs"), "data.strict=true")
    with pytest.raises(StageError) as info:
        run_pipeline(cfg, ["ingest"])
    for name in expected:
        assert name in str(info.value)


def test_missing_or_empty_roots(tmp_path):
    with pytest.raises(ConfigError, match="data.source.root: path does not exist"):
        config(tmp_path, "gta5", tmp_path / "nowhere", make_cityscapes(tmp_path / "cs"))
    (tmp_path / "empty").mkdir()
    cfg = config(tmp_path, "gta5", tmp_path / "empty", make_cityscapes(tmp_path / "cs"))
    with pytest.raises(StageError, match=r"data.source.root: no gta5 images under .*empty \(expected images/\*.png"):
        run_pipeline(cfg, ["ingest"])


def test_example_configs_validate_with_real_roots(tmp_path):
    for name in ("gta5_cityscapes", "synthia_cityscapes"):
        path = Path(__file__).parent.parent / "configs" / f"{name}.yaml"
        cfg = load_config(path, [f"data.source.root={tmp_path}", f"data.target.root={tmp_path}"])
        assert cfg.model.vision_model == "ViT-B-16" and cfg.train.iterations == 40_000
