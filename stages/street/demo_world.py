"""A procedural demo world: small street scenes in two styles, written in the GTA5 and Cityscapes layouts.

The "synthetic" source has flat, saturated colours; the "real" target has another palette, texture, blur
and noise. Objects follow a long tail: road, sky and buildings are in every scene, trains and riders in
few. Labels are written as Cityscapes labelIds, so the real readers load the demo world unchanged.

Two options serve the benchmarks of what the method is for:

- ``gap`` scales the target's style shift (palette, texture, noise, exposure, blur): 1 is the default world,
  0 no shift, 2 twice the shift; adaptation has more to do the larger it is.
- ``lookalike``: cars and trucks are drawn exactly alike (a car's colour, either shape), and in half of the
  scenes every vehicle is a truck: no pixel tells them apart, only the caption does.

Every scene has a description naming the classes it shows (``captions.jsonl`` beside the world: image_id,
caption), which ``caption.captions_file: demo`` feeds to the pipeline as its captions.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from stages.street.datasets import CLASSES, PALETTE, TRAIN_TO_CITYSCAPES_ID

CAPTIONS_FILE = "captions.jsonl"  # the scenes' own descriptions, beside the world
CAR, TRUCK = 13, 14  # the look-alike pair

# (trainId, scenes that hold it, (min, max) count, (width, height) as fractions of the image)
OBJECTS = (
    (8, 0.8, (1, 3), (0.10, 0.25)),  # vegetation
    (5, 0.7, (1, 4), (0.012, 0.35)),  # pole
    (13, 0.7, (1, 3), (0.14, 0.12)),  # car
    (11, 0.5, (1, 3), (0.03, 0.14)),  # person
    (7, 0.4, (1, 2), (0.04, 0.05)),  # traffic sign
    (6, 0.3, (1, 2), (0.025, 0.07)),  # traffic light
    (3, 0.3, (1, 1), (0.25, 0.10)),  # wall
    (4, 0.25, (1, 1), (0.30, 0.06)),  # fence
    (9, 0.25, (1, 2), (0.20, 0.08)),  # terrain
    (18, 0.15, (1, 2), (0.05, 0.07)),  # bicycle
    (14, 0.12, (1, 1), (0.20, 0.18)),  # truck
    (15, 0.08, (1, 1), (0.30, 0.22)),  # bus
    (12, 0.08, (1, 1), (0.03, 0.10)),  # rider
    (17, 0.06, (1, 1), (0.06, 0.07)),  # motorcycle
    (16, 0.04, (1, 1), (0.45, 0.20)),  # train
)
GROUND_OBJECTS = {13, 11, 18, 14, 15, 12, 17, 16, 9, 3, 4}  # stand on the ground plane


def _palettes() -> dict[str, np.ndarray]:
    source = PALETTE.astype(np.float32)
    # The target's palette: channels rotated a little and desaturated towards grey, brighter sky.
    target = 0.55 * source[:, [1, 2, 0]] + 0.25 * source + 0.2 * source.mean(1, keepdims=True) + 18
    return {"source": source, "target": np.clip(target, 0, 255)}


PALETTES = _palettes()


def world_keys(demo) -> dict:  # noqa: ANN001  (pipeline.config.DemoWorldConfig)
    """The demo world's config keys as fingerprints hold them; keys added later stay out at the value that
    draws the world as before, so earlier work directories keep their stages."""
    inert = {"gap": 1.0, "lookalike": False}
    return {k: v for k, v in demo.model_dump(mode="json").items() if not (k in inert and v == inert[k])}


def target_palette(gap: float) -> np.ndarray:
    """The target's palette at ``gap`` times the default shift from the source's (1: the default world)."""
    if gap == 1:
        return PALETTES["target"]
    source = PALETTES["source"]
    return np.clip(source + gap * (PALETTES["target"] - source), 0, 255)


def lookalike(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """Every vehicle of the scene is a car, or (half of the scenes) a truck; drawn alike either way."""
    labels = np.where(labels == TRUCK, CAR, labels).astype(np.uint8)
    return np.where(labels == CAR, TRUCK, labels).astype(np.uint8) if rng.random() < 0.5 else labels


def describe(labels: np.ndarray) -> str:
    """The scene's description: the classes it shows, largest first (what an oracle captioner would say)."""
    ids, counts = np.unique(labels[labels < len(CLASSES)], return_counts=True)
    names = [CLASSES[i] for i in ids[np.argsort(-counts, kind="stable")]]
    return "a street scene with " + ", ".join(names[:-1]) + (" and " if len(names) > 1 else "") + names[-1]


def render_labels(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A (h, w) uint8 map of trainIds for one random scene."""
    labels = np.full((h, w), 10, dtype=np.uint8)  # sky
    horizon = int(h * rng.uniform(0.32, 0.5))
    labels[horizon:] = 1  # sidewalk
    ys, xs = np.mgrid[0:h, 0:w]
    depth = (ys - horizon) / max(h - horizon, 1)  # 0 at the horizon, 1 at the bottom
    centre = w * rng.uniform(0.4, 0.6)
    road = (ys >= horizon) & (np.abs(xs - centre) < w * (0.08 + 0.45 * depth))
    labels[road] = 0
    x = 0
    while x < w:  # a row of buildings on the horizon
        bw = int(w * rng.uniform(0.08, 0.25))
        top = int(horizon * rng.uniform(0.05, 0.7))
        labels[top:horizon, x:x + bw] = 2
        x += bw + int(w * rng.uniform(0.0, 0.05))
    for train_id, prob, (lo, hi), (fw, fh) in OBJECTS:
        if rng.random() >= prob:
            continue
        for _ in range(rng.integers(lo, hi + 1)):
            ow, oh = max(2, int(w * fw * rng.uniform(0.7, 1.3))), max(2, int(h * fh * rng.uniform(0.7, 1.3)))
            bottom = int(rng.uniform(horizon + 0.1 * (h - horizon), h)) if train_id in GROUND_OBJECTS \
                else int(rng.uniform(0.3 * horizon, horizon + 0.3 * (h - horizon)))
            left = int(rng.uniform(0, max(w - ow, 1)))
            top = max(bottom - oh, 0)
            if train_id == 8:  # vegetation: an ellipse
                cy, cx = (top + bottom) / 2, left + ow / 2
                blob = ((ys - cy) / max(oh / 2, 1)) ** 2 + ((xs - cx) / max(ow / 2, 1)) ** 2 <= 1
                labels[blob] = 8
            else:
                labels[top:bottom, left:left + ow] = train_id
    return labels


def render_image(rng: np.random.Generator, labels: np.ndarray, style: str, gap: float = 1.0) -> np.ndarray:
    """Colour a label map in the source or target style (the target's shift scaled by ``gap``): (h, w, 3) uint8.
    Trucks take the car's colour: only the look-alike world has trucks of a car's shape."""
    h, w = labels.shape
    palette = PALETTES["source"] if style == "source" else target_palette(gap)
    rgb = palette[labels].copy()
    rgb += rng.normal(0, 12, size=(1, 1, 3)).astype(np.float32)  # per-image tint
    if style == "target":
        ys, xs = np.mgrid[0:h, 0:w]
        texture = 14 * gap * np.sin(xs * rng.uniform(0.3, 0.9)) * np.cos(ys * rng.uniform(0.3, 0.9))
        rgb += texture[..., None] + rng.normal(0, 10 * gap, size=rgb.shape)
        exposure = rng.uniform(0.75, 1.1)
        rgb *= exposure if gap == 1 else 1 + gap * (exposure - 1)
    else:
        rgb += rng.normal(0, 3, size=rgb.shape)
    image = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
    if style == "target":
        image = image.filter(ImageFilter.GaussianBlur(radius=gap * rng.uniform(0.5, 1.2)))
    return np.asarray(image)


def _write_pair(image: np.ndarray, labels: np.ndarray, image_path: Path, label_path: Path) -> None:
    image_path.parent.mkdir(parents=True, exist_ok=True)
    label_path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(image_path)
    Image.fromarray(TRAIN_TO_CITYSCAPES_ID[labels]).save(label_path)  # stored as Cityscapes labelIds


def scene(rng: np.random.Generator, h: int, w: int, alike: bool) -> tuple[np.ndarray, np.ndarray]:
    """(labels, what is drawn): in the look-alike world trucks are drawn as cars."""
    labels = render_labels(rng, h, w)
    if not alike:
        return labels, labels
    labels = lookalike(rng, labels)
    return labels, np.where(labels == TRUCK, CAR, labels).astype(np.uint8)


def generate(root: Path, n_source: int, n_target_train: int, n_target_val: int, height: int, width: int,
             seed: int = 0, gap: float = 1.0, alike: bool = False) -> tuple[Path, Path]:
    """Write the demo world under ``root`` (and its scenes' descriptions, ``CAPTIONS_FILE``); return the
    GTA5-layout and Cityscapes-layout roots.

    Deterministic in its arguments; a world already written with the same arguments is kept.
    """
    root = Path(root)
    stamp = root / "WORLD.txt"
    spec = f"{n_source} {n_target_train} {n_target_val} {height} {width} {seed}" + \
        (f" gap {gap}" if gap != 1 else "") + (" lookalike" if alike else "") + " captions"
    source_root, target_root = root / "gta5", root / "cityscapes"
    if stamp.exists() and stamp.read_text() == spec:
        return source_root, target_root
    for old in (source_root, target_root):  # another world's files must not join this one's image set
        shutil.rmtree(old, ignore_errors=True)
    rng = np.random.default_rng(seed)
    source_h = int(height * 1.1)  # the source has its own size, as GTA5 does
    captions = []
    for i in range(n_source):
        labels, drawn = scene(rng, source_h, width, alike)
        name = f"{i:05d}.png"
        _write_pair(render_image(rng, drawn, "source"), labels, source_root / "images" / name,
                    source_root / "labels" / name)
        captions.append({"image_id": f"gta5/train/{i:05d}", "caption": describe(labels)})
    for split, count in (("train", n_target_train), ("val", n_target_val)):
        for i in range(count):
            city = ("demotown", "demoville")[i % 2]
            stem = f"{city}_{i // 2:06d}_000019"
            labels, drawn = scene(rng, height, width, alike)
            _write_pair(render_image(rng, drawn, "target", gap), labels,
                        target_root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png",
                        target_root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png")
            captions.append({"image_id": f"cityscapes/{split}/{stem}", "caption": describe(labels)})
    (root / CAPTIONS_FILE).write_text("".join(json.dumps(c) + "\n" for c in captions))
    stamp.write_text(spec)
    return source_root, target_root
