"""The street report's figures and example rows, beside its ``index.html.j2``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stages.reporting import render_template, save_example
from stages.street.datasets import colourise, load_label

DEFAULT_LAYOUT = "cityscapes"  # the examples of run records written before they named their dataset
TEMPLATE = Path(__file__).with_name("index.html.j2")
CURVES = (("loss", "total loss"), ("loss_sup", "L_sup (DyCE or CE)"), ("loss_ct", "L_CT"), ("lr", "learning rate"),
          ("ct_pseudo", "share taught by pseudo-labels"), ("ct_pasted_gt", "share taught by pasted ground truth"))


def example_cells(example: dict[str, str], out_dir: Path, key: str) -> list[str]:
    """image | ground truth | prediction of one saved example, copied beside index.html."""
    from stages.street.images import read_rgb

    stem = f"{key}_{example['image_id'].replace('/', '__')}"
    if Path(example.get("truth", "")).is_file():  # coloured by the evaluation, in its class set's palette
        truth = read_rgb(example["truth"])
    else:  # a run evaluated before it saved its ground truth: Cityscapes' classes
        truth = colourise(load_label(example["label"], example.get("dataset", DEFAULT_LAYOUT)))
    return [save_example(read_rgb(example["image"]), out_dir / "examples" / f"{stem}_image.png"),
            save_example(truth, out_dir / "examples" / f"{stem}_gt.png"),
            save_example(read_rgb(example["prediction"]), out_dir / "examples" / f"{stem}_pred.png")]


def render(context: dict[str, Any], path: Path) -> None:
    render_template(TEMPLATE, context, path)
