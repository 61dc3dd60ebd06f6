"""The report lays evaluated runs out as the paper's tables, and is rebuilt when a run is evaluated."""

from __future__ import annotations

import json

from pipeline.config import load_config
from pipeline.manifest import Manifest
from pipeline.runner import stage_payload
from pipeline.stage import StageContext, fingerprint, stage_dir
from stages import report
from stages.datasets import CLASSES


def fake_run(workdir, manifest, fp, **run):
    """An evaluated run as the evaluate stage leaves it: files in its directory, complete in the manifest."""
    out = stage_dir(workdir, "evaluate", fp)
    out.mkdir(parents=True)
    per_class = {c: 0.5 + 0.01 * i for i, c in enumerate(CLASSES)}
    metrics = {"mIoU19": run.pop("miou"), "mIoU16": 0.6, "mIoU13": 0.65, "images": 10, "per_class": per_class}
    desc = {"source": "gta5", "target": "cityscapes", "labelled_target": 100, "split_file": "", "ct": True,
            "dyce": True, "dlg": True, "vlp": True, "vision_init": "clip", "vision_model": "ViT-B-16",
            "iterations": 10, "seed": [0, 0], "evaluate_fingerprint": fp, "train_dir": str(workdir / "train" / fp),
            **run}
    (out / "metrics.json").write_text(json.dumps(metrics))
    (out / "run.json").write_text(json.dumps(desc))
    (workdir / "train" / fp).mkdir(parents=True)
    (workdir / "train" / fp / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n')
    manifest.end_stage(manifest.start_stage("r", "evaluate", fp, out), "complete", rows=10)


def report_context(tmp_path, manifest):
    ctx = StageContext(load_config(), "report", "r" * 64, tmp_path / "report" / "x", {}, manifest, tmp_path)
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    return ctx


def test_report_tables(tmp_path):
    m = Manifest(tmp_path / "m.duckdb")
    fake_run(tmp_path, m, "aaa", miou=0.711)
    fake_run(tmp_path, m, "bbb", miou=0.703, dyce=False)
    fake_run(tmp_path, m, "ccc", miou=0.725, labelled_target=200)
    fake_run(tmp_path, m, "ddd", miou=0.769, source="synthia")
    fake_run(tmp_path, m, "eee", miou=0.5, ct=False, vlp=False, vision_init="random")
    ctx = report_context(tmp_path, m)
    result = report.run(ctx)
    assert result.rows == 5
    text = (ctx.out_dir / "report.md").read_text()
    assert "### gta5 → cityscapes (mIoU19, labelled target images)" in text
    assert "| SemiDAViL | 71.1 | 72.5 |" in text  # N=100 and N=200 in one row
    assert "| CT+VLP+DLG | 70.3 |  |" in text
    assert "| DyCE+DLG (random init) | 50.0 |  |" in text
    assert "### synthia → cityscapes (mIoU16" in text and "| SemiDAViL | 60.0 |" in text
    assert "| ✓ | - | ✓ | ✓ | gta5→cityscapes | 100 | 70.3 | 1 |" in text  # Table 3 row without DyCE
    assert (ctx.out_dir / "loss.png").stat().st_size > 1000
    assert (ctx.out_dir / "runs.parquet").exists()


def test_seeds_share_a_cell_as_mean_and_std(tmp_path):
    m = Manifest(tmp_path / "m.duckdb")
    for k, miou in enumerate((0.70, 0.72, 0.74)):
        fake_run(tmp_path, m, f"s{k}", miou=miou, seed=[k, k])
    ctx = report_context(tmp_path, m)
    report.run(ctx)
    text = (ctx.out_dir / "report.md").read_text()
    assert "| SemiDAViL | 72.0 ± 2.0 |" in text
    assert "| ✓ | ✓ | ✓ | ✓ | gta5→cityscapes | 100 | 72.0 ± 2.0 | 3 |" in text


def test_a_newly_evaluated_run_gives_a_new_report(tmp_path):
    cfg = load_config(None, [f"paths.workdir={tmp_path}"])
    m = Manifest(tmp_path / "manifest.duckdb")
    fake_run(tmp_path, m, "aaa", miou=0.7)

    def report_fp():
        return fingerprint(stage_payload(cfg, m, "report", {"evaluate": "a" * 64}))

    before = report_fp()
    fake_run(tmp_path, m, "bbb", miou=0.6, dyce=False)  # another config was evaluated in this work directory
    assert report_fp() != before
    assert report.evaluated(m, tmp_path) == ["aaa", "bbb"]
