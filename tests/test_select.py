"""`semidavil select` (issue 37) through the CLI on the small demo world: a valid split file for each strategy that
the split stage reads, the labelled images kept, the teacher's scores reused on a rerun, rounds, and bad input
named with nothing written."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import run_here, small_overrides


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A trained small demo run: (overrides, its train directory)."""
    from pipeline.cli import app

    tmp = tmp_path_factory.mktemp("select")
    overrides = small_overrides(tmp / "w", "cluster.num_cpus=2")
    patch = pytest.MonkeyPatch()
    run_here(patch)
    result = CliRunner().invoke(app, ["run", *sets(*overrides)], catch_exceptions=False)
    patch.undo()
    assert result.exit_code == 0, result.output
    return overrides, next((tmp / "w" / "train").glob("*"))


def sets(*overrides: str) -> list[str]:
    return [arg for o in overrides for arg in ("--set", o)]


def select(*args):
    from pipeline.cli import app

    return CliRunner().invoke(app, ["select", *map(str, args)], catch_exceptions=False)


def lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line and not line.startswith("#")]


@pytest.mark.parametrize("strategy", ["random", "diverse", "uncertainty", "mixed"])
def test_each_strategy_writes_a_split_the_split_stage_reads(world, tmp_path, strategy):
    from pipeline.config import load_config
    from pipeline.runner import run_pipeline
    from stages.index import read_split

    overrides, train_dir = world
    out = tmp_path / f"{strategy}.txt"
    result = select("--budget", 3, "--strategy", strategy, "--from", train_dir, "--out", out, "--html",
                    *sets(*overrides))
    assert result.exit_code == 0, result.output
    page = out.with_suffix(".html").read_text()
    assert 'data-chosen="3"' in page and page.count('_pred.png"') == 3  # each chosen image, its prediction
    assert all((out.parent / f"{out.stem}_files" / f"{i.replace('/', '__')}.png").exists() for i in lines(out)[4:])
    kept = sorted(read_split(next((Path(overrides[-2].split("=", 1)[1]) / "split").glob("*"))))
    chosen = lines(out)
    assert chosen[:4] == kept and len(set(chosen)) == 7  # 4 kept, 3 new
    ranking = list(csv.DictReader(out.with_suffix(".csv").open()))
    assert len(ranking) == 8 and {r["image_id"] for r in ranking if r["chosen"] == "True"} == set(chosen[4:])
    cfg = load_config(None, [*overrides, f"data.split_file={out}", f"paths.workdir={tmp_path / 'w2'}"])
    run_pipeline(cfg, ["ingest", "split"])
    split_dir = next((tmp_path / "w2" / "split").glob("*"))
    assert read_split(split_dir) == set(chosen)


def test_a_rerun_reuses_the_teachers_scores_and_a_second_round_adds_more(world, tmp_path, monkeypatch):
    import stages.street.select as selecting

    overrides, train_dir = world
    first = tmp_path / "a.txt"
    assert select("--budget", 2, "--strategy", "uncertainty", "--from", train_dir, "--out", first,
                  *sets(*overrides)).exit_code == 0
    monkeypatch.setattr(selecting, "score_images", lambda *a: pytest.fail("scored again"))
    again = tmp_path / "b.txt"
    assert select("--budget", 2, "--strategy", "uncertainty", "--from", train_dir, "--out", again,
                  *sets(*overrides)).exit_code == 0
    assert lines(first) == lines(again)
    from pipeline.manifest import Manifest

    workdir = Path(overrides[-2].split("=", 1)[1])
    scored = Manifest(workdir / "manifest.duckdb", read_only=True).stage_runs("select", status="complete")
    assert len(scored) == 1 and scored[0].rows == 8 and (Path(scored[0].output_path) / "scores.parquet").exists()
    second = tmp_path / "round2.txt"  # from the split the first round wrote: its 6 kept, 2 more
    result = select("--budget", 2, "--strategy", "diverse", "--out", second,
                    *sets(*overrides, f"data.split_file={first}"))
    assert result.exit_code == 0, result.output
    assert lines(second)[:6] == sorted(lines(first)) and len(set(lines(second))) == 8


@pytest.mark.parametrize(("args", "message"), [
    (["--budget", 99, "--strategy", "random"], "--budget: 99 asked for, the target has 8 unlabelled"),
    (["--budget", 2, "--strategy", "uncertainty"], "--strategy uncertainty: scores images by a trained model"),
    (["--budget", 2, "--strategy", "nope"], "--strategy: 'nope' is not one of"),
    (["--budget", 2, "--strategy", "mixed", "--from", "NOT_A_RUN"], "--from: NOT_A_RUN is not a train directory"),
])
def test_bad_requests_are_named_and_nothing_is_written(world, tmp_path, args, message):
    overrides, _ = world
    out = tmp_path / "split.txt"
    result = select(*args, "--out", out, *sets(*overrides))
    assert result.exit_code == 1 and message in result.output
    assert not out.exists() and not out.with_suffix(".csv").exists()


def test_a_target_without_captions_cannot_be_chosen_for_diversity(tmp_path):
    from pipeline.config import load_config
    from pipeline.runner import run_pipeline

    overrides = small_overrides(tmp_path / "w")
    run_pipeline(load_config(None, overrides), ["ingest", "split"])
    out = tmp_path / "split.txt"
    result = select("--budget", 2, "--strategy", "diverse", "--out", out, *sets(*overrides))
    assert result.exit_code == 1 and "no text embeddings" in result.output
    assert not out.exists()


def test_sweep_compares_selections_in_one_command_and_the_report_shows_them(tmp_path, monkeypatch):
    from pipeline.cli import app

    run_here(monkeypatch)
    overrides = small_overrides(tmp_path / "w", "cluster.num_cpus=2")
    result = CliRunner().invoke(app, ["sweep", "--labelled", "4", "--selection", "random,diverse", *sets(*overrides)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    chosen = tmp_path / "w" / "select" / "diverse_4_seed0.txt"
    assert len(lines(chosen)) == 4
    report = next((tmp_path / "w" / "report").glob("*/report.md")).read_text()
    assert "labelled images chosen by" in report and "| diverse |" in report and "| random |" in report


def test_sweep_refuses_an_unknown_selection_or_a_strategy_with_all(tmp_path):
    from pipeline.cli import app

    overrides = sets(*small_overrides(tmp_path / "w"))
    for args, message in ((["--labelled", "4", "--selection", "best"], "--selection: 'best' is not one of"),
                          (["--labelled", "all", "--selection", "diverse"], "--labelled all labels every one")):
        result = CliRunner().invoke(app, ["sweep", *args, *overrides], catch_exceptions=False)
        assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "w").exists()
