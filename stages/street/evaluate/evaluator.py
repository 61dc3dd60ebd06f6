"""The evaluate stage's work: an ``Evaluator`` (in a Ray actor) scores the val images; the driver gathers
the confusion counts and writes the metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image

from models.device import pick_device
from models.inference import label_map
from pipeline.config import Config
from pipeline.stage import StageContext, StageError, StageResult
from pipeline.store import atomic_path, write_json, write_parquet
from stages.checkpoint import load_model
from stages.evaluation import Held, evaluate_on_ray
from stages.index import INDEX_FILE, read_index, selection_of
from stages.street.datasets import dataset_roots, labels
from stages.street.images import read_rgb, resize_image
from stages.street.language import TextEmbeddingStore, served_captions
from stages.street.metrics import confusion, iou_per_class, miou
from stages.tasks import task_of
from stages.trained import CHECKPOINT, read_setup

LABEL_IDS_DIR = "labelIds"  # predictions/labelIds/: in the target dataset's own format (Cityscapes: labelIds)
EXAMPLES = 10  # saved predictions the report shows, at most


def prediction_path(pred_dir: Path, image_id: str) -> Path:
    return pred_dir / f"{image_id.replace('/', '__')}.png"


def label_ids_path(pred_dir: Path, image_id: str, codec: Any) -> Path:
    """Where the prediction goes in the dataset's own format, named as the dataset names it (Cityscapes:
    ``<city>_<seq>_<frame>_leftImg8bit.png``, for cityscapesscripts; ``codec``: the target's ``labels``)."""
    return pred_dir / LABEL_IDS_DIR / codec.name(image_id.rsplit("/", 1)[-1])


def truth_path(pred_dir: Path, image_id: str) -> Path:
    """The ground truth in the class set's colours, for the report's examples."""
    return pred_dir / "truth" / f"{image_id.replace('/', '__')}.png"


def saves(cfg: Config, k: int) -> bool:
    """Whether the k-th val image's prediction is saved (``eval.save_predictions``: a count or ``all``)."""
    return cfg.eval.save_predictions == "all" or k < cfg.eval.save_predictions


def save_prediction(pred_dir: Path, image_id: str, pred: np.ndarray, codec: Any, classes: Any) -> None:
    """The colour PNG (the class set's palette) and the PNG in the dataset's format, named after the image."""
    for path, array in ((prediction_path(pred_dir, image_id), classes.colourise(pred)),
                        (label_ids_path(pred_dir, image_id, codec), codec.encode(pred))):
        save_png(path, array)


def save_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


class Evaluator(Held):
    """Holds the model where it runs (``stages.evaluation``) and scores chunks of val images: confusion counts,
    and the first predictions as colourised PNGs written to ``pred_dir``. Usable without Ray too."""

    def __init__(self, cfg_dump: dict[str, Any], ckpt_path: str, store_path: str, pred_dir: str):
        self.cfg = Config.model_validate(cfg_dump)
        self.hold(pick_device())  # in the actor: its GPU if it has one
        self.model = load_model(Path(ckpt_path), self.cfg.model, self.cfg.eval.model, self.device)
        self.store = TextEmbeddingStore(store_path, self.cfg.model.dlg_captions)  # as training read it
        self.pred_dir = Path(pred_dir)
        self.classes = task_of(self.cfg.task).classes(self.cfg)
        self.num_classes, self.labels = len(self.classes), labels(self.cfg.data, "target")

    def __call__(self, rows: list[dict[str, Any]], first: int) -> np.ndarray:
        """Confusion counts (C, C) of ``rows``; ``first``: the index of rows[0] among all val images."""
        cfg, n = self.cfg, self.num_classes
        conf = np.zeros((n, n), dtype=np.int64)
        for k, row in enumerate(rows, first):
            label = self.labels.read(row["label_path"])  # decoded by the target's own dataset
            pred = self.predict_row(row, label.shape)
            conf += confusion(pred, label, n)
            if saves(cfg, k):
                save_prediction(self.pred_dir, row["image_id"], pred, self.labels, self.classes)
                if k < EXAMPLES:
                    save_png(truth_path(self.pred_dir, row["image_id"]), self.classes.colourise(label))
        return conf

    def predict_row(self, row: dict[str, Any], size: tuple[int, int]) -> np.ndarray:
        """(H, W) uint8 trainIds at the label's resolution."""
        cfg = self.cfg
        image = read_rgb(row["image_path"])
        if cfg.train.target_size is not None:
            image = resize_image(image, cfg.train.target_size)  # as training saw the target
        text, mask = self.store.batch([row["image_id"]], cfg.model.max_tokens)
        return label_map(self.model, image, text.to(self.device), mask.to(self.device), cfg.train.crop_size,
                         self.num_classes, cfg.eval.sliding_window, size)


def confusion_on_ray(ctx: StageContext, rows: list[dict[str, Any]], pred_dir: Path) -> tuple[np.ndarray, dict]:
    """The val images through one ``Evaluator`` actor, in chunks; the confusion counts and where it ran."""
    cfg = ctx.cfg
    n = len(task_of(cfg.task).classes(cfg))
    conf = np.zeros((n, n), dtype=np.int64)

    def fold(part: np.ndarray) -> None:
        np.add(conf, part, out=conf)

    args = (cfg.model_dump(mode="json"), str((ctx.inputs["train"] / CHECKPOINT).resolve()),
            str(Path(ctx.inputs["embed_text"]).resolve()), str(pred_dir.resolve()))
    where = evaluate_on_ray(ctx, Evaluator, args, rows, 16, "images", fold)
    return conf, where


def evaluate(ctx: StageContext) -> StageResult:
    cfg = ctx.cfg
    rows = [r for r in read_index(ctx.inputs["ingest"] / INDEX_FILE, dataset_roots(cfg.data, ctx.workdir))
            if r["domain"] == "target" and r["split"] == "val" and r["label_path"]]
    if not rows:
        raise StageError(f"{ctx.inputs['ingest'] / INDEX_FILE}: no labelled target val images to evaluate")
    pred_dir = ctx.out_dir / "predictions"
    pred_dir.mkdir(parents=True, exist_ok=True)
    conf, where = confusion_on_ray(ctx, rows, pred_dir)
    metrics = write_metrics(ctx, conf, len(rows))
    shown = [r for k, r in enumerate(rows[:EXAMPLES]) if saves(cfg, k)]
    captions = served_captions(ctx.inputs["embed_text"], [r["image_id"] for r in shown], cfg.model.dlg_captions)
    examples = [{"image_id": r["image_id"], "image": r["image_path"], "label": r["label_path"], "dataset": r["dataset"],
                 "truth": str(truth_path(pred_dir, r["image_id"])),
                 "prediction": str(prediction_path(pred_dir, r["image_id"])), "caption": captions[r["image_id"]]}
                for r in shown]
    write_json(run_description(ctx.cfg, ctx) | {"examples": examples}, ctx.out_dir / "run.json")
    return StageResult(len(rows), {**metrics, "ran_on": where})


def write_metrics(ctx: StageContext, conf: np.ndarray, images: int) -> dict[str, Any]:
    """metrics.json, per_class.parquet and confusion.npy; returns the mIoUs."""
    classes, iou = task_of(ctx.cfg.task).classes(ctx.cfg), iou_per_class(conf)
    n, names = len(classes), list(classes.names)
    metrics = {f"mIoU{k}": miou(iou, ids) for k, ids in classes.subsets.items()}
    metrics["images"] = images
    write_parquet(pa.table({"class_id": range(n), "name": names, "iou": iou,
                            "pixels": conf.sum(1)}), ctx.out_dir / "per_class.parquet")
    with atomic_path(ctx.out_dir / "confusion.npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, conf)
    write_json({**metrics, "per_class": dict(zip(names, map(float, iou), strict=True))},
               ctx.out_dir / "metrics.json")
    return metrics


def headline_set(cfg: Config) -> int | str:
    """The class set a run is judged on: a target's own classes (a folder's: all of them), else the source's
    first reported set (SYNTHIA: 16; else 19)."""
    from stages.street.datasets import CITYSCAPES, eval_class_sets

    classes = task_of(cfg.task).classes(cfg)
    if classes is not CITYSCAPES:
        return len(classes)
    return eval_class_sets(cfg.data.source.name)[0]


def run_description(cfg: Config, ctx: StageContext) -> dict[str, Any]:
    """What the report needs to place this run in the paper's tables: the training's own account of what it
    used (CT, DyCE, VLP, DLG, image counts), the benchmark, the labelled count and the seed."""
    setup = read_setup(ctx.inputs["train"])
    labelled = cfg.data.labelled_target if cfg.data.split_file is None else setup["labelled_target_images"]
    return {
        **setup, "source": cfg.data.source.name, "target": cfg.data.target.name, "labelled_target": labelled,
        "headline": f"mIoU{headline_set(cfg)}",
        "split_file": str(cfg.data.split_file or ""), "selection": selection_of(cfg.data.split_file),
        "seed": [cfg.data.seed, cfg.train.seed],
        "vision_model": cfg.model.vision_model, "iterations": cfg.train.iterations,
        "evaluate_fingerprint": ctx.fingerprint, "train_dir": str(ctx.inputs["train"]),
    }
