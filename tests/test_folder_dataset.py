"""Your own domains as plain folders (issue 35): the demo world rewritten as a folder of renders with palette masks
(the source, its 19 classes mapped to 7 by its class file) and a folder of JPEG frames of which some are labelled
(the target, 7 classes): a 7-class head, a 7-row IoU table, a 7-colour report, predictions in the folder's own
colours; and the same images and labels as a folder give the same mIoU as through the Cityscapes reader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from tests.conftest import run_here, small_overrides

# Cityscapes' 7 categories, over its 19 classes (trainIds)
CATEGORIES = {"flat": (0, 1), "construction": (2, 3, 4), "object": (5, 6, 7), "nature": (8, 9), "sky": (10,),
              "human": (11, 12), "vehicle": (13, 14, 15, 16, 17, 18)}
COLOURS = {"flat": (128, 64, 128), "construction": (70, 70, 70), "object": (153, 153, 153),
           "nature": (107, 142, 35), "sky": (70, 130, 180), "human": (220, 20, 60), "vehicle": (0, 0, 142)}


@pytest.fixture
def cli(monkeypatch):
    from pipeline.cli import app

    run_here(monkeypatch)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def sets(*overrides: str) -> list[str]:
    return [arg for o in overrides for arg in ("--set", o)]


def demo_world(root: Path) -> Path:
    from stages.street.demo_world import generate

    generate(root / "demo", 8, 12, 4, 64, 128, seed=3)
    return root / "demo"


def target_class_file(path: Path) -> Path:
    """7 classes; masks are colour (RGB) images in the Cityscapes palette of the 19 classes they merge."""
    from stages.street.datasets import PALETTE

    classes = [{"name": name, "colour": list(COLOURS[name]), "values": [list(map(int, PALETTE[i])) for i in ids]}
               for name, ids in CATEGORIES.items()]
    path.write_text(yaml.safe_dump({"masks": "rgb", "ignore": [[0, 0, 0]], "classes": classes,
                                    "subsets": {"things": ["human", "vehicle"]}}))
    return path


def source_class_file(path: Path) -> Path:
    """The source's 19 classes by mask value (trainIds), each counted as its category in the target."""
    from stages.street.datasets import CLASSES, PALETTE

    category = {i: name for name, ids in CATEGORIES.items() for i in ids}
    classes = [{"name": n, "colour": list(map(int, PALETTE[i])), "target": category[i]} for i, n in enumerate(CLASSES)]
    path.write_text(yaml.safe_dump({"masks": "value", "ignore": [255], "classes": classes}))
    return path


def as_folders(demo: Path, out: Path, labelled_train: int) -> Path:
    """Source: renders/*.png with value masks (trainIds) in labels/; target: frames/{split}/*.jpg with RGB palette
    masks in masks/{split}/, the first ``labelled_train`` train frames labelled."""
    from stages.street.datasets import colourise, load_label

    for img in sorted((demo / "gta5" / "images").glob("*.png")):
        (out / "renders").mkdir(parents=True, exist_ok=True)
        (out / "labels").mkdir(parents=True, exist_ok=True)
        Image.open(img).save(out / "renders" / img.name)
        Image.fromarray(load_label(demo / "gta5" / "labels" / img.name, "gta5")).save(out / "labels" / img.name)
    for split in ("train", "val"):
        images = sorted((demo / "cityscapes" / "leftImg8bit" / split).glob("*/*.png"))
        for k, img in enumerate(images):
            stem = img.name.removesuffix("_leftImg8bit.png")
            (out / "frames" / split).mkdir(parents=True, exist_ok=True)
            Image.open(img).convert("RGB").save(out / "frames" / split / f"{stem}.jpg", quality=95)
            if split == "val" or k < labelled_train:
                label = demo / "cityscapes" / "gtFine" / split / img.parent.name / f"{stem}_gtFine_labelIds.png"
                (out / "masks" / split).mkdir(parents=True, exist_ok=True)
                Image.fromarray(colourise(load_label(label, "cityscapes"))).save(out / "masks" / split / f"{stem}.png")
    return out


def folder_domains(folders: Path, tmp_path: Path) -> list[str]:
    return ["data.source.name=folder", f"data.source.root={folders}", "data.source.images=renders/*.png",
            "data.source.masks=labels/{name}", f"data.source.classes={source_class_file(tmp_path / 'source.yaml')}",
            "data.target.name=folder", f"data.target.root={folders}", "data.target.images=frames/{split}/*.jpg",
            "data.target.masks=masks/{split}/{stem}.png",
            f"data.target.classes={target_class_file(tmp_path / 'classes.yaml')}"]


def test_the_demo_world_as_folders_trains_a_7_class_head_and_reports_and_predicts_in_its_colours(cli, tmp_path):
    folders = as_folders(demo_world(tmp_path), tmp_path / "mine", labelled_train=6)
    workdir = tmp_path / "w"
    args = sets(*small_overrides(workdir, *folder_domains(folders, tmp_path), "data.labelled_target=4",
                                 "cluster.num_cpus=2"))
    result = cli("run", *args)
    assert result.exit_code == 0, result.output
    assert "mIoU7:" in result.output and "mIoUthings:" in result.output and "mIoU19" not in result.output
    labelled = (next((workdir / "split").glob("*/labelled.txt"))).read_text().split()
    assert len(labelled) == 4
    masked = {f"folder_target/train/{p.stem}" for p in (folders / "masks" / "train").glob("*.png")}
    assert set(labelled) <= masked  # only images with a mask can be labelled
    per_class = pq.read_table(next((workdir / "evaluate").glob("*/per_class.parquet"))).to_pylist()
    assert [r["name"] for r in per_class] == list(CATEGORIES)
    report = next((workdir / "report").glob("*/index.html")).read_text()
    assert 'data-classes="7"' in report and all(f">{name}</th>" in report for name in CATEGORIES)
    runs = pq.read_table(next((workdir / "report").glob("*/runs.parquet")))
    assert {f"iou_{n}" for n in CATEGORIES} <= set(runs.column_names) and "iou_road" not in runs.column_names
    truth = next((workdir / "evaluate").glob("*/predictions/truth/*.png"))
    assert {tuple(c) for c in np.asarray(Image.open(truth)).reshape(-1, 3)} <= {*COLOURS.values(), (0, 0, 0)}

    ckpt = next((workdir / "train").glob("*"))
    out = tmp_path / "pred"
    predicted = cli("predict", ckpt, folders / "frames" / "val", "--out", out, "--format", "dataset",
                    *sets("caption.max_new_tokens=4"))
    assert predicted.exit_code == 0, predicted.output
    masks = sorted((out / "masks").glob("*.png"))
    assert len(masks) == 4
    spec = yaml.safe_load((tmp_path / "classes.yaml").read_text())
    written = {tuple(c["values"][0]) for c in spec["classes"]} | {(0, 0, 0)}
    assert {tuple(c) for m in masks for c in np.asarray(Image.open(m)).reshape(-1, 3)} <= written
    from stages.street.predict import check_format, load_predictor

    predictor = load_predictor(next(ckpt.glob("checkpoints/*.safetensors")), None, ["caption.max_new_tokens=4"])
    with pytest.raises(ValueError, match="not Cityscapes' 19 \\(7 classes\\); use --format dataset"):
        check_format(predictor, "labelids")


def test_a_folder_copy_of_the_cityscapes_target_scores_the_same(cli, tmp_path):
    """The same images and labels read as a folder (PNG frames named by their Cityscapes stem, labelId masks, a
    class file naming Cityscapes' 19 classes by their labelIds), the same labelled images (a split file of
    stems): the same training, the same confusion and mIoU as through the Cityscapes reader."""
    from stages.street.datasets import CITYSCAPES_ID_TO_TRAIN, CLASSES, PALETTE

    demo = demo_world(tmp_path)
    copy = tmp_path / "copy"
    for img in (demo / "cityscapes" / "leftImg8bit").rglob("*_leftImg8bit.png"):
        split, stem = img.parent.parent.name, img.name.removesuffix("_leftImg8bit.png")
        label = demo / "cityscapes" / "gtFine" / split / img.parent.name / f"{stem}_gtFine_labelIds.png"
        for kind, path in (("images", img), ("masks", label)):
            (copy / kind / split).mkdir(parents=True, exist_ok=True)
            (copy / kind / split / f"{stem}.png").write_bytes(path.read_bytes())
    ids = {t: [i for i, tt in CITYSCAPES_ID_TO_TRAIN.items() if tt == t] for t in range(19)}
    classes = tmp_path / "cityscapes.yaml"
    classes.write_text(yaml.safe_dump({"ignore": [v for v in range(256) if v not in CITYSCAPES_ID_TO_TRAIN],
                                       "classes": [{"name": n, "colour": list(map(int, PALETTE[k])), "values": ids[k]}
                                                   for k, n in enumerate(CLASSES)]}))
    split = tmp_path / "split.txt"
    split.write_text("\n".join(sorted(p.stem for p in (copy / "images" / "train").glob("*.png"))[1:9:2]) + "\n")
    base = small_overrides(tmp_path / "w", "data.source.name=gta5", f"data.source.root={demo / 'gta5'}",
                           f"data.split_file={split}", "cluster.num_cpus=2")
    folder = ["data.target.name=folder", f"data.target.root={copy}", "data.target.images=images/{split}/*.png",
              "data.target.masks=masks/{split}/{stem}.png", f"data.target.classes={classes}"]
    scores = []
    for domain in (["data.target.name=cityscapes", f"data.target.root={demo / 'cityscapes'}"], folder):
        result = cli("run", *sets(*base, *domain))
        assert result.exit_code == 0, result.output
        scores.append(_latest_metrics(tmp_path / "w"))
    assert len(list((tmp_path / "w" / "evaluate").glob("*/metrics.json"))) == 2  # two evaluations, none reused
    assert "mIoU19" in scores[1] and scores[0]["per_class"] == scores[1]["per_class"]
    assert scores[0]["mIoU19"] == scores[1]["mIoU19"]


def _latest_metrics(workdir: Path) -> dict:
    path = max((workdir / "evaluate").glob("*/metrics.json"), key=lambda p: p.stat().st_mtime_ns)
    return json.loads(path.read_text())
