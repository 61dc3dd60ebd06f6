"""The report lays evaluated runs out as the paper's tables."""

from __future__ import annotations

import json

from pipeline.config import load_config
from pipeline.manifest import Manifest
from pipeline.stage import StageContext
from stages import report
from stages.datasets import CLASSES


def fake_run(workdir, fp, **run):
    out = workdir / "evaluate" / fp
    out.mkdir(parents=True)
    per_class = {c: 0.5 + 0.01 * i for i, c in enumerate(CLASSES)}
    metrics = {"mIoU19": run.pop("miou"), "mIoU16": 0.6, "mIoU13": 0.65, "images": 10, "per_class": per_class}
    desc = {"source": "gta5", "target": "cityscapes", "labelled_target": 100, "split_file": "", "ct": True,
            "dyce": True, "dlg": True, "vlp": True, "vision_init": "clip", "vision_model": "ViT-B-16",
            "iterations": 10, "evaluate_fingerprint": fp, "train_dir": str(workdir / "train" / fp), **run}
    (out / "metrics.json").write_text(json.dumps(metrics))
    (out / "run.json").write_text(json.dumps(desc))
    (workdir / "train" / fp).mkdir(parents=True)
    (workdir / "train" / fp / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n')


def test_report_tables(tmp_path):
    fake_run(tmp_path, "aaa", miou=0.711)
    fake_run(tmp_path, "bbb", miou=0.703, dyce=False)
    fake_run(tmp_path, "ccc", miou=0.725, labelled_target=200)
    fake_run(tmp_path, "ddd", miou=0.769, source="synthia")
    ctx = StageContext(load_config(), "report", "r" * 64, tmp_path / "report" / "x", {},
                       Manifest(tmp_path / "m.duckdb"), tmp_path)
    ctx.out_dir.mkdir(parents=True)
    result = report.run(ctx)
    assert result.rows == 4
    text = (ctx.out_dir / "report.md").read_text()
    assert "### gta5 → cityscapes (mIoU19, labelled target images)" in text
    assert "| SemiDAViL w/ DyCE | 71.1 | 72.5 |" in text  # N=100 and N=200 in one row
    assert "| SemiDAViL w/o DyCE | 70.3 |  |" in text
    assert "### synthia → cityscapes (mIoU16" in text and "| SemiDAViL w/ DyCE | 60.0 |" in text
    assert "| ✓ | - | ✓ | ✓ | gta5→cityscapes | 100 | 70.3 |" in text  # Table 3 row without DyCE
    assert (ctx.out_dir / "loss.png").stat().st_size > 1000
    assert (ctx.out_dir / "runs.parquet").exists()
