"""The train stage's work: the SSDA student and EMA teacher (paper §3.3-3.4, DESIGN §4-5) under Ray Train.

``train_func(config)`` is the per-worker function. It runs under Ray Train's ``TorchTrainer`` (DDP across
workers, ``FailureConfig``: a dead worker is replaced and training goes on from the last checkpoint) and also
on its own with world size 1, for profiling and benchmarks. A step:

    pseudo-labels from the teacher on the weak view of the unlabelled target
    L = L_DyCE(source ∪ labelled target) + λ_CT · L_CT(student on the strong view, pseudo-labels)
    AdamW step, then θ_T ← α θ_T + (1 − α) θ_S

Checkpoints (``checkpoints/last.safetensors``, no pickle) are written whole by rank 0 every
``execution.train.checkpoint_every`` steps and reported to Ray Train; a restarted run continues from the last one,
drawing the same batches an uninterrupted run would have drawn. Rank, device, checkpoints, the log and the Ray
fit are ``stages.training``'s, shared with the volumetric trainer; this module keeps the SSDA method.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from models.ema import ema_alpha, ema_update, make_teacher
from models.losses import build_supervised_loss, consistency_loss, passed_per_class, pseudo_labels
from models.street.config import vision_init
from models.street.mixing import class_thresholds, classmix_masks, cutmix_masks, mix, mix_text, pad_tokens, partners
from models.street.preprocess import normalize
from models.street.segmentor import Segmentor, build_segmentor
from pipeline.config import Config, TrainExecution
from pipeline.progress import console
from pipeline.stage import StageContext, StageError, StageResult
from stages import training
from stages.checkpoint import Checkpoint
from stages.index import INDEX_FILE, read_index, read_split
from stages.street.config import TrainConfig, uses_consistency
from stages.street.datasets import dataset_roots, labels, prediction_format
from stages.street.language import TextEmbeddingStore
from stages.street.loader import STREAMS, Streams, default_workers, stream
from stages.tasks import task_of
from stages.trained import CHECKPOINT, METRICS, SETUP  # noqa: F401  (where a run keeps them; tests read them here)
from stages.training import Run, distribute, latest_checkpoint, open_run, poly_lr, seed_step_rngs


def num_classes(cfg: Config) -> int:
    """The task's class count (``cfg.task``: Cityscapes' 19 for the street task)."""
    return len(task_of(cfg.task).classes(cfg))


# data ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainingSet:
    """The rows of the three streams (absolute paths); ``unlabelled`` is empty when CT is off."""

    source: list[dict[str, Any]]
    labelled_target: list[dict[str, Any]]
    unlabelled: list[dict[str, Any]]
    labels: dict[str, Any] = field(default_factory=dict)  # role -> label codec (default: each dataset's functions)


def training_set(index_path: Path | str, roots: dict[str, str], labelled: set[str], cfg: Config) -> TrainingSet:
    """Split the index into the SSDA streams: source, labelled target (``labelled``), unlabelled target."""
    rows = read_index(index_path, roots)
    target_train = [r for r in rows if r["domain"] == "target" and r["split"] == "train"]
    src = [r for r in rows if r["domain"] == "source"]
    if not src:
        raise StageError(f"{index_path}: no source images")
    unlabelled = [{**r, "label_path": None} for r in target_train if r["image_id"] not in labelled]
    return TrainingSet(src, [r for r in target_train if r["image_id"] in labelled],
                       unlabelled if uses_consistency(cfg) else [],
                       {role: labels(cfg.data, role) for role in ("source", "target")})


def build_streams(data: TrainingSet, t: TrainConfig, ex: TrainExecution, seed: int, start: int, pin: bool
                  ) -> Streams:
    """The three streams, each starting at batch ``start``; loader workers from ``execution.train.loader_workers``
    or, with ``auto``, from the CPUs a train worker has."""
    n_streams = sum(bool(rows) for rows in (data.source, data.labelled_target, data.unlabelled))
    workers = default_workers(ex.cpus_per_worker, n_streams) if ex.loader_workers == "auto" else ex.loader_workers
    sizes = {"source": t.source_size, "labelled_target": t.target_size, "unlabelled": t.target_size}
    return Streams(*(stream(getattr(data, name), t.crop_size, sizes[name], t.batch_size, seed, k, start, workers,
                            pin, data.labels.get("source" if name == "source" else "target"))
                     for k, name in enumerate(STREAMS)))


# augmentation ----------------------------------------------------------------------------------------
def strong_augment(images: torch.Tensor, strength: float = 0.5, blur: float = 0.5) -> torch.Tensor:
    """Photometric strong view of (B, 3, H, W) in [0, 1], per image: brightness, contrast and saturation
    × U(1 − s, 1 + s), hue + U(−s/2, s/2), grayscale with probability 0.4·s, then a Gaussian blur with
    probability ``blur`` (s = ``train.colour_jitter``, blur = ``train.strong_blur``; 0.5 and 0.5: UniMatch's
    hue 0.25, grayscale 0.2 and blur half of the time).

    Geometry is unchanged, so the teacher's pseudo-labels on the weak view stay aligned.
    """
    from torchvision.transforms.v2 import functional as TF

    out = []
    for img in images:
        img = TF.adjust_brightness(img, random.uniform(1 - strength, 1 + strength))
        img = TF.adjust_contrast(img, random.uniform(1 - strength, 1 + strength))
        img = TF.adjust_saturation(img, random.uniform(1 - strength, 1 + strength))
        img = TF.adjust_hue(img, random.uniform(-strength / 2, strength / 2))
        if random.random() < 0.4 * strength:
            img = TF.rgb_to_grayscale(img, num_output_channels=3)
        if random.random() < blur:
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
    """One batch of each stream, on the device: uint8 images become [0, 1] floats there, labels int64."""
    parts = [next(streams.source)] + ([next(streams.labelled_target)] if streams.labelled_target else [])
    ids = [i for p in parts for i in p["image_id"]]
    text = trim(*store.batch(ids, max_tokens))
    unl = next(streams.unlabelled) if streams.unlabelled else None
    unl_text = trim(*store.batch(unl["image_id"], max_tokens)) if unl else None
    to = lambda t: t.to(device, non_blocking=True)  # noqa: E731  (pinned memory: an asynchronous copy)
    image = lambda t: to(t).float().div_(255)  # noqa: E731
    return Batch(
        image(torch.cat([p["image"] for p in parts])), to(torch.cat([p["label"] for p in parts])).long(),
        (to(text[0]), to(text[1])),
        image(unl["image"]) if unl else None,
        (to(unl_text[0]), to(unl_text[1])) if unl_text else None,
    )


@dataclass
class Layer:
    """Images with what the student is taught on them: what a mix pastes (top) or pastes onto (base)."""

    images: torch.Tensor  # (B, 3, S, S)
    labels: torch.Tensor  # (B, S, S)
    confidence: torch.Tensor  # (B, S, S): the teacher's, or 1 for ground truth (0 where it is ignored)
    text: torch.Tensor  # (B, n, c)
    mask: torch.Tensor  # (B, n)


@dataclass
class StrongView:
    """The unlabelled images the student sees, and what it is taught on them, pixel for pixel."""

    images: torch.Tensor  # (B, 3, S, S) in [0, 1]: mixed (train.mix), then photometrically augmented
    text: torch.Tensor  # F_L (B, nL, c): for a mixed image, both captions' tokens
    mask: torch.Tensor  # (B, nL)
    pseudo: torch.Tensor  # (B, S, S) the teacher's hard labels on the weak views (ground truth where pasted
    confidence: torch.Tensor  # (B, S, S)       from a labelled image, at confidence 1), mixed the same way
    threshold: float | torch.Tensor  # Th, or τ_c (C,) from the teacher's own pixels
    weak: Layer  # the unmixed weak views with the teacher's labels (for train.feature_perturbation)
    from_gt: torch.Tensor  # (B, S, S) bool: pixels pasted from a labelled image, taught its ground truth


def within_target(base: Layer) -> Layer:
    """ClassMix/CutMix within the target: the next unlabelled image, with the teacher's labels."""
    perm = partners(base.images.shape[0]).to(base.images.device)
    return Layer(base.images[perm], base.labels[perm], base.confidence[perm], base.text[perm], base.mask[perm])


def from_labelled(batch: Batch, base: Layer, ignore_index: int) -> Layer:
    """DACS's cross-domain mix: a labelled image, source or labelled target, drawn at random for each
    unlabelled image, with its ground truth at confidence 1 (0 where it is ignored)."""
    pick = torch.randint(0, batch.labelled.shape[0], (base.images.shape[0],)).to(base.images.device)
    labels = batch.labels[pick]
    known = labels != ignore_index
    return Layer(batch.labelled[pick], labels.masked_fill(~known, 0), known.float(),
                 batch.labelled_text[0][pick], batch.labelled_text[1][pick])


def cross_domain_views(n: int, mix_from: str, ratio: float) -> torch.Tensor:
    """(n,) bool: which strong views paste a labelled image (``train.mix_from``); with ``both``, exactly
    round(ratio · n) of them, chosen at random (IIDM's inter- and intra-domain mixes), and all of them when a
    batch of one has no unlabelled partner."""
    if mix_from != "both" or n < 2:
        return torch.full((n,), mix_from != "unlabelled" or n < 2)
    return torch.zeros(n, dtype=torch.bool).index_fill_(0, torch.randperm(n)[:round(ratio * n)], True)


def choose(cross: torch.Tensor, a: Layer, b: Layer) -> Layer:
    """Per image, layer ``a`` where ``cross`` (B,) holds, else ``b``; captions padded alike."""
    n = max(a.text.shape[1], b.text.shape[1])
    (ta, ma), (tb, mb) = pad_tokens(a.text, a.mask, n), pad_tokens(b.text, b.mask, n)
    c = cross.to(a.images.device)
    pick = lambda x, y: torch.where(c.view(-1, *[1] * (x.dim() - 1)), x, y)  # noqa: E731
    return Layer(pick(a.images, b.images), pick(a.labels, b.labels), pick(a.confidence, b.confidence),
                 pick(ta, tb), pick(ma, mb))


def mix_partners(batch: Batch, base: Layer, t: TrainConfig, ignore_index: int) -> tuple[Layer, torch.Tensor]:
    """What is pasted onto each unlabelled image (``train.mix_from``), and which images it was a labelled
    image for (B,) bool: the next unlabelled image with the teacher's labels, a labelled image with its
    ground truth, or either, ``train.cross_domain_ratio`` of them cross-domain."""
    cross = cross_domain_views(base.images.shape[0], t.mix_from, t.cross_domain_ratio)
    if not cross.any():
        return within_target(base), cross
    labelled = from_labelled(batch, base, ignore_index)
    return (labelled if cross.all() else choose(cross, labelled, within_target(base))), cross


def paste_masks(top: Layer, mix: str, n_classes: int) -> torch.Tensor:
    """(B, S, S) bool: the top image's pixels that are pasted: half of its classes (ClassMix; the
    teacher's or the ground truth's), or a box (CutMix). Pixels without a label (confidence 0) stay below."""
    known = top.confidence > 0
    if mix == "classmix":
        return classmix_masks(top.labels.masked_fill(~known, n_classes), n_classes)
    return cutmix_masks(tuple(top.labels.shape), top.labels.device) & known


def in_sup(cfg: Config) -> bool:
    """Whether pasted ground truth counts in L_sup; ``auto`` must have been settled by ``resolved``."""
    if cfg.loss.pasted_gt == "auto":
        raise ValueError("loss.pasted_gt: auto; a config is resolved as it loads (StreetConfig.resolved)")
    return cfg.loss.pasted_gt == "sup"


def jitter(t: TrainConfig) -> float:
    """The strong view's colour jitter; ``auto`` must have been settled by the training set (``resolved``)."""
    if t.colour_jitter == "auto":
        raise ValueError("train.colour_jitter: auto; a config is resolved as it loads (StreetConfig.resolved)")
    return t.colour_jitter


def strong_view(batch: Batch, teacher: Segmentor, cfg: Config, autocast) -> StrongView:
    """Pseudo-labels from the teacher on the weak views, then the mixed strong view: ClassMix or CutMix of
    each unlabelled image with a partner (``train.mix_from``). The mix mask moves images, labels and
    confidences together, and the mixed caption holds both captions."""
    u_text, u_mask = batch.unlabelled_text
    with torch.no_grad(), autocast:
        logits = teacher(normalize(batch.unlabelled), u_text, u_mask).logits  # weak view
    pseudo, confidence = pseudo_labels(logits)
    th = cfg.loss.confidence_threshold
    if cfg.loss.class_thresholds:
        th = class_thresholds(confidence, pseudo, num_classes(cfg), th, cfg.loss.class_threshold_quantile,
                              cfg.loss.class_threshold_cap)
    base = Layer(batch.unlabelled, pseudo, confidence, u_text, u_mask)
    nothing = torch.zeros_like(pseudo, dtype=torch.bool)
    if cfg.train.mix == "none" or (cfg.train.mix_from == "unlabelled" and base.images.shape[0] < 2):
        return StrongView(strong_augment(base.images, jitter(cfg.train), cfg.train.strong_blur), u_text, u_mask,
                          pseudo, confidence, th, base, nothing)
    top, cross = mix_partners(batch, base, cfg.train, cfg.loss.ignore_index)
    paste = paste_masks(top, cfg.train.mix, num_classes(cfg))
    text, mask = mix_text(top.text, top.mask, u_text, u_mask, cfg.model.max_tokens)
    return StrongView(strong_augment(mix(paste, top.images, base.images), jitter(cfg.train),
                                     cfg.train.strong_blur), text, mask,
                      mix(paste, top.labels, pseudo), mix(paste, top.confidence, confidence), th, base,
                      paste & cross.to(paste.device)[:, None, None])


def join_streams(streams: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images in [0, 1], F_L, mask) of several streams as one normalised batch, captions padded alike."""
    n = max(text.shape[1] for _, text, _ in streams)
    padded = [pad_tokens(text, mask, n) for _, text, mask in streams]
    return (normalize(torch.cat([images for images, _, _ in streams])), torch.cat([t for t, _ in padded]),
            torch.cat([m for _, m in padded]))


def train_step(batch: Batch, student: torch.nn.Module, teacher: Segmentor, sup_loss: torch.nn.Module,
               cfg: Config, amp: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Forward the streams in one student pass and return (total loss, what to log, as detached tensors:
    turning them into numbers waits for the device, so the loop does it only when it logs). The caller
    steps the optimizer.

    Streams: labelled; the strong views of the unlabelled images; with ``train.feature_perturbation`` p > 0,
    also the weak views with their encoder features dropped out (UniMatch), and L_CT is then the mean of the
    two views' consistency losses."""
    autocast = torch.autocast(batch.labelled.device.type, dtype=torch.bfloat16, enabled=amp)
    n_sup, streams = batch.labelled.shape[0], [(batch.labelled, *batch.labelled_text)]
    fp = cfg.train.feature_perturbation if batch.unlabelled is not None else 0.0
    if batch.unlabelled is not None:
        view = strong_view(batch, teacher, cfg, autocast)
        streams.append((view.images, view.text, view.mask))
        if fp:
            streams.append((view.weak.images, view.weak.text, view.weak.mask))
    n_fp = batch.unlabelled.shape[0] if fp else 0
    with autocast:
        logits = student(*join_streams(streams), perturb=(n_fp, fp)).logits
    if batch.unlabelled is None:
        l_sup = sup_loss(logits[:n_sup], batch.labels)  # L_DyCE (or CE), Eq. 9
        return l_sup, {"loss_sup": l_sup.detach(), "loss": l_sup.detach()}
    n_strong = view.images.shape[0]
    pasted_in_sup = in_sup(cfg)
    l_sup = supervised(logits[:n_sup + n_strong], batch.labels, view, pasted_in_sup, sup_loss, cfg.loss.ignore_index)
    confidence = view.confidence.masked_fill(view.from_gt, -1.0) if pasted_in_sup else view.confidence
    l_ct, passed = consistency_loss(logits[n_sup:n_sup + n_strong], view.pseudo, confidence,  # Eq. 4
                                    view.threshold, cfg.loss.consistency_omega, cfg.loss.ignore_index)
    logs = {"loss_sup": l_sup.detach(), "ct_passed": passed.mean(),
            "ct_passed_per_class": passed_per_class(view.pseudo, passed, num_classes(cfg)),
            "ct_pasted_gt": view.from_gt.float().mean(), "ct_pseudo": (passed.bool() & ~view.from_gt).float().mean()}
    if fp:
        l_fp, _ = consistency_loss(logits[n_sup + n_strong:], view.weak.labels, view.weak.confidence,
                                   view.threshold, cfg.loss.consistency_omega, cfg.loss.ignore_index)
        logs["loss_fp"] = l_fp.detach()
        l_ct = (l_ct + l_fp) / 2
    loss = l_sup + cfg.loss.consistency_weight * l_ct
    return loss, logs | {"loss_ct": l_ct.detach(), "loss": loss.detach()}


def supervised(logits: torch.Tensor, labels: torch.Tensor, view: StrongView, pasted_in_sup: bool,
               sup_loss: torch.nn.Module, ignore_index: int) -> torch.Tensor:
    """L_sup (DyCE or CE, Eq. 9) over the labelled images, and with ``loss.pasted_gt: sup`` also over the
    strong views' pixels pasted with their ground truth, in one batch: DyCE mines and weighs their classes
    with the labelled pixels', so pasted head classes do not outweigh the rest (they leave L_CT).
    ``logits``: the labelled images' then the strong views'."""
    n_sup = labels.shape[0]
    if not pasted_in_sup:
        return sup_loss(logits[:n_sup], labels)
    pasted = view.pseudo.masked_fill(~view.from_gt, ignore_index)
    return sup_loss(logits, torch.cat([labels, pasted]))


def lr_factor(step: int, t: TrainConfig) -> float:
    """Linear warm-up over ``train.warmup_iters``, then the polynomial decay."""
    warm = min(1.0, (step + 1) / t.warmup_iters) if t.warmup_iters else 1.0
    return warm * poly_lr(step, t.iterations, t.lr_power)


# the worker function ---------------------------------------------------------------------------------
@dataclass
class Learner:
    """What a step changes: student, teacher, optimizer (and its base learning rates)."""

    student: Segmentor
    teacher: Segmentor
    optimizer: torch.optim.Optimizer
    base_lrs: list[float]

    def set_lr(self, step: int, t: TrainConfig) -> None:
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * lr_factor(step, t)

    @property
    def networks(self) -> dict[str, torch.nn.Module]:
        return {"student": self.student, "teacher": self.teacher}

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optimizer": self.optimizer}

    def restore(self, ckpt: Checkpoint) -> int:
        return training.restore(ckpt, self.networks, self.optimizers)


def build_learner(cfg: Config, text_dim: int, device: torch.device) -> Learner:
    t = cfg.train
    torch.manual_seed(t.seed)  # the same initial weights on every rank
    student = build_segmentor(cfg.model, text_dim, num_classes(cfg)).to(device)
    optimizer = torch.optim.AdamW(student.param_groups(t.lr, t.backbone_lr_mult, t.weight_decay), betas=(0.9, 0.999),
                                  fused=device.type == "cuda")  # one kernel for all parameters on GPU
    return Learner(student, make_teacher(student), optimizer, [g["lr"] for g in optimizer.param_groups])


@dataclass
class Worker(Run):
    """One rank's training, as ``setup_worker`` builds it: the loop runs ``optimise`` on it step by step."""

    learner: Learner
    model: torch.nn.Module  # the student, wrapped for DDP when there are several workers
    store: TextEmbeddingStore
    streams: Streams
    sup_loss: torch.nn.Module
    start: int  # the first step to run: 0, or the checkpoint's step

    @property
    def meta(self) -> dict[str, Any]:
        return checkpoint_meta(self.cfg, self.store.dim)


def checkpoint_meta(cfg: Config, text_dim: int) -> dict[str, Any]:
    """What a checkpoint needs besides its weights to be used on its own (``semidavil predict``): the sizes,
    and the config sections that rebuild the model and describe a new image to it as training did."""
    model = cfg.model.model_dump(mode="json") | {"imagenet_checkpoint": None}  # its weights are in the checkpoint
    sections = {name: getattr(cfg, name).model_dump(mode="json") for name in ("caption", "text", "train", "eval")}
    return {"text_dim": text_dim, "num_classes": num_classes(cfg), "config": {"model": model, **sections},
            "prediction_format": prediction_format(cfg.data)}


def setup_worker(config: dict[str, Any]) -> Worker:
    """Build the learner, resume it from the newest checkpoint, open the streams where it stopped."""
    run = open_run(config)
    cfg, t, device = run.cfg, run.cfg.train, run.device
    store = TextEmbeddingStore(config["text_store"], cfg.model.dlg_captions)
    learner = build_learner(cfg, store.dim, device)
    ckpt = latest_checkpoint(run.out_dir, run.use_ray, device)
    start = learner.restore(ckpt) if ckpt is not None else 0
    if ckpt is not None and run.rank == 0:
        console.print(f"  train: resuming from step {start}")
    data = training_set(config["index"], config["roots"], read_split(config["split"]), cfg)
    streams = build_streams(data, t, cfg.execution.train, seed=t.seed + 1000 * run.rank, start=start,
                            pin=device.type == "cuda")
    seed_step_rngs(t.seed, run.rank, start, ckpt)  # last: nothing above may draw from them after the restore
    sup_loss = build_supervised_loss(cfg.loss.dyce, cfg.loss.hard_ratio, cfg.loss.omega, cfg.loss.ignore_index)
    return Worker(**vars(run), learner=learner, store=store, streams=streams,
                  model=distribute(learner.student, run.use_ray, run.world), sup_loss=sup_loss, start=start)


def optimise(w: Worker, step: int) -> dict[str, torch.Tensor]:
    """One step of the method: a batch of each stream, the losses, AdamW, then the EMA teacher (Eq. 6)."""
    t, learner = w.cfg.train, w.learner
    learner.set_lr(step, t)
    batch = next_batch(w.streams, w.store, w.cfg.model.max_tokens, w.device)
    loss, logs = train_step(batch, w.model, learner.teacher, w.sup_loss, w.cfg, t.amp and w.device.type == "cuda")
    learner.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    learner.optimizer.step()
    ema_update(learner.teacher, learner.student, ema_alpha(step, t.ema_alpha, t.ema_warmup))
    return logs


def train_func(config: dict[str, Any]) -> dict[str, float]:
    """Train for ``train.iterations`` steps; ``config`` as ``worker_config`` makes it. Returns the last logs."""
    w = setup_worker(config)
    w.learner.student.train()

    def save(done: int, logs: dict[str, Any]) -> None:
        training.write_checkpoint(w.out_dir, done, w.learner.networks, w.learner.optimizers, w.meta, w.rank,
                                  w.use_ray, logs)

    return training.fit_steps(w, w.start, lambda step: optimise(w, step),
                              lambda: {"lr": w.learner.optimizer.param_groups[-1]["lr"]}, save)


def worker_config(cfg: Config, inputs: dict[str, Path], out_dir: Path, workdir: Path, use_ray: bool) -> dict:
    """``train_func``'s argument: plain, absolute values a Ray worker on any node can use."""
    return training.worker_config(cfg, out_dir, use_ray, index=str(Path(inputs["ingest"], INDEX_FILE).resolve()),
                                  roots={k: str(v) for k, v in dataset_roots(cfg.data, workdir).items()},
                                  split=str(Path(inputs["split"]).resolve()),
                                  text_store=str(Path(inputs["embed_text"]).resolve()))


def cross_domain(cfg: Config, data: TrainingSet) -> bool:
    return bool(data.unlabelled) and cfg.train.mix != "none" and cfg.train.mix_from != "unlabelled"


def mixing(cfg: Config, data: TrainingSet) -> str:
    """Which strong views ran: e.g. ``classmix: cross-domain 50 %, within the target 50 %``."""
    t = cfg.train
    if not data.unlabelled:
        return "none (no consistency training)"
    if t.mix == "none":
        return "none (photometric view only)"
    share = {"unlabelled": 0.0, "labelled": 1.0, "both": t.cross_domain_ratio}[t.mix_from]
    if t.batch_size < 2:
        share = 1.0 if t.mix_from != "unlabelled" else 0.0
    return f"{t.mix}: cross-domain {100 * share:.0f} %, within the target {100 * (1 - share):.0f} %"


def describe(cfg: Config, data: TrainingSet) -> dict[str, Any]:
    """What the training actually used, as the paper's ablation names it (Table 3)."""
    return {
        "ct": bool(data.unlabelled),  # consistency on, with a weight, and unlabelled images to apply it to
        "mixing": mixing(cfg, data), "colour_jitter": jitter(cfg.train) if data.unlabelled else "-",
        "pasted_gt": cfg.loss.pasted_gt if cross_domain(cfg, data) else "-",
        "dyce": cfg.loss.dyce, "dlg": cfg.model.dlg, "dlg_captions": cfg.model.dlg_captions if cfg.model.dlg else "-",
        "vlp": vision_init(cfg.model) == "clip", "vision_init": vision_init(cfg.model),
        "labelled_target_images": len(data.labelled_target), "unlabelled_images": len(data.unlabelled),
        "source_images": len(data.source),
    }


def fit_on_ray(config: dict[str, Any], cfg: Config, name: str, func=None) -> None:
    """``func`` (default ``train_func``) on ``train.workers`` DDP workers, as ``stages.training.fit_on_ray``."""
    training.fit_on_ray(config, cfg, name, func or train_func)


def train_on_ray(ctx: StageContext) -> StageResult:
    config = worker_config(ctx.cfg, ctx.inputs, ctx.out_dir, ctx.workdir, use_ray=True)
    data = training_set(config["index"], config["roots"], read_split(config["split"]), ctx.cfg)
    return training.train_stage(ctx, config, describe(ctx.cfg, data), train_func)
