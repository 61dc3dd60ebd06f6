"""A dataset, a 3D method and a task added through their registries alone: each is a module of its own
(``tests/toys/``) named by the ``plugins`` config key, and runs through the CLI's code path (``plan``, then a
tiny ``run``). No file of the project's packages names them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from tests.conftest import in_process, small_overrides

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def cli(monkeypatch):
    """The CLI in this process (training without Ray Train's start-up, as test_experiments); each toy module
    forgotten afterwards, so that no later test sees its registration."""
    import stages.training
    from models.volumes import methods
    from pipeline.cli import app
    from stages import tasks
    from stages.street import datasets

    monkeypatch.chdir(ROOT)  # Ray's workers import the plugin modules from the driver's directory
    monkeypatch.setattr(stages.training, "fit_on_ray", in_process)  # evaluation stays in a Ray actor: it imports them
    runner = CliRunner()
    yield lambda *args: runner.invoke(app, list(args), catch_exceptions=False)
    datasets.DATASETS.unregister("flat_frames")
    methods.METHODS.unregister("toy")
    tasks.TASKS.unregister("toy")
    for name in [m for m in sys.modules if m.startswith("tests.toys")]:
        del sys.modules[name]


def sets(*overrides: str) -> list[str]:
    return [arg for o in overrides for arg in ("--set", o)]


def flat_frames_world(root: Path) -> Path:
    """The demo world's target half in the toy dataset's layout (frames/<split>/, masks/<split>/ with trainIds)."""
    from stages.street.datasets import load_label
    from stages.street.demo_world import generate

    generate(root / "demo", 4, 8, 4, 64, 128, seed=3)
    out = root / "flat"
    for image in sorted((root / "demo" / "cityscapes" / "leftImg8bit").glob("*/*/*.png")):
        split, stem = image.parent.parent.name, image.name.removesuffix("_leftImg8bit.png")
        label = image.parents[3] / "gtFine" / split / image.parent.name / f"{stem}_gtFine_labelIds.png"
        for kind, array in (("frames", np.asarray(Image.open(image))), ("masks", load_label(label, "cityscapes"))):
            (out / kind / split).mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(out / kind / split / f"{stem}.png")
    return out


def test_a_dataset_added_by_its_module_alone_trains_and_is_scored_by_its_own_decoder(cli, tmp_path):
    flat, workdir = flat_frames_world(tmp_path), tmp_path / "w"
    args = sets(*small_overrides(workdir, "plugins=[tests.toys.flat_frames]", "data.target.name=flat_frames",
                                 f"data.target.root={flat}", "data.labelled_target=2", "cluster.num_cpus=2"))
    refused = cli("plan", *sets(*small_overrides(workdir, "data.target.name=flat_frames", f"data.target.root={flat}")))
    assert refused.exit_code == 2  # without its plugin module: not a registered dataset
    plan = cli("plan", *args)
    assert plan.exit_code == 0 and "ingest" in plan.output, plan.output
    result = cli("run", *args)
    assert result.exit_code == 0, result.output
    assert "mIoU19:" in result.output
    index = next((workdir / "ingest").glob("*/index.parquet"))
    import pyarrow.parquet as pq

    rows = pq.read_table(index).to_pylist()
    assert {r["dataset"] for r in rows if r["domain"] == "target"} == {"flat_frames"}
    scored = pq.read_table(next((workdir / "evaluate").glob("*/per_class.parquet")))["pixels"].to_pylist()
    masks = [np.asarray(Image.open(p)) for p in sorted((flat / "masks" / "val").glob("*.png"))]
    assert sum(scored) == sum(int((m != 255).sum()) for m in masks)  # its masks read by its own decoder
    written = sorted(p.name for p in (workdir / "evaluate").glob("*/predictions/labelIds/*.png"))
    assert written and all(not n.endswith("_leftImg8bit.png") for n in written)  # the toy dataset's own names
    saved = np.asarray(Image.open(next((workdir / "evaluate").glob("*/predictions/labelIds/*.png"))))
    assert saved.max() <= 18  # its own format: trainIds, not Cityscapes labelIds (7..33)


def test_a_3d_method_added_by_its_module_alone_trains_and_is_reported(cli, tmp_path):
    from tests.test_volumes import TINY

    args = ["-c", "configs/synapse_demo.yaml", "--workdir", str(tmp_path),
            *sets(*TINY, "plugins=[tests.toys.toy_method]", "volumes.method=toy")]
    assert cli("plan", "-c", "configs/synapse_demo.yaml", *sets("volumes.method=toy")).exit_code == 2  # no plugin
    plan = cli("plan", *args)
    assert plan.exit_code == 0 and "train" in plan.output, plan.output
    result = cli("run", *args)
    assert result.exit_code == 0, result.output
    assert "mean DSC" in result.output
    setup = json.loads(next((tmp_path / "train").glob("*/setup.json")).read_text())
    assert setup["method"] == "toy" and setup["unlabelled_cases"] == []  # SEMI = False: no unlabelled cases read
    assert "Toy V-Net" in next((tmp_path / "report").glob("*/report.md")).read_text()


def test_a_task_added_by_its_package_alone_plans_runs_and_reports(cli, tmp_path):
    config = tmp_path / "toy.yaml"  # its own sections only: a street config's are not the toy's
    config.write_text(f"plugins: [tests.toys.toy_task]\ntask: toy\npaths: {{workdir: {tmp_path / 'w'}}}\n")
    args = ("-c", str(config))
    assert cli("plan", *sets("task=toy")).exit_code == 2  # without its plugin module: not a registered task
    assert cli("plan", "-c", str(config), *sets("data.labelled_target=3")).exit_code == 2  # not a toy section
    plan = cli("plan", *args)
    assert plan.exit_code == 0 and "evaluate" in plan.output and "caption" not in plan.output, plan.output
    result = cli("run", *args)
    assert result.exit_code == 0, result.output
    score = float(np.random.default_rng(0).random(100).mean())
    assert f"toy score: {score:.3f}" in result.output
    assert sorted(p.name for p in (tmp_path / "w").iterdir() if p.is_dir()) == ["evaluate", "ingest", "report"]
    assert cli("run", *args).exit_code == 0  # a second run: its stages are fingerprinted and reused like any other
    from pipeline.manifest import Manifest

    manifest = Manifest(tmp_path / "w" / "manifest.duckdb", read_only=True)
    assert [len(manifest.stage_runs(s)) for s in ("ingest", "evaluate", "report")] == [1, 1, 1]
    assert cli("stage", "caption", *args).exit_code == 2  # not one of its stages
