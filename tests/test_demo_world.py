"""The demo world's options for the benchmarks: the look-alike pair that only a caption tells apart, the size
of the domain gap, and the scenes' own descriptions."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from stages.street import demo_world
from stages.street.datasets import load_label


def world(tmp_path, **options):
    source, target = demo_world.generate(tmp_path, 40, 8, 2, 48, 96, seed=1, **options)
    captions = {json.loads(line)["image_id"]: json.loads(line)["caption"]
                for line in (tmp_path / demo_world.CAPTIONS_FILE).read_text().splitlines()}
    return source, target, captions


def test_lookalike_cars_and_trucks_are_drawn_alike_and_only_the_caption_tells(tmp_path):
    source, _, captions = world(tmp_path, alike=True)
    car_colours, truck_colours, truck_scenes, vehicle_scenes = [], [], 0, 0
    for k in range(40):
        image = np.asarray(Image.open(source / "images" / f"{k:05d}.png")).astype(float)
        labels = load_label(source / "labels" / f"{k:05d}.png", "gta5")
        has_car, has_truck = (labels == 13).any(), (labels == 14).any()
        assert not (has_car and has_truck)  # a scene's vehicles are all cars or all trucks
        caption = captions[f"gta5/train/{k:05d}"]
        assert ("car" in caption.split(", ") or " car" in caption) == has_car
        assert ("truck" in caption) == has_truck
        vehicle_scenes += has_car or has_truck
        truck_scenes += has_truck
        if has_car:
            car_colours.append(image[labels == 13].mean(0))
        if has_truck:
            truck_colours.append(image[labels == 14].mean(0))
    assert 0.25 < truck_scenes / vehicle_scenes < 0.75
    # the same colour, up to the per-image tint and noise: no pixel tells them apart
    assert np.abs(np.mean(car_colours, 0) - np.mean(truck_colours, 0)).max() < 12


def test_the_default_world_is_unchanged_by_the_new_options(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    demo_world.generate(a, 2, 2, 1, 48, 96, seed=4)
    demo_world.generate(b, 2, 2, 1, 48, 96, seed=4, gap=1.0, alike=False)
    for path in sorted(a.rglob("*.png")):
        assert np.array_equal(np.asarray(Image.open(path)), np.asarray(Image.open(b / path.relative_to(a))))


def test_a_larger_gap_moves_the_target_further_from_the_source_palette(tmp_path):
    labels = np.full((16, 16), 0, np.uint8)  # road
    rng = lambda: np.random.default_rng(0)  # noqa: E731
    source = demo_world.render_image(rng(), labels, "source").astype(float).mean((0, 1))
    shifts = [np.abs(demo_world.render_image(rng(), labels, "target", gap).astype(float).mean((0, 1)) - source).sum()
              for gap in (0.0, 1.0, 2.0)]
    assert shifts[0] < shifts[1] < shifts[2]


def test_every_image_has_a_description_naming_its_classes(tmp_path):
    _, target, captions = world(tmp_path)
    assert len(captions) == 40 + 8 + 2
    stem = "demotown_000000_000019"
    labels = load_label(target / "gtFine" / "train" / "demotown" / f"{stem}_gtFine_labelIds.png", "cityscapes")
    caption = captions[f"cityscapes/train/{stem}"]
    assert caption.startswith("a street scene with ") and "sky" in caption and (labels == 10).any()
