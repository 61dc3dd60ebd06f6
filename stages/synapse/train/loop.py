"""The volumetric trainer's work: ``train_func(config)`` per worker, as DHC trains (xmed-lab/DHC).

Each step draws ``train.batch_size`` labelled and as many unlabelled training cases, a random
``volumes.patch`` (64×128×128) of each with random flips in-plane, and steps the method
(``models.volumes.methods``) with SGD (momentum 0.9, Nesterov, weight decay ``train.weight_decay``, DHC 3e-5), a
polynomial learning rate (per step, where DHC decays per epoch), a sigmoid ramp-up of the unsupervised weight,
and bf16 autocast on GPU. The draws of step t depend on (seed, rank, t) alone, so a resumed run draws what an
uninterrupted one would have. Checkpoints hold every network, optimizer and the method's running state (DHC's
class weights, DePL's class prior).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.losses import DyCELoss
from models.registry import Entry
from models.volumes.methods import spec
from models.volumes.parts import Batch3D, Method, StepContext, SupervisedCE, sigmoid_rampup
from pipeline.config import Config
from pipeline.stage import StageContext, StageError, StageResult
from pipeline.store import write_json
from stages import training
from stages.checkpoint import save_state
from stages.index import INDEX_FILE, read_split
from stages.synapse import SYNAPSE
from stages.synapse.cases import load_case
from stages.synapse.inference import mean_dsc
from stages.trained import BEST
from stages.training import Run, distribute, latest_checkpoint, open_run, poly_lr, seed_step_rngs

NUM_CLASSES = len(SYNAPSE)


# data ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Volumes:
    """The training cases' preprocessed arrays (memory-mapped): labelled (image, label) and unlabelled images."""

    labelled: list[tuple[np.ndarray, np.ndarray]]
    unlabelled: list[np.ndarray]
    ids: tuple[list[str], list[str]]


def training_volumes(ingest_dir: Path, labelled: set[str], need_unlabelled: bool, all_labelled: bool = False
                     ) -> Volumes:
    """The training cases, labelled by the split (or all of them: the fully supervised row) and unlabelled."""
    import pyarrow.parquet as pq

    rows = pq.read_table(Path(ingest_dir) / INDEX_FILE, columns=["image_id", "split"]).to_pylist()
    train = sorted(r["image_id"] for r in rows if r["split"] == "train")
    labelled = set(train) if all_labelled else labelled
    lab, unl = [c for c in train if c in labelled], [c for c in train if c not in labelled]
    if not lab:
        raise StageError(f"{ingest_dir / INDEX_FILE}: none of the labelled cases {sorted(labelled)} is a train case")
    if need_unlabelled and not unl:
        raise StageError(f"{ingest_dir / INDEX_FILE}: every train case is labelled; a semi-supervised method needs "
                         "unlabelled ones")
    return Volumes([load_case(ingest_dir, c) for c in lab], [load_case(ingest_dir, c)[0] for c in unl], (lab, unl))


def random_patch(arrays: tuple[np.ndarray, ...], patch: tuple[int, int, int], rng: np.random.Generator
                 ) -> list[np.ndarray]:
    """The same random ``patch`` of each array (zero-padded where a side is smaller), flipped in-plane at random
    (left-right and up-down, each with probability 1/2: DHC's RandomFlip_LR and RandomFlip_UD)."""
    shape = arrays[0].shape
    pad = [(0, max(p - s, 0)) for p, s in zip(patch, shape, strict=True)]
    starts = [int(rng.integers(0, max(s - p, 0) + 1)) for p, s in zip(patch, shape, strict=True)]
    flips = [axis for axis in (2, 1) if rng.random() < 0.5]  # W (left-right), then H (up-down)
    out = []
    for a in arrays:
        a = np.pad(a, pad) if any(p[1] for p in pad) else a
        crop = np.asarray(a[tuple(slice(s, s + p) for s, p in zip(starts, patch, strict=True))])
        out.append(np.ascontiguousarray(np.flip(crop, flips) if flips else crop))
    return out


def draw_batch(vols: Volumes, n: int, patch: tuple[int, int, int], seed: int, rank: int, step: int,
               device: torch.device, unlabelled: bool) -> Batch3D:
    """Step ``step``'s batch on rank ``rank``: n labelled and n unlabelled patches, from (seed, rank, step)."""
    rng = np.random.default_rng([seed, rank, step])
    lab = [random_patch(vols.labelled[int(i)], patch, rng) for i in rng.integers(0, len(vols.labelled), n)]
    images = torch.from_numpy(np.stack([x for x, _ in lab]))[:, None].float()
    labels = torch.from_numpy(np.stack([y for _, y in lab]).astype(np.int64))
    unl = None
    if unlabelled:
        picks = rng.integers(0, len(vols.unlabelled), n)
        unl = torch.from_numpy(np.stack([random_patch((vols.unlabelled[int(i)],), patch, rng)[0] for i in picks]))
        unl = unl[:, None].float().to(device)
    return Batch3D(images.to(device), labels.to(device), unl)


def labelled_counts(vols: Volumes) -> torch.Tensor:
    """Voxels of each class over the labelled cases (DHC's DistDW starts from them)."""
    return torch.from_numpy(sum(np.bincount(np.asarray(y).ravel(), minlength=NUM_CLASSES) for _, y in vols.labelled)
                            .astype(np.float64))


# the method's running state, as tensors a checkpoint holds ----------------------------------------------
class RunningState(torch.nn.Module):
    """DHC's DiffDW/DistDW and DePL's q̂ as buffers, so the checkpoint keeps them and a resume continues them."""

    def __init__(self, state: dict[str, Any], fields: dict[str, tuple[str, ...]]):
        super().__init__()
        self.state, self.fields = state, fields  # fields: the tensor attributes of each object in the state
        for key, value in self._tensors().items():
            self.register_buffer(key, value.clone())

    def _tensors(self) -> dict[str, torch.Tensor]:
        out = {}
        for key, value in self.state.items():
            if isinstance(value, torch.Tensor):
                out[key] = value
            else:
                out.update({f"{key}__{f}": getattr(value, f) for f in self.fields[key]})
        return out

    def sync_out(self) -> None:
        """The live state into the buffers (before a save)."""
        for key, value in self._tensors().items():
            getattr(self, key).copy_(value)

    def sync_in(self) -> None:
        """The buffers into the live state (after a restore)."""
        for key in self._tensors():
            value = getattr(self, key).clone()
            if "__" in key:
                obj, f = key.split("__")
                setattr(self.state[obj], f, value)
            else:
                self.state[key] = value


# the worker function ---------------------------------------------------------------------------------
def optimizers_of(m: Method, cfg: Config) -> dict[str, torch.optim.Optimizer]:
    def sgd(net: torch.nn.Module) -> torch.optim.Optimizer:
        return torch.optim.SGD(net.parameters(), lr=cfg.train.lr, momentum=cfg.volumes.momentum,
                               weight_decay=cfg.train.weight_decay, nesterov=True)

    if len(m.networks) == 1:
        return {"optimizer": sgd(next(iter(m.networks.values())))}
    return {f"optimizer_{name}": sgd(net) for name, net in m.networks.items()}


def checkpoint_meta(cfg: Config) -> dict[str, Any]:
    return {"task": "synapse", "num_classes": NUM_CLASSES, "plugins": list(cfg.plugins),
            "config": {"volumes": cfg.volumes.model_dump(mode="json"), "train": cfg.train.model_dump(mode="json")}}


# model selection, as DHC: the best mean DSC on the eval cases ------------------------------------------
SELECTION = "selection.json"  # the best mean DSC so far, its step, the evaluations since (a resume reads it)


@dataclass
class Selection:
    """DHC's model selection: every ``volumes.eval_every`` steps the mean DSC of the eval cases, the best networks
    kept (``best.safetensors``); after ``volumes.patience`` evaluations without a better one, training stops."""

    cases: dict[str, tuple[np.ndarray, np.ndarray]]  # the eval cases: id -> (image, label)
    best: float = -1.0
    best_step: int = 0
    since: int = 0  # evaluations since the best
    last: float | None = None

    def state(self) -> dict[str, Any]:
        return {"best_dsc": self.best, "best_step": self.best_step, "since_best": self.since, "last_dsc": self.last}


def open_selection(out_dir: Path, ingest_dir: Path, eval_every: int) -> Selection:
    """The eval cases (none when selection is off) and, on a resume, the selection so far."""
    import pyarrow.parquet as pq

    if not eval_every:
        return Selection({})
    rows = pq.read_table(ingest_dir / INDEX_FILE, columns=["image_id", "split"]).to_pylist()
    cases = {r["image_id"]: load_case(ingest_dir, r["image_id"]) for r in rows if r["split"] == "val"}
    if not cases:
        raise StageError(f"{ingest_dir / INDEX_FILE}: no eval case for model selection (volumes.eval_every; 0: off)")
    saved = json.loads((out_dir / SELECTION).read_text()) if (out_dir / SELECTION).exists() else {}
    return Selection(cases, saved.get("best_dsc", -1.0), saved.get("best_step", 0), saved.get("since_best", 0),
                     saved.get("last_dsc"))


def select(w: Worker, done: int) -> bool:
    """At an evaluation step: score the eval cases, keep the networks if they are the best so far; True when the
    patience has run out."""
    v, s = w.cfg.volumes, w.selection
    if not v.eval_every or done % v.eval_every:
        return False
    s.last = mean_dsc(w.method, {c: tuple(map(np.asarray, a)) for c, a in s.cases.items()}, v.patch, v.stride,
                      w.device)
    if s.last > s.best:
        s.best, s.best_step, s.since = s.last, done, 0
        if w.rank == 0:
            save_state(w.out_dir / BEST, done, w.saved(), {}, checkpoint_meta(w.cfg) | {"eval_dsc": s.last})
    else:
        s.since += 1
    if w.rank == 0:
        write_json(s.state(), w.out_dir / SELECTION)
    return bool(v.patience) and s.since >= v.patience


@dataclass
class Worker(Run):
    """One rank's training, as ``setup_worker`` builds it: the loop runs ``optimise`` on it step by step."""

    spec: Entry  # the method (models.volumes.methods)
    method: Method  # the networks as saved
    stepping: Method  # the same, wrapped for DDP when there are several workers
    optimizers: dict[str, torch.optim.Optimizer]
    context: StepContext
    running: RunningState
    volumes: Volumes
    selection: Selection
    start: int

    def saved(self) -> dict[str, torch.nn.Module]:
        self.running.sync_out()
        return {**self.method.networks, **self.method.frozen, "state": self.running}


def setup_worker(config: dict[str, Any]) -> Worker:
    run = open_run(config)
    cfg, t, v, device = run.cfg, run.cfg.train, run.cfg.volumes, run.device
    torch.manual_seed(t.seed)  # the same initial weights on every rank
    kind = spec(v.method)
    method = kind.build(NUM_CLASSES, v)
    for net in (*method.networks.values(), *method.frozen.values()):
        net.to(device).train()  # UA-MT's teacher too: DHC runs it in training mode
    vols = training_volumes(Path(config["ingest"]), read_split(Path(config["split"])), kind.SEMI, kind.ALL_LABELLED)
    running = RunningState(kind.initial_state(labelled_counts(vols), v.patch, device), kind.STATE_FIELDS).to(device)
    optimizers = optimizers_of(method, cfg)
    ckpt = latest_checkpoint(run.out_dir, run.use_ray, device)
    start = training.restore(ckpt, {**method.networks, **method.frozen, "state": running}, optimizers) if ckpt else 0
    running.sync_in()
    seed_step_rngs(t.seed, run.rank, start, ckpt)
    stepping = Method(method.name, {k: distribute(n, run.use_ray, run.world) for k, n in method.networks.items()},
                      method.frozen, NUM_CLASSES)
    sup_ce = SupervisedCE(cfg.loss.dyce, cfg.loss.hard_ratio, cfg.loss.omega, v.dyce_keeps_weights)
    unsup_ce = DyCELoss(1.0, cfg.loss.omega, ignore_index=255) if cfg.loss.dyce and v.dyce_unsup else None
    epoch_steps = -(-len(vols.unlabelled) // t.batch_size) if vols.unlabelled else 1  # DHC: ceil(unlabelled / batch)
    context = StepContext(sup_ce, v.unsup_weight, start, t.iterations, v, running.state, unsup_ce, epoch_steps)
    selection = open_selection(run.out_dir, Path(config["ingest"]), v.eval_every)
    return Worker(**vars(run), spec=kind, method=method, stepping=stepping, optimizers=optimizers, context=context,
                  running=running, volumes=vols, selection=selection, start=start)


def optimise(w: Worker, step: int) -> dict[str, torch.Tensor]:
    t, v = w.cfg.train, w.cfg.volumes
    for optimizer in w.optimizers.values():
        for group in optimizer.param_groups:
            group["lr"] = t.lr * poly_lr(step, t.iterations, t.lr_power)
    w.context.step = step
    w.context.unsup_weight = v.unsup_weight * (sigmoid_rampup(step, t.iterations) if v.rampup else 1.0)
    batch = draw_batch(w.volumes, t.batch_size, v.patch, t.seed, w.rank, step, w.device, w.spec.SEMI)
    with torch.autocast(w.device.type, dtype=torch.bfloat16, enabled=t.amp and w.device.type == "cuda"):
        loss, logs = w.spec.step(w.stepping, batch, w.context)
        logs = {"loss": loss.detach(), **logs}
    for optimizer in w.optimizers.values():
        optimizer.zero_grad(set_to_none=True)
    loss.backward()
    for optimizer in w.optimizers.values():
        optimizer.step()
    w.spec.teacher(w.method, step, w.context)
    return logs


def train_func(config: dict[str, Any]) -> dict[str, float]:
    """Train for ``train.iterations`` steps; returns the last logs."""
    w = setup_worker(config)

    def save(done: int, logs: dict[str, Any]) -> None:
        training.write_checkpoint(w.out_dir, done, w.saved(), w.optimizers, checkpoint_meta(w.cfg), w.rank,
                                  w.use_ray, logs)

    def progress_logs() -> dict[str, Any]:
        selected = {"eval_dsc": w.selection.last, "best_dsc": w.selection.best} if w.selection.last is not None else {}
        return {"lr": next(iter(w.optimizers.values())).param_groups[0]["lr"], "unsup_weight": w.context.unsup_weight,
                **selected}

    return training.fit_steps(w, w.start, lambda step: optimise(w, step), progress_logs, save,
                              lambda done: select(w, done))


def worker_config(cfg: Config, inputs: dict[str, Path], out_dir: Path, use_ray: bool) -> dict[str, Any]:
    return training.worker_config(cfg, out_dir, use_ray, ingest=str(Path(inputs["ingest"]).resolve()),
                                  split=str(Path(inputs["split"]).resolve()))


def describe(cfg: Config, vols: Volumes) -> dict[str, Any]:
    """What the training used: the method, CE or DyCE, and the cases (the report's Table 5 rows)."""
    return {"task": "synapse", "method": cfg.volumes.method, "dyce": cfg.loss.dyce,
            "labelled_cases": vols.ids[0], "unlabelled_cases": vols.ids[1] if spec(cfg.volumes.method).SEMI else [],
            "iterations": cfg.train.iterations, "patch": list(cfg.volumes.patch), "seed": cfg.train.seed}


def train_on_ray(ctx: StageContext) -> StageResult:
    config = worker_config(ctx.cfg, ctx.inputs, ctx.out_dir, use_ray=True)
    vols = training_volumes(Path(config["ingest"]), read_split(Path(config["split"])), False,
                            spec(ctx.cfg.volumes.method).ALL_LABELLED)
    return training.train_stage(ctx, config, describe(ctx.cfg, vols), train_func)
