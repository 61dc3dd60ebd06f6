"""What every task's report shares: tables (markdown and HTML), mean ± std over seeds, matplotlib figures (training
curves, per-class bars, confusion matrices), example images, and the jinja2 page written whole."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.store import atomic_path, write_atomic

EXAMPLE_WIDTH = 512  # example images are stored at this width


@dataclass(frozen=True)
class Table:
    id: str
    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""

    def markdown(self) -> str:
        lines = ["| " + " | ".join(self.header) + " |", "|" + "---|" * len(self.header)]
        body = "\n".join([*lines, *("| " + " | ".join(r) + " |" for r in self.rows)])
        return f"## {self.title}\n\n" + (f"{self.note}\n\n" if self.note else "") + body


def pct(value: float | None, scale: float = 100.0) -> str:
    """``0.711`` as ``71.1``; None or NaN as ``-``."""
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{scale * value:.1f}"


def mean_std(values: list[float], scale: float = 100.0) -> str:
    """One value as ``71.1``; several (seeds) as ``71.1 ± 0.4`` (sample std); NaNs left out."""
    finite = [v for v in values if v is not None and not math.isnan(v)]
    if len(finite) < 2:
        return pct(finite[0] if finite else None, scale)
    return f"{pct(statistics.mean(finite), scale)} ± {scale * statistics.stdev(finite):.1f}"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> str:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    _pyplot().close(fig)
    return path.name


def curves_figure(named_metrics: list[tuple[str, list[dict[str, float]]]], path: Path,
                  curves: tuple[tuple[str, str], ...]) -> str:
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
    return save_figure(fig, path)


def per_class_figure(named_iou: list[tuple[str, dict[str, float]]], classes: tuple[str, ...], path: Path) -> str:
    """Grouped bars: per class, one bar per run."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(classes)), 3.8))
    width = 0.8 / max(len(named_iou), 1)
    x = np.arange(len(classes))
    for k, (name, iou) in enumerate(named_iou):
        ax.bar(x + k * width, [100 * np.nan_to_num(iou.get(c, np.nan)) for c in classes], width, label=name)
    ax.set_xticks(x + 0.4 - width / 2, classes, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("IoU (%)")
    ax.legend(fontsize=6)
    fig.tight_layout()
    return save_figure(fig, path)


def confusion_figure(conf: np.ndarray, classes: tuple[str, ...], name: str, path: Path) -> str:
    """The confusion matrix, each ground-truth row normalised to 1."""
    plt = _pyplot()
    rows = conf.sum(1, keepdims=True)
    norm = np.divide(conf, rows, out=np.zeros(conf.shape, dtype=np.float64), where=rows > 0)
    fig, ax = plt.subplots(figsize=(6.5, 5.8))
    im = ax.imshow(norm, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=6)
    ax.set_yticks(range(len(classes)), classes, fontsize=6)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    ax.set_title(name, fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return save_figure(fig, path)


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


def render_template(template: Path, context: dict[str, Any], path: Path) -> None:
    """The jinja2 ``template`` rendered with ``context``, written whole to ``path``."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(template.parent), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    html = env.get_template(template.name).render(**context)
    write_atomic(path, lambda tmp: tmp.write_text(html))
