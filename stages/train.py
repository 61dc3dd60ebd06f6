"""Stage 4, train: the SSDA student and EMA teacher (paper §3.3-3.4, DESIGN §4-5) under Ray Train.

``train_func(config)`` is the per-worker function. It runs under Ray Train's ``TorchTrainer`` (DDP across
workers) and also on its own with world size 1, for profiling and benchmarks. A step:

    pseudo-labels from the teacher on the weak view of the unlabelled target
    L = L_DyCE(source ∪ labelled target) + λ_CT · L_CT(student on the strong view, pseudo-labels)
    AdamW step, then θ_T ← α θ_T + (1 − α) θ_S

Checkpoints (``checkpoints/last.pt``) are written whole by rank 0 every ``train.checkpoint_every`` steps;
a restarted run continues from the last one.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset, RandomSampler

from models.losses import build_supervised_loss, consistency_loss
from models.segmentor import Segmentor, build_segmentor, ema_update, make_teacher
from pipeline.config import Config, ModelConfig, TrainConfig
from pipeline.progress import console
from pipeline.stage import StageContext, StageError, StageResult
from pipeline.store import atomic_path, write_json
from stages.datasets import CLASSES, IGNORE, load_label
from stages.embed_text import TextEmbeddingStore
from stages.index import INDEX_FILE, dataset_roots, read_index
from stages.split import read_split

NAME = "train"
VERSION = 2  # 2: the labelled split is an input of its own
INPUTS = ("ingest", "split", "embed_text")
INPUT_DIGESTS = {"ingest": "index", "split": "labelled"}  # image set and labels; the labelled ids themselves
EXECUTION_KEYS = {"log_every", "loader_workers", "use_gpu", "cpus_per_worker", "checkpoint_every"}
CHECKPOINT = "checkpoints/last.pt"
METRICS = "metrics.jsonl"
SETUP = "setup.json"  # what this training actually used: the report's CT/DyCE/VLP/DLG columns
NUM_CLASSES = len(CLASSES)
CLIP_MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
CLIP_STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)


def fingerprint_config(cfg: Config) -> dict[str, Any]:
    return {"model": cfg.model.model_dump(mode="json"), "loss": cfg.loss.model_dump(mode="json"),
            "train": cfg.train.model_dump(mode="json", exclude=EXECUTION_KEYS)}


# data ------------------------------------------------------------------------------------------------
class CropSet(Dataset):
    """Images (and labels) resized, randomly cropped to a square and flipped: dicts of tensors.

    Keys: ``image`` (3, S, S) float in [0, 1]; ``label`` (S, S) int64 trainIds (255 where absent);
    ``image_id`` str.
    """

    def __init__(self, rows: list[dict], dataset: str, crop: int, resize: tuple[int, int] | None):
        self.rows, self.dataset, self.crop, self.resize = rows, dataset, crop, resize

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = self.rows[i]
        with Image.open(row["image_path"]) as im:
            image = im.convert("RGB")
        label = load_label(row["label_path"], self.dataset) if row["label_path"] else \
            np.full((image.height, image.width), IGNORE, np.uint8)
        if self.resize is not None:
            image = image.resize(self.resize, Image.BILINEAR)
            label = np.asarray(Image.fromarray(label).resize(self.resize, Image.NEAREST))
        image_t = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 255.0
        image_t, label_t = random_crop_flip(image_t, torch.from_numpy(label.astype(np.int64)), self.crop)
        return {"image": image_t, "label": label_t, "image_id": row["image_id"]}


def random_crop_flip(image: torch.Tensor, label: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad (label with 255) to at least size×size, take a random crop, flip half the time."""
    _, h, w = image.shape
    ph, pw = max(size - h, 0), max(size - w, 0)
    if ph or pw:
        image = F.pad(image, (0, pw, 0, ph))
        label = F.pad(label, (0, pw, 0, ph), value=IGNORE)
    _, h, w = image.shape
    top, left = random.randint(0, h - size), random.randint(0, w - size)
    image, label = image[:, top:top + size, left:left + size], label[top:top + size, left:left + size]
    if random.random() < 0.5:
        image, label = image.flip(-1), label.flip(-1)
    return image, label


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def endless(dataset: CropSet, batch_size: int, workers: int, seed: int) -> Iterator[dict[str, Any]]:
    """Batches drawn with replacement, forever (a stream of the SSDA setting)."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        sampler = RandomSampler(dataset, replacement=True, num_samples=batch_size * 1000, generator=gen)
        loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                            worker_init_fn=_seed_worker, drop_last=True, persistent_workers=False)
        yield from loader


@dataclass
class Streams:
    """The three data streams of SSDA; ``labelled_target`` and ``unlabelled`` may be None."""

    source: Iterator[dict[str, Any]]
    labelled_target: Iterator[dict[str, Any]] | None
    unlabelled: Iterator[dict[str, Any]] | None


@dataclass(frozen=True)
class TrainingSet:
    """The rows of the three streams (absolute paths); ``unlabelled`` is empty when CT is off."""

    source: list[dict[str, Any]]
    labelled_target: list[dict[str, Any]]
    unlabelled: list[dict[str, Any]]


def training_set(index_path: Path | str, roots: dict[str, str], labelled: set[str], cfg: Config) -> TrainingSet:
    """Split the index into the SSDA streams: source, labelled target (``labelled``), unlabelled target."""
    rows = read_index(index_path, roots)
    target_train = [r for r in rows if r["domain"] == "target" and r["split"] == "train"]
    src = [r for r in rows if r["domain"] == "source"]
    if not src:
        raise StageError(f"{index_path}: no source images")
    unlabelled = [{**r, "label_path": None} for r in target_train if r["image_id"] not in labelled]
    uses_ct = cfg.train.consistency and cfg.loss.consistency_weight > 0
    return TrainingSet(src, [r for r in target_train if r["image_id"] in labelled], unlabelled if uses_ct else [])


def build_streams(data: TrainingSet, cfg: Config, seed: int) -> Streams:
    t = cfg.train

    def stream(items: list[dict], size: tuple[int, int] | None, k: int):
        if not items:
            return None
        return endless(CropSet(items, items[0]["dataset"], t.crop_size, size), t.batch_size, t.loader_workers,
                       seed + k)

    return Streams(stream(data.source, t.source_size, 0), stream(data.labelled_target, t.target_size, 1),
                   stream(data.unlabelled, t.target_size, 2))


# augmentation ----------------------------------------------------------------------------------------
def normalize(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] RGB -> CLIP's normalisation."""
    return (images - CLIP_MEAN.to(images.device)) / CLIP_STD.to(images.device)


def strong_augment(images: torch.Tensor) -> torch.Tensor:
    """Photometric strong view of (B, 3, H, W) in [0, 1]: colour jitter, grayscale, blur, per image.

    Geometry is unchanged, so the teacher's pseudo-labels on the weak view stay aligned.
    """
    from torchvision.transforms.v2 import functional as TF

    out = []
    for img in images:
        img = TF.adjust_brightness(img, random.uniform(0.5, 1.5))
        img = TF.adjust_contrast(img, random.uniform(0.5, 1.5))
        img = TF.adjust_saturation(img, random.uniform(0.5, 1.5))
        img = TF.adjust_hue(img, random.uniform(-0.25, 0.25))
        if random.random() < 0.2:
            img = TF.rgb_to_grayscale(img, num_output_channels=3)
        if random.random() < 0.5:
            img = TF.gaussian_blur(img, kernel_size=5, sigma=random.uniform(0.1, 2.0))
        out.append(img)
    return torch.stack(out).clamp(0, 1)


# the step --------------------------------------------------------------------------------------------
@dataclass
class Batch:
    """One step's inputs, on the device. Text: F_L (B, nL, c) with mask (B, nL)."""

    labelled: torch.Tensor  # source ∪ labelled target images, (Bl, 3, S, S) in [0, 1]
    labels: torch.Tensor  # (Bl, S, S) int64
    labelled_text: tuple[torch.Tensor, torch.Tensor]
    unlabelled: torch.Tensor | None  # (Bu, 3, S, S) in [0, 1]
    unlabelled_text: tuple[torch.Tensor, torch.Tensor] | None


def trim(text: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop the padding columns that no caption of the batch uses."""
    n = max(int(mask.sum(1).max()), 1)
    return text[:, :n], mask[:, :n]


def next_batch(streams: Streams, store: TextEmbeddingStore, max_tokens: int, device: torch.device) -> Batch:
    parts = [next(streams.source)] + ([next(streams.labelled_target)] if streams.labelled_target else [])
    ids = [i for p in parts for i in p["image_id"]]
    text = trim(*store.batch(ids, max_tokens))
    unl = next(streams.unlabelled) if streams.unlabelled else None
    unl_text = trim(*store.batch(unl["image_id"], max_tokens)) if unl else None
    to = lambda t: t.to(device, non_blocking=True)  # noqa: E731
    return Batch(
        to(torch.cat([p["image"] for p in parts])), to(torch.cat([p["label"] for p in parts])),
        (to(text[0]), to(text[1])),
        to(unl["image"]) if unl else None,
        (to(unl_text[0]), to(unl_text[1])) if unl_text else None,
    )


def pad_text(text: torch.Tensor, mask: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    return F.pad(text, (0, 0, 0, n - text.shape[1])), F.pad(mask, (0, n - mask.shape[1]))


def train_step(batch: Batch, student: torch.nn.Module, teacher: Segmentor, sup_loss: torch.nn.Module,
               cfg: Config, amp: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Forward the three streams and return (total loss, what to log, as detached tensors: turning them
    into numbers waits for the device, so the loop does it only when it logs). The caller steps the
    optimizer."""
    device_type = batch.labelled.device.type
    autocast = torch.autocast(device_type, dtype=torch.bfloat16, enabled=amp)
    n_sup = batch.labelled.shape[0]
    images, text, mask = normalize(batch.labelled), *batch.labelled_text
    if batch.unlabelled is not None:
        u_text, u_mask = batch.unlabelled_text
        with torch.no_grad(), autocast:
            teacher_logits = teacher(normalize(batch.unlabelled), u_text, u_mask).logits  # weak view
        n = max(text.shape[1], u_text.shape[1])  # one student forward over all streams
        text, mask = (torch.cat(pair) for pair in zip(pad_text(text, mask, n), pad_text(u_text, u_mask, n),
                                                       strict=True))
        images = torch.cat([images, normalize(strong_augment(batch.unlabelled))])
    with autocast:
        logits = student(images, text, mask).logits
    l_sup = sup_loss(logits[:n_sup], batch.labels)  # L_DyCE (or CE), Eq. 9
    logs = {"loss_sup": l_sup.detach()}
    loss = l_sup
    if batch.unlabelled is not None:
        l_ct, passed = consistency_loss(logits[n_sup:], teacher_logits, cfg.loss.confidence_threshold)  # Eq. 4
        loss = loss + cfg.loss.consistency_weight * l_ct
        logs.update(loss_ct=l_ct.detach(), ct_passed=passed)
    logs["loss"] = loss.detach()
    return loss, logs


def poly_lr(step: int, total: int, power: float) -> float:
    """lr multiplier (1 - t/T)^power: the paper's decay with factor 0.9, as polynomial decay."""
    return (1.0 - min(step, total) / total) ** power


# checkpoints -----------------------------------------------------------------------------------------
def save_checkpoint(path: Path, step: int, student: Segmentor, teacher: Segmentor,
                    optimizer: torch.optim.Optimizer, meta: dict[str, Any]) -> None:
    state = {"step": step, "student": student.state_dict(), "teacher": teacher.state_dict(),
             "optimizer": optimizer.state_dict(), "meta": meta}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any] | None:
    return torch.load(path, map_location=device, weights_only=False) if Path(path).exists() else None


# the worker function ---------------------------------------------------------------------------------
def _world(use_ray: bool) -> tuple[int, int, torch.device]:
    if use_ray:
        import ray.train
        import ray.train.torch

        ctx = ray.train.get_context()
        return ctx.get_world_rank(), ctx.get_world_size(), ray.train.torch.get_device()
    return 0, 1, torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _use_gpu(t: TrainConfig, on_ray: bool = False) -> bool:
    """``auto``: whether GPUs are there, on this machine or, under Ray, anywhere in the cluster (the driver
    may run on a CPU-only head node)."""
    if t.use_gpu != "auto":
        return bool(t.use_gpu)
    if on_ray:
        import ray

        return ray.cluster_resources().get("GPU", 0) > 0
    return torch.cuda.is_available()


def train_func(config: dict[str, Any]) -> dict[str, float]:
    """Train for ``train.iterations`` steps; ``config``: cfg (a Config dump), index, roots (domain -> dataset
    root), split (the split stage's directory), text_store, out_dir, use_ray.

    Returns the last logged metrics.
    """
    cfg = Config.model_validate(config["cfg"])
    t = cfg.train
    out_dir, use_ray = Path(config["out_dir"]), bool(config.get("use_ray", False))
    out_dir.mkdir(parents=True, exist_ok=True)
    rank, world, device = _world(use_ray)
    if not use_ray and not _use_gpu(t):
        device = torch.device("cpu")
    if use_ray and device.type == "cpu":
        torch.set_num_threads(t.cpus_per_worker)  # Ray pins a worker to its CPU share
    random.seed(t.seed + rank)
    torch.manual_seed(t.seed)  # the same initial weights on every rank
    store = TextEmbeddingStore(config["text_store"])
    student = build_segmentor(cfg.model, store.dim, NUM_CLASSES).to(device)
    teacher = make_teacher(student)
    optimizer = torch.optim.AdamW(student.param_groups(t.lr, t.backbone_lr_mult, t.weight_decay),
                                  betas=(0.9, 0.999))
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    ckpt_path = out_dir / CHECKPOINT
    start = 0
    if (ckpt := load_checkpoint(ckpt_path, device)) is not None:
        student.load_state_dict(ckpt["student"])
        teacher.load_state_dict(ckpt["teacher"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start = ckpt["step"]
        if rank == 0:
            console.print(f"  train: resuming from step {start} ({ckpt_path})")
    model = student
    if use_ray and world > 1:
        import ray.train.torch

        model = ray.train.torch.prepare_model(student, move_to_device=False)
    data = training_set(config["index"], config["roots"], read_split(config["split"]), cfg)
    streams = build_streams(data, cfg, seed=t.seed + 1000 * rank + start)
    sup_loss = build_supervised_loss(cfg.loss.dyce, cfg.loss.hard_ratio, cfg.loss.omega, cfg.loss.ignore_index)
    amp = t.amp and device.type == "cuda"
    meta = {"text_dim": store.dim, "num_classes": NUM_CLASSES}
    logs: dict[str, float] = {}
    tic = time.perf_counter()
    student.train()
    for step in range(start, t.iterations):
        for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
            group["lr"] = base * poly_lr(step, t.iterations, t.lr_power)
        batch = next_batch(streams, store, cfg.model.max_tokens, device)
        loss, step_logs = train_step(batch, model, teacher, sup_loss, cfg, amp)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        ema_update(teacher, student, t.ema_alpha)  # Eq. 6
        done = step + 1
        if done % t.log_every == 0 or done == t.iterations:
            logs = {k: v.item() for k, v in step_logs.items()}
            if not math.isfinite(logs["loss"]):
                raise FloatingPointError(f"train: loss is {logs['loss']} at step {done}")
            logs.update(step=done, lr=optimizer.param_groups[-1]["lr"],
                        sec_per_iter=(time.perf_counter() - tic) / (done - start))
            if rank == 0:
                with open(out_dir / METRICS, "a") as fh:
                    fh.write(json.dumps(logs) + "\n")
                console.print(f"  train: step {done}/{t.iterations}  loss {logs['loss']:.4f}  "
                              f"{logs['sec_per_iter']:.3f} s/it")
            if use_ray:
                import ray.train

                ray.train.report(logs)
        if rank == 0 and (done % t.checkpoint_every == 0 or done == t.iterations):
            save_checkpoint(ckpt_path, done, student, teacher, optimizer, meta)
    return logs


def read_metrics(out_dir: Path) -> list[dict[str, float]]:
    """The metrics log, one entry per logged step (a step logged twice across a restart: the last)."""
    path = Path(out_dir) / METRICS
    if not path.exists():
        return []
    by_step = {}
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        by_step[entry["step"]] = entry
    return [by_step[s] for s in sorted(by_step)]


def worker_config(cfg: Config, inputs: dict[str, Path], out_dir: Path, workdir: Path, use_ray: bool) -> dict:
    """``train_func``'s argument: plain, absolute values a Ray worker on any node can use."""
    return {"cfg": cfg.model_dump(mode="json"), "index": str(Path(inputs["ingest"], INDEX_FILE).resolve()),
            "roots": {k: str(v) for k, v in dataset_roots(cfg.data, workdir).items()},
            "split": str(Path(inputs["split"]).resolve()), "text_store": str(Path(inputs["embed_text"]).resolve()),
            "out_dir": str(Path(out_dir).resolve()), "use_ray": use_ray}


def vision_init(model: ModelConfig) -> str:
    """The image tower's actual start: CLIP (VLP) only with pretrained weights; random weights are random."""
    if model.vision_init == "imagenet":
        return "imagenet"
    return "clip" if model.vision_init == "clip" and model.vision_pretrained != "none" else "random"


def describe(cfg: Config, data: TrainingSet) -> dict[str, Any]:
    """What the training actually used, as the paper's ablation names it (Table 3)."""
    return {
        "ct": bool(data.unlabelled),  # consistency on, with a weight, and unlabelled images to apply it to
        "dyce": cfg.loss.dyce, "dlg": cfg.model.dlg,
        "vlp": vision_init(cfg.model) == "clip", "vision_init": vision_init(cfg.model),
        "labelled_target_images": len(data.labelled_target), "unlabelled_images": len(data.unlabelled),
        "source_images": len(data.source),
    }


def run(ctx: StageContext) -> StageResult:
    t = ctx.cfg.train
    config = worker_config(ctx.cfg, ctx.inputs, ctx.out_dir, ctx.workdir, use_ray=True)
    write_json(describe(ctx.cfg, training_set(config["index"], config["roots"], read_split(config["split"]), ctx.cfg)),
               ctx.out_dir / SETUP)
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from pipeline.shards import init_ray

    init_ray(ctx.cfg.cluster)
    trainer = TorchTrainer(
        train_func, train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=t.workers, use_gpu=_use_gpu(t, on_ray=True),
                                     resources_per_worker={"CPU": t.cpus_per_worker}),
        run_config=RunConfig(name=f"train-{ctx.fingerprint[:12]}", storage_path=str((ctx.out_dir / "ray").resolve())),
    )
    console.print(f"  train: {t.iterations} iterations on {t.workers} worker(s) under Ray Train")
    trainer.fit()
    metrics = read_metrics(ctx.out_dir)
    if not metrics or metrics[-1]["step"] != t.iterations:
        raise StageError(f"{ctx.out_dir / METRICS}: training ended before step {t.iterations}")
    return StageResult(t.iterations, {k: v for k, v in metrics[-1].items() if k != "step"})
