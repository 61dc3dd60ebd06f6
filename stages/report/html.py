"""The report as a self-contained HTML folder: ``index.html`` (jinja2) with matplotlib figures and example
images beside it, readable offline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipeline.store import atomic_path, write_atomic
from stages.datasets import CLASSES, colourise, load_label

DEFAULT_LAYOUT = "cityscapes"  # the examples of run records written before they named their dataset

CURVES = (("loss", "total loss"), ("loss_sup", "L_sup (DyCE or CE)"), ("loss_ct", "L_CT"), ("lr", "learning rate"),
          ("ct_pseudo", "share taught by pseudo-labels"), ("ct_pasted_gt", "share taught by pasted ground truth"))
EXAMPLE_WIDTH = 512  # example images are stored at this width


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> str:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    _pyplot().close(fig)
    return path.name


def curves_figure(named_metrics: list[tuple[str, list[dict[str, float]]]], path: Path,
                  curves: tuple[tuple[str, str], ...] = CURVES) -> str:
    """One panel per logged quantity (``curves``: key, title), one line per run."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(curves), figsize=(4 * len(curves), 3.2))
    for ax, (key, title) in zip(axes, curves, strict=True):
        for name, metrics in named_metrics:
            points = [(m["step"], m[key]) for m in metrics if key in m]
            if points:
                ax.plot(*zip(*points, strict=True), label=name)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("iteration", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    return _save(fig, path)


def per_class_figure(named_iou: list[tuple[str, dict[str, float]]], path: Path) -> str:
    """Grouped bars: per class, one bar per run."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(12, 3.8))
    width = 0.8 / max(len(named_iou), 1)
    x = np.arange(len(CLASSES))
    for k, (name, iou) in enumerate(named_iou):
        ax.bar(x + k * width, [100 * np.nan_to_num(iou[c]) for c in CLASSES], width, label=name)
    ax.set_xticks(x + 0.4 - width / 2, CLASSES, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("IoU (%)")
    ax.legend(fontsize=6)
    fig.tight_layout()
    return _save(fig, path)


def confusion_figure(conf: np.ndarray, name: str, path: Path) -> str:
    plt = _pyplot()
    rows = conf.sum(1, keepdims=True)
    norm = np.divide(conf, rows, out=np.zeros(conf.shape, dtype=np.float64), where=rows > 0)
    fig, ax = plt.subplots(figsize=(6.5, 5.8))
    im = ax.imshow(norm, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(CLASSES)), CLASSES, rotation=90, fontsize=6)
    ax.set_yticks(range(len(CLASSES)), CLASSES, fontsize=6)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    ax.set_title(name, fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return _save(fig, path)


def save_example(array: np.ndarray, path: Path) -> str:
    """An RGB array at ``EXAMPLE_WIDTH`` (nearest neighbour: label colours stay exact), as PNG."""
    from PIL import Image

    image = Image.fromarray(array)
    if image.width > EXAMPLE_WIDTH:
        image = image.resize((EXAMPLE_WIDTH, round(image.height * EXAMPLE_WIDTH / image.width)), Image.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return f"{path.parent.name}/{path.name}"


def example_cells(example: dict[str, str], out_dir: Path, key: str) -> list[str]:
    """image | ground truth | prediction of one saved example, copied beside index.html."""
    from stages.images import read_rgb

    stem = f"{key}_{example['image_id'].replace('/', '__')}"
    return [save_example(read_rgb(example["image"]), out_dir / "examples" / f"{stem}_image.png"),
            save_example(colourise(load_label(example["label"], example.get("dataset", DEFAULT_LAYOUT))), out_dir / "examples" / f"{stem}_gt.png"),
            save_example(read_rgb(example["prediction"]), out_dir / "examples" / f"{stem}_pred.png")]


def render(context: dict[str, Any], path: Path) -> None:
    render_template("index.html.j2", context, path)


def render_template(name: str, context: dict[str, Any], path: Path) -> None:
    """``name`` (a jinja2 template beside this module) rendered with ``context``, written whole to ``path``."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    html = env.get_template(name).render(**context)
    write_atomic(path, lambda tmp: tmp.write_text(html))
