"""Bad input to a folder dataset (issue 35): each message names the file (or the key) and the value, and nothing
else is lost: a mask value the class file does not know (rejected, or with data.strict the run stops), an image
and mask of different sizes, a glob that matches nothing, two images with one stem, a malformed class file (the
key and the line), a colour mask that is not RGB."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from pipeline.config import ConfigError, load_config
from pipeline.runner import check_config, rejected_files, run_pipeline
from pipeline.stage import StageError

H, W = 8, 12
RGB_CLASSES = {"masks": "rgb", "ignore": [[0, 0, 0]],
               "classes": [{"name": "road", "colour": [128, 64, 128]}, {"name": "car", "colour": [0, 0, 142]}]}
VALUE_CLASSES = {"classes": [{"name": "road", "colour": [128, 64, 128]}, {"name": "car", "colour": [0, 0, 142]}]}


def image(path: Path, h: int = H, w: int = W) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)


def mask(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def rgb_mask(colour=(128, 64, 128), h: int = H, w: int = W) -> np.ndarray:
    return np.broadcast_to(np.array(colour, np.uint8), (h, w, 3)).copy()


def folder(root: Path, n: int = 3) -> Path:
    for split in ("train", "val"):
        for k in range(n):
            image(root / "frames" / split / f"f{k}.jpg")
            mask(root / "masks" / split / f"f{k}.png", rgb_mask())
    return root


def classes(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def config(tmp_path: Path, root: Path, class_file: Path, *extra: str):
    from stages.street.demo_world import generate

    generate(tmp_path / "demo", 2, 1, 1, 32, 64, seed=0)
    return load_config(None, ["data.source.name=gta5", f"data.source.root={tmp_path / 'demo' / 'gta5'}",
                              "data.target.name=folder", f"data.target.root={root}",
                              "data.target.images=frames/{split}/*.jpg", "data.target.masks=masks/{split}/{stem}.png",
                              f"data.target.classes={class_file}", "data.labelled_target=1",
                              f"paths.workdir={tmp_path / 'work'}", *extra])


def rejected(cfg) -> dict[str, str]:
    return {Path(path).name: reason for _, path, reason in rejected_files(cfg)}


def test_a_mask_value_the_class_file_does_not_know_is_rejected_with_the_file_value_and_pixels(tmp_path):
    root = folder(tmp_path / "mine")
    odd = rgb_mask()
    odd[:2, :3] = (10, 20, 30)
    mask(root / "masks" / "val" / "f1.png", odd)
    cfg = config(tmp_path, root, classes(tmp_path / "c.yaml", RGB_CLASSES))
    run_pipeline(cfg, ["ingest"])
    reason = rejected(cfg)["f1.jpg"]
    assert "f1.png" in reason and "[10, 20, 30] (6 pixels)" in reason and "c.yaml" in reason
    strict = config(tmp_path, root, classes(tmp_path / "c.yaml", RGB_CLASSES), "data.strict=true",
                    f"paths.workdir={tmp_path / 'strict'}")
    with pytest.raises(StageError, match=r"f1\.png"):
        run_pipeline(strict, ["ingest"])


def test_an_image_and_mask_of_different_sizes_are_named(tmp_path):
    root = folder(tmp_path / "mine")
    mask(root / "masks" / "train" / "f2.png", rgb_mask(h=H + 2))
    cfg = config(tmp_path, root, classes(tmp_path / "c.yaml", RGB_CLASSES))
    run_pipeline(cfg, ["ingest"])
    assert rejected(cfg)["f2.jpg"].endswith(f"f2.png: size {W}x{H + 2} differs from the image's {W}x{H}")


def test_a_colour_mask_that_is_not_rgb_is_named(tmp_path):
    root = folder(tmp_path / "mine")
    mask(root / "masks" / "val" / "f0.png", np.zeros((H, W), np.uint8))  # grey, where the class file says rgb
    cfg = config(tmp_path, root, classes(tmp_path / "c.yaml", RGB_CLASSES))
    run_pipeline(cfg, ["ingest"])
    assert "f0.png: a L image, not an RGB colour mask" in rejected(cfg)["f0.jpg"]
    values = config(tmp_path, folder(tmp_path / "other"), classes(tmp_path / "v.yaml", VALUE_CLASSES),
                    f"paths.workdir={tmp_path / 'w2'}")
    run_pipeline(values, ["ingest"])  # colour masks where the class file says values
    assert "a RGB image, not a mask of values 0-255" in rejected(values)["f0.jpg"]


def test_a_glob_that_matches_nothing_names_the_key_and_the_glob(tmp_path):
    root = folder(tmp_path / "mine")
    cfg = config(tmp_path, root, classes(tmp_path / "c.yaml", RGB_CLASSES), "data.target.images=frames/*/*.png")
    with pytest.raises(StageError, match=r"data\.target\.images: 'frames/\*/\*\.png' matches no file under"):
        run_pipeline(cfg, ["ingest"])


def test_two_images_with_one_stem_are_both_named(tmp_path):
    root = folder(tmp_path / "mine")
    image(root / "frames" / "train" / "f1.png")
    cfg = config(tmp_path, root, classes(tmp_path / "c.yaml", RGB_CLASSES), "data.target.images=frames/{split}/*")
    with pytest.raises(StageError, match=r"data\.target\.images: two images with the stem 'f1': .*f1\.jpg and .*f1\.png"):
        run_pipeline(cfg, ["ingest"])


@pytest.mark.parametrize(("text", "where"), [
    ("classes:\n  - name: road\n    colour: [128, 64]\n", r"c\.yaml:3: classes\.0\.colour"),
    ("classes:\n  - name: road\n    colour: [1, 2, 3]\n  - name: car\n    colour: [1, 2, 300]\n",
     r"c\.yaml:5: classes\.1\.colour: .*\[1, 2, 300\] is not a colour"),
    ("masks: rgb\nclasses:\n  - name: road\n    colour: [1, 2, 3]\n    values: [7]\n",
     r"c\.yaml:5: classes\.0\.values: 7 is not a colour"),
    ("classes:\n  - name: road\n    colour: [1, 2, 3]\n    colour_typo: 1\n", r"c\.yaml:4: classes\.0\.colour_typo: unknown key"),
    ("classes:\n  - name: road\n    colour: [1, 2, 3]\nsubsets:\n  small: [bus]\n",
     r"c\.yaml:5: subsets\.small: 'bus' is not a class"),
    ("classes: [\n", r"c\.yaml:2: not valid YAML"),
])
def test_a_malformed_class_file_names_the_line_and_the_key(tmp_path, text, where):
    (tmp_path / "c.yaml").write_text(text)
    cfg = config(tmp_path, folder(tmp_path / "mine"), tmp_path / "c.yaml")
    with pytest.raises(ConfigError, match=r"data\.target\.classes: .*" + where):
        check_config(cfg, "test")


def test_folder_keys_are_required_and_other_datasets_refuse_them(tmp_path):
    root = folder(tmp_path / "mine")
    cfg = config(tmp_path, root, classes(tmp_path / "c.yaml", RGB_CLASSES), "data.target.images=null")
    with pytest.raises(ConfigError, match=r"data\.target\.images: required for dataset 'folder'"):
        check_config(cfg, "test")
    cfg = config(tmp_path, root, classes(tmp_path / "c.yaml", RGB_CLASSES), "data.source.masks=m/{stem}.png")
    with pytest.raises(ConfigError, match=r"data\.source\.masks: dataset 'gta5' does not read it \(only folder reads it\)"):
        check_config(cfg, "test")


def test_a_source_image_without_a_mask_is_rejected(tmp_path):
    root = folder(tmp_path / "mine")
    (root / "masks" / "train" / "f1.png").unlink()
    cfg = config(tmp_path, root, classes(tmp_path / "c.yaml", RGB_CLASSES), "data.source.name=folder",
                 f"data.source.root={root}", "data.source.images=frames/train/*.jpg",
                 "data.source.masks=masks/train/{stem}.png", f"data.source.classes={tmp_path / 'c.yaml'}")
    run_pipeline(cfg, ["ingest"])
    assert rejected(cfg) == {"f1.jpg": "a source image without a label file (data.source.masks)"}
