"""Stage 5, evaluate: the trained model on the target val split -> per-class IoU and mIoU (19/16/13).

The model runs in a Ray actor (on a GPU worker when ``eval.num_gpus`` > 0), never in the driver.
Inference is by sliding windows of the training crop size (2/3 overlap stride), with the predictions
taken at the label's resolution. Outputs: ``metrics.json``, ``per_class.parquet``, ``confusion.npy`` and
a few colourised prediction PNGs in ``predictions/``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F
from PIL import Image

from models.segmentor import Segmentor, build_segmentor
from pipeline.config import Config
from pipeline.progress import progress
from pipeline.stage import StageContext, StageError, StageResult
from pipeline.store import atomic_path, write_json, write_parquet
from stages.checkpoint import load_checkpoint
from stages.datasets import CLASS_SETS, CLASSES, IGNORE, PALETTE, load_label
from stages.embed_text import TextEmbeddingStore
from stages.images import read_rgb, resize_image
from stages.index import INDEX_FILE, dataset_roots, read_index
from stages.train import CHECKPOINT, SETUP, normalize

NAME = "evaluate"
VERSION = 3  # 2: writes run.json for the report; 3: relative index paths, run.json from train's setup
INPUTS = ("ingest", "embed_text", "train")
INPUT_DIGESTS = {"ingest": "index"}


def fingerprint_config(cfg: Config) -> dict[str, Any]:
    return {"eval": cfg.eval.model_dump(mode="json", exclude={"batch_size", "num_gpus", "num_cpus"}),
            "train": {"target_size": cfg.train.target_size, "crop_size": cfg.train.crop_size}}


def sliding_windows(length: int, crop: int, stride: int) -> list[int]:
    """Window starts covering [0, length) with windows of ``crop`` (the last one flush with the end)."""
    if length <= crop:
        return [0]
    starts = list(range(0, length - crop, stride))
    return starts + [length - crop]


@torch.no_grad()
def predict(model: Segmentor, image: torch.Tensor, text: torch.Tensor, mask: torch.Tensor, crop: int,
            num_classes: int, sliding: bool = True) -> torch.Tensor:
    """Class probabilities (1, C, H, W) for one normalised image (1, 3, H, W)."""
    _, _, h, w = image.shape
    if not sliding or (h <= crop and w <= crop):
        return model(image, text, mask).logits.softmax(1)
    stride = max(crop * 2 // 3, 1)
    probs = image.new_zeros(1, num_classes, h, w)
    count = image.new_zeros(1, 1, h, w)
    ph, pw = max(crop - h, 0), max(crop - w, 0)
    padded = F.pad(image, (0, pw, 0, ph))
    for top in sliding_windows(h + ph, crop, stride):
        for left in sliding_windows(w + pw, crop, stride):
            window = padded[:, :, top:top + crop, left:left + crop]
            p = model(window, text, mask).logits.softmax(1)
            hh, ww = min(crop, h - top), min(crop, w - left)
            probs[:, :, top:top + hh, left:left + ww] += p[:, :, :hh, :ww]
            count[:, :, top:top + hh, left:left + ww] += 1
    return probs / count


def confusion(pred: np.ndarray, label: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) counts, rows = ground truth, columns = prediction; ignored pixels left out."""
    valid = label != IGNORE
    idx = label[valid].astype(np.int64) * num_classes + pred[valid].astype(np.int64)
    return np.bincount(idx, minlength=num_classes**2).reshape(num_classes, num_classes)


def iou_per_class(conf: np.ndarray) -> np.ndarray:
    """IoU = TP / (TP + FP + FN) per class; NaN for a class absent from both labels and predictions."""
    tp = np.diag(conf).astype(np.float64)
    denom = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, tp / denom, np.nan)


def miou(iou: np.ndarray, class_set: int) -> float:
    """Mean IoU over a class set (19, 16 or 13), classes with no pixel anywhere left out."""
    values = iou[list(CLASS_SETS[class_set])]
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def load_model(ckpt_path: Path, cfg: Config, which: str, device: torch.device) -> Segmentor:
    ckpt = load_checkpoint(ckpt_path, device)
    model = build_segmentor(cfg.model, ckpt.meta["text_dim"], ckpt.meta["num_classes"])
    model.load_state_dict(getattr(ckpt, which))
    return model.to(device).eval()


def colourise(pred: np.ndarray) -> np.ndarray:
    return np.where((pred < len(PALETTE))[..., None], PALETTE[np.minimum(pred, len(PALETTE) - 1)], 0)


class Evaluator:
    """Holds the model where it runs — a Ray actor on a GPU worker, so the driver (a CPU head node) never
    builds a full model — and scores chunks of val images: confusion counts, and the first predictions as
    colourised PNGs written to ``pred_dir``. Usable without Ray too."""

    def __init__(self, cfg_dump: dict[str, Any], ckpt_path: str, store_path: str, pred_dir: str):
        import os
        import socket

        self.cfg = Config.model_validate(cfg_dump)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = load_model(Path(ckpt_path), self.cfg, self.cfg.eval.model, self.device)
        self.store = TextEmbeddingStore(store_path)
        self.pred_dir = Path(pred_dir)
        self.where = {"pid": os.getpid(), "host": socket.gethostname(), "device": str(self.device)}

    def __call__(self, rows: list[dict[str, Any]], first: int) -> np.ndarray:
        """Confusion counts (C, C) of ``rows``; ``first``: the index of rows[0] among all val images."""
        cfg, n = self.cfg, len(CLASSES)
        conf = np.zeros((n, n), dtype=np.int64)
        for k, row in enumerate(rows, first):
            label = load_label(row["label_path"], "cityscapes")
            pred = self.predict_row(row, label.shape)
            conf += confusion(pred, label, n)
            if k < cfg.eval.save_predictions:
                path = self.pred_dir / f"{row['image_id'].replace('/', '__')}.png"
                with atomic_path(path) as tmp:
                    Image.fromarray(colourise(pred).astype(np.uint8)).save(tmp, format="PNG")
        return conf

    def predict_row(self, row: dict[str, Any], size: tuple[int, int]) -> np.ndarray:
        """(H, W) uint8 trainIds at the label's resolution."""
        cfg, device = self.cfg, self.device
        image = read_rgb(row["image_path"])
        if cfg.train.target_size is not None:
            image = resize_image(image, cfg.train.target_size)  # as training saw the target
        x = torch.from_numpy(image).permute(2, 0, 1)[None].to(device).float().div(255)
        text, mask = self.store.batch([row["image_id"]], cfg.model.max_tokens)
        probs = predict(self.model, normalize(x), text.to(device), mask.to(device), cfg.train.crop_size,
                        len(CLASSES), cfg.eval.sliding_window)
        probs = F.interpolate(probs, size=size, mode="bilinear", align_corners=False)
        return probs.argmax(1)[0].cpu().numpy().astype(np.uint8)

    def location(self) -> dict[str, Any]:
        return self.where


def evaluate_on_ray(ctx: StageContext, rows: list[dict[str, Any]], pred_dir: Path) -> tuple[np.ndarray, dict]:
    """The val images through one ``Evaluator`` actor (``eval.num_gpus``, ``eval.num_cpus``), in chunks, so
    the progress bar moves; returns the confusion counts and where the model ran."""
    import ray

    from pipeline.shards import init_ray

    cfg = ctx.cfg
    init_ray(cfg.cluster)
    actor = ray.remote(Evaluator).options(num_cpus=cfg.eval.num_cpus, num_gpus=cfg.eval.num_gpus or None).remote(
        cfg.model_dump(mode="json"), str((ctx.inputs["train"] / CHECKPOINT).resolve()),
        str(Path(ctx.inputs["embed_text"]).resolve()), str(pred_dir.resolve()))
    n, chunk = len(CLASSES), 16
    conf = np.zeros((n, n), dtype=np.int64)
    try:
        with progress("evaluate", total=len(rows), unit="images") as advance:
            for start in range(0, len(rows), chunk):
                conf += ray.get(actor.__call__.remote(rows[start:start + chunk], start))
                advance(len(rows[start:start + chunk]))
        return conf, ray.get(actor.location.remote())
    finally:
        ray.kill(actor)


def run(ctx: StageContext) -> StageResult:
    cfg = ctx.cfg
    rows = [r for r in read_index(ctx.inputs["ingest"] / INDEX_FILE, dataset_roots(cfg.data, ctx.workdir))
            if r["domain"] == "target" and r["split"] == "val" and r["label_path"]]
    if not rows:
        raise StageError(f"{ctx.inputs['ingest'] / INDEX_FILE}: no labelled target val images to evaluate")
    n = len(CLASSES)
    pred_dir = ctx.out_dir / "predictions"
    pred_dir.mkdir(parents=True, exist_ok=True)
    conf, where = evaluate_on_ray(ctx, rows, pred_dir)
    iou = iou_per_class(conf)
    metrics = {f"mIoU{k}": miou(iou, k) for k in CLASS_SETS}
    metrics["images"] = len(rows)
    write_parquet(pa.table({"class_id": range(n), "name": list(CLASSES), "iou": iou,
                            "pixels": conf.sum(1)}), ctx.out_dir / "per_class.parquet")
    with atomic_path(ctx.out_dir / "confusion.npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, conf)
    write_json({**metrics, "per_class": dict(zip(CLASSES, map(float, iou), strict=True))},
               ctx.out_dir / "metrics.json")
    write_json(run_description(cfg, ctx), ctx.out_dir / "run.json")
    return StageResult(len(rows), {**metrics, "ran_on": where})


def run_description(cfg: Config, ctx: StageContext) -> dict[str, Any]:
    """What the report needs to place this run in the paper's tables: the training's own account of what it
    used (CT, DyCE, VLP, DLG, image counts), the benchmark, the labelled count and the seed."""
    setup = json.loads((ctx.inputs["train"] / SETUP).read_text())
    labelled = cfg.data.labelled_target if cfg.data.split_file is None else setup["labelled_target_images"]
    return {
        **setup, "source": cfg.data.source.name, "target": cfg.data.target.name, "labelled_target": labelled,
        "split_file": str(cfg.data.split_file or ""), "seed": [cfg.data.seed, cfg.train.seed],
        "vision_model": cfg.model.vision_model, "iterations": cfg.train.iterations,
        "evaluate_fingerprint": ctx.fingerprint, "train_dir": str(ctx.inputs["train"]),
    }
