"""`sweep` and `ablate`: grids of ordinary runs that share the language stages and end with one report."""

from __future__ import annotations

import pytest

from pipeline.config import load_config
from pipeline.experiments import ablation_cells, parse_labelled, parse_seeds, run_grid, sweep_cells
from pipeline.runner import fingerprints, open_manifest, stage_dir
from tests.conftest import run_here, small_overrides


def test_grid_parsing():
    assert parse_labelled("0,100, all") == [0, 100, "all"]
    with pytest.raises(ValueError, match="--labelled: 'many'"):
        parse_labelled("0,many")
    assert parse_seeds("0,1,2") == [0, 1, 2]
    cells = sweep_cells([0, 10], [0, 1])
    assert [c.name for c in cells] == ["labelled=0 seed=0", "labelled=0 seed=1", "labelled=10 seed=0",
                                       "labelled=10 seed=1"]
    assert "data.seed=1" in cells[1].overrides and "train.seed=1" in cells[1].overrides


def test_ablation_rows_are_the_papers_table_3():
    cfg = load_config(None, [])
    rows = {c.name: set(c.overrides) for c in ablation_cells(cfg)}
    assert list(rows) == ["CT", "CT+DyCE", "CT+VLP", "CT+VLP+DLG", "CT+DyCE+VLP+DLG",
                          "CT+DyCE+VLP+DLG, shuffled captions"]
    assert rows["CT"] >= {"train.consistency=true", "loss.dyce=false", "model.vision_init=random", "model.dlg=false"}
    assert rows["CT+VLP+DLG"] >= {"loss.dyce=false", "model.vision_init=clip", "model.dlg=true"}
    assert rows["CT+DyCE+VLP+DLG"] >= {"loss.dyce=true", "model.vision_init=clip", "model.dlg=true",
                                       "model.dlg_captions=own"}
    assert rows["CT+DyCE+VLP+DLG, shuffled captions"] == \
        rows["CT+DyCE+VLP+DLG"] - {"model.dlg_captions=own"} | {"model.dlg_captions=shuffled"}


def test_sweep_then_ablate_caption_once_and_report_every_run(tmp_path, ray_local, monkeypatch):
    # training and evaluation run in this process: the same code, without Ray's start-up for each of the cells
    run_here(monkeypatch)
    base = small_overrides(tmp_path / "w", "train.iterations=2", "data.demo.n_target_train=8")
    run_grid(None, base, sweep_cells([0, 4], [0]))
    last = run_grid(None, base, ablation_cells(load_config(None, base)))
    manifest = open_manifest(last)
    for stage in ("ingest", "caption", "embed_text"):
        assert len(manifest.stage_runs(stage, status="complete")) == 1, stage
    assert len(manifest.stage_runs("split", status="complete")) == 2  # 0 and 4 labelled
    # the ablation's full row is the sweep's labelled=4 cell: trained once
    assert len(manifest.stage_runs("train", status="complete")) == 2 + 6 - 1
    report = (stage_dir(last.paths.workdir, "report", fingerprints(last)["report"]) / "report.md").read_text()
    assert "7 evaluated run(s)" in report
    table_1 = report.split("(paper Tables 1-2)")[1].split("(paper Table 3)")[0]
    assert "| method | 0 | 4 |" in table_1  # the sweep's columns
    assert "| CT+DyCE+DLG (random init) |" in table_1
    table_3 = report.split("(paper Table 3)")[1].split("(paper Table 4)")[0]
    # tiny random towers: CT and CT+VLP both ran without VLP weights, and the report says so (2 runs, one row)
    assert "| ✓ | - | - | - | - | demo→demo | 4 |" in table_3 and table_3.count("| ✓ | - | - | - | - | demo→demo | 4 |") == 1
    # the caption-content control sits beside DLG with its own captions
    assert "| ✓ | ✓ | - | ✓ | own | demo→demo | 4 |" in table_3
    assert "| ✓ | ✓ | - | ✓ | shuffled | demo→demo | 4 |" in table_3
