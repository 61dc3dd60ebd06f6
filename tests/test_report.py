"""The report lays evaluated runs out as the paper's tables, and is rebuilt when a run is evaluated."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess

import numpy as np
from PIL import Image

from pipeline.config import load_config
from pipeline.manifest import Manifest
from pipeline.runner import stage_payload
from pipeline.stage import StageContext, fingerprint, stage_dir
from stages import report
from stages.street.datasets import CLASSES


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
    desc.setdefault("examples", fake_examples(workdir, out, n=2))
    (out / "metrics.json").write_text(json.dumps(metrics))
    (out / "run.json").write_text(json.dumps(desc))
    np.save(out / "confusion.npy", np.random.default_rng(0).integers(0, 100, (len(CLASSES), len(CLASSES))))
    (workdir / "train" / fp).mkdir(parents=True)
    (workdir / "train" / fp / "metrics.jsonl").write_text(
        '{"step": 1, "loss": 2.0, "loss_sup": 1.5, "loss_ct": 0.5, "lr": 0.001, "ct_passed": 0.1}\n'
        '{"step": 2, "loss": 1.5, "loss_sup": 1.2, "loss_ct": 0.3, "lr": 0.0005, "ct_passed": 0.3}\n')
    manifest.end_stage(manifest.start_stage("r", "evaluate", fp, out), "complete", rows=10)


def fake_examples(workdir, out, n):
    """Saved predictions as evaluate leaves them: val image, Cityscapes label file, colourised prediction."""
    rng, examples = np.random.default_rng(1), []
    for k in range(n):
        image_id = f"val/city/img{k}"
        paths = {"image": workdir / "data" / f"img{k}.png", "label": workdir / "data" / f"img{k}_labelIds.png",
                 "prediction": out / "predictions" / f"val__city__img{k}.png"}
        for p in paths.values():
            p.parent.mkdir(parents=True, exist_ok=True)
        if not paths["image"].exists():
            Image.fromarray(rng.integers(0, 255, (64, 128, 3), dtype=np.uint8)).save(paths["image"])
            Image.fromarray(rng.choice([7, 8, 11, 26], (64, 128)).astype(np.uint8)).save(paths["label"])
        Image.fromarray(rng.integers(0, 255, (64, 128, 3), dtype=np.uint8)).save(paths["prediction"])
        examples.append({"image_id": image_id, **{k: str(v) for k, v in paths.items()},
                         "caption": f"a street with {k + 1} cars"})
    return examples


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
    fake_run(tmp_path, m, "fff", miou=0.42, dlg_captions="shuffled",
             mixing="classmix: cross-domain 50 %, within the target 50 %")
    ctx = report_context(tmp_path, m)
    result = report.run(ctx)
    assert result.rows == 6
    text = (ctx.out_dir / "report.md").read_text()
    assert "## gta5 → cityscapes: mIoU19 by labelled target images (paper Tables 1-2)" in text
    assert "| SemiDAViL | 71.1 | 72.5 |" in text  # N=100 and N=200 in one row
    assert "| CT+VLP+DLG | 70.3 |  |" in text
    assert "| DyCE+DLG (random init) | 50.0 |  |" in text
    assert "## synthia → cityscapes: mIoU16" in text and "| SemiDAViL | 60.0 |" in text
    # Table 3: ours, then the paper's published figure for the same components, benchmark and labelled count
    assert "| ✓ | - | ✓ | ✓ | own | gta5→cityscapes | 100 | mIoU19 | 70.3 | 1 | 70.3 |" in text
    assert "| ✓ | ✓ | ✓ | ✓ | own | synthia→cityscapes | 100 | mIoU16 | 60.0 | 1 | 76.9 |" in text
    assert "| - | ✓ | - | ✓ | own | gta5→cityscapes | 100 | mIoU19 | 50.0 | 1 | - |" in text  # not in the paper
    # the caption-content control: beside DLG with its own captions, and no paper figure (the paper has none)
    assert "| ✓ | ✓ | ✓ | ✓ | shuffled | gta5→cityscapes | 100 | mIoU19 | 42.0 | 1 | - |" in text
    assert "| SemiDAViL, shuffled captions | 42.0 |" in text
    assert "| SemiDAViL, shuffled captions, N=100, seed 0 | classmix: cross-domain 50 %, within the target 50 % |" in text
    for figure in ("curves.png", "per_class.png", "confusion_0.png", "index.html"):
        assert (ctx.out_dir / figure).stat().st_size > 1000, figure
    assert (ctx.out_dir / "runs.parquet").exists()


def test_seeds_share_a_cell_as_mean_and_std(tmp_path):
    m = Manifest(tmp_path / "m.duckdb")
    for k, miou in enumerate((0.70, 0.72, 0.74)):
        fake_run(tmp_path, m, f"s{k}", miou=miou, seed=[k, k])
    ctx = report_context(tmp_path, m)
    report.run(ctx)
    text = (ctx.out_dir / "report.md").read_text()
    assert "| SemiDAViL | 72.0 ± 2.0 |" in text
    assert "| ✓ | ✓ | ✓ | ✓ | own | gta5→cityscapes | 100 | mIoU19 | 72.0 ± 2.0 | 3 | 71.1 |" in text


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


CHECK = """<script>
window.addEventListener("load", () => {
  const images = [...document.images];
  const broken = images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute("src"));
  const tables = [...document.querySelectorAll("table[data-table]")].map(t => t.dataset.table);
  document.title = JSON.stringify({images: images.length, broken, tables});
});
</script>"""


def browser_check(page) -> dict:
    """Open ``page`` (with CHECK added) in headless Chromium; what the page saw once loaded."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium package is needed (.ci/run installs it)"
    probe = page.with_name("_check.html")
    probe.write_text(page.read_text().replace("</body>", CHECK + "</body>"))
    proc = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
                           "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    probe.unlink()
    title = re.search(r"<title>(.*?)</title>", proc.stdout, re.S)
    assert title, proc.stderr[-2000:]
    return json.loads(html.unescape(title.group(1)))


def test_the_html_report_renders_in_a_browser_with_every_table_and_image(tmp_path):
    m = Manifest(tmp_path / "m.duckdb")
    fake_run(tmp_path, m, "aaa", miou=0.711)
    fake_run(tmp_path, m, "bbb", miou=0.633, dlg=False, vlp=False, vision_init="random")
    fake_run(tmp_path, m, "ccc", miou=0.545, dyce=False, dlg=False, vlp=False, vision_init="random")
    ctx = report_context(tmp_path, m)
    report.run(ctx)
    seen = browser_check(ctx.out_dir / "index.html")
    assert seen["tables"] == ["table-gta5-cityscapes", "table-3", "table-4"]
    assert seen["broken"] == []
    # curves, per-class bars, 3 confusion matrices, and 2 examples x (image, truth, prediction) per run, with
    # the run without DyCE beside the CT+DyCE one (the paper's Figure 4)
    assert seen["images"] == 2 + 3 + 2 * 3 + 2 * 4 + 2 * 3
    page = (ctx.out_dir / "index.html").read_text()
    assert "prediction without DyCE" in page and "paper (published)" in page
    assert page.count("caption DLG read: “a street with 1 cars”") == 1  # the DLG run's examples show captions
    assert page.count("caption DLG read: (no DLG: no caption read)") == 4  # the two runs without DLG
    assert "src=\"/" not in page and "file:" not in page  # every reference is relative: the folder moves whole


def test_a_run_without_consistency_beside_one_with_it_tabulates(tmp_path):
    """The sequence that broke the report: at 0 labelled target images, a CT run (colour jitter 0.5, pasted ground
    truth in L_sup) then `--set train.consistency=false` (no jitter, no pasted ground truth: "-") in one work
    directory. Each record keeps its values; the placeholder is a null of the declared type."""
    import pyarrow.parquet as pq

    m = Manifest(tmp_path / "m.duckdb")
    fake_run(tmp_path, m, "aaa", miou=0.33, labelled_target=0, colour_jitter=0.5, pasted_gt="sup",
             mixing="classmix: cross-domain 100 %, within the target 0 %")
    fake_run(tmp_path, m, "bbb", miou=0.06, labelled_target=0, ct=False, colour_jitter="-", pasted_gt="-",
             mixing="none (no consistency training)", some_later_key={"a": 1})
    ctx = report_context(tmp_path, m)
    assert report.run(ctx).rows == 2
    table = pq.read_table(ctx.out_dir / "runs.parquet")
    assert table["colour_jitter"].to_pylist() == [0.5, None]
    assert table["pasted_gt"].to_pylist() == ["sup", "-"]
    assert table["labelled_target"].to_pylist() == ["0", "0"]
    assert table["some_later_key"].to_pylist() == [None, '{"a": 1}']  # an undeclared key is kept as its JSON
    assert table.schema.field("mIoU19").type == "double"


def test_tables_1_2_show_how_the_labelled_images_were_chosen_when_runs_differ(tmp_path):
    """Runs on a select split file beside runs on the seeded draw: a column of the strategy (issue 37), and each
    strategy its own row; runs that all drew at random keep the paper's layout (test_report_tables)."""
    from stages.index import selection_of

    chosen = tmp_path / "next.txt"
    chosen.write_text("# semidavil select --strategy diverse --budget 8: 0 kept, 8 new\nval/city/img0\n")
    assert selection_of(chosen) == "diverse" and selection_of(None) == "random"
    (tmp_path / "mine.txt").write_text("val/city/img0\n")
    assert selection_of(tmp_path / "mine.txt") == "file"
    m = Manifest(tmp_path / "m.duckdb")
    fake_run(tmp_path, m, "aaa", miou=0.60, labelled_target=8)
    fake_run(tmp_path, m, "bbb", miou=0.66, labelled_target=8, selection=selection_of(chosen), split_file=str(chosen))
    ctx = report_context(tmp_path, m)
    report.run(ctx)
    text = (ctx.out_dir / "report.md").read_text()
    assert "| method | labelled images chosen by | 8 |" in text
    assert "| SemiDAViL | diverse | 66.0 |" in text and "| SemiDAViL | random | 60.0 |" in text
