"""What every trainer shares (the SSDA trainer, ``stages/street/train/loop.py``, and the volumetric one,
``stages/synapse/train/loop.py``): rank and device, checkpoints and resume, the metrics log, the Ray Train fit
with its failure handling, and the driver's progress bar.

A trainer's per-worker function builds its networks and optimizers, calls ``resume_point`` for the newest
checkpoint, logs with ``log_step`` and saves with ``write_checkpoint`` (rank 0 writes, every rank reports to
Ray Train); ``run_training`` runs it under Ray Train's ``TorchTrainer`` from a stage, or the function runs on
its own with world size 1 (benchmarks, profiling, a machine without Ray).
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.device import pick_device
from pipeline.config import Config, TrainExecution
from pipeline.progress import console, progress
from pipeline.stage import StageError
from stages.checkpoint import Checkpoint, checkpoint_step, load_checkpoint, save_state, set_rng_state
from stages.trained import CHECKPOINT, METRICS, read_metrics


# rank and device --------------------------------------------------------------------------------------
def _world(use_ray: bool) -> tuple[int, int, torch.device]:
    if use_ray:
        import ray.train
        import ray.train.torch

        ctx = ray.train.get_context()
        return ctx.get_world_rank(), ctx.get_world_size(), ray.train.torch.get_device()
    return 0, 1, pick_device()


def use_gpu(t: TrainExecution, on_ray: bool = False) -> bool:
    """``auto``: whether GPUs are there, on this machine or, under Ray, anywhere in the cluster (the driver
    may run on a CPU-only head node)."""
    if t.use_gpu != "auto":
        return bool(t.use_gpu)
    if on_ray:
        import ray

        return ray.cluster_resources().get("GPU", 0) > 0
    return torch.cuda.is_available()


def worker_device(t: TrainExecution, use_ray: bool) -> tuple[int, int, torch.device]:
    """(rank, world size, device) of this worker; a CPU worker under Ray uses the CPUs it reserved."""
    rank, world, device = _world(use_ray)
    if not use_ray and not use_gpu(t):
        device = torch.device("cpu")
    if use_ray and device.type == "cpu":
        torch.set_num_threads(t.cpus_per_worker)  # Ray pins a worker to its CPU share
    return rank, world, device


def distribute(net: torch.nn.Module, use_ray: bool, world: int) -> torch.nn.Module:
    """The network wrapped for DDP when there are several workers (gradients all-reduced), else itself."""
    if not (use_ray and world > 1):
        return net
    import ray.train.torch

    return ray.train.torch.prepare_model(net, move_to_device=False)


# checkpoints and resume -------------------------------------------------------------------------------
def latest_checkpoint(out_dir: Path, use_ray: bool, device: torch.device) -> Checkpoint | None:
    """The newest of Ray Train's reported checkpoint (after it restarted a failed worker group) and this
    stage's own file (rank 0 writes it before reporting; a worker killed right after may leave Ray an older
    one), or None."""
    paths = [out_dir / CHECKPOINT]
    if use_ray:
        import ray.train

        if (reported := ray.train.get_checkpoint()) is not None:
            with reported.as_directory() as directory:
                paths.append(Path(directory) / Path(CHECKPOINT).name)
                return _newest(paths, device)
    return _newest(paths, device)


def _newest(paths: list[Path], device: torch.device) -> Checkpoint | None:
    existing = [p for p in paths if p.exists()]
    return load_checkpoint(max(existing, key=checkpoint_step), device) if existing else None


def restore(ckpt: Checkpoint, networks: dict[str, torch.nn.Module], optimizers: dict[str, torch.optim.Optimizer]
            ) -> int:
    """Load every network and optimizer by name from ``ckpt``; its step."""
    for name, net in networks.items():
        net.load_state_dict(ckpt.networks[name])
    for name, optimizer in optimizers.items():
        optimizer.load_state_dict(ckpt.optimizers[name])
    return ckpt.step


def write_checkpoint(out_dir: Path, step: int, networks: dict[str, torch.nn.Module],
                     optimizers: dict[str, torch.optim.Optimizer], meta: dict[str, Any], rank: int, use_ray: bool,
                     metrics: dict[str, Any]) -> None:
    """Rank 0 writes the checkpoint; under Ray every rank reports (a collective), rank 0 with the checkpoint."""
    path = out_dir / CHECKPOINT
    if rank == 0:
        save_state(path, step, networks, optimizers, meta)
    if use_ray:
        import ray.train

        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(str(path.parent)) if rank == 0
                         else None)


def seed_step_rngs(seed: int, rank: int, start: int, ckpt: Checkpoint | None) -> None:
    """The generators the step draws from (augmentation, noise): from the checkpoint on rank 0, else seeded."""
    if ckpt is not None and rank == 0:
        set_rng_state(ckpt.rng)
        return
    random.seed(seed + 1000 * rank + start)
    np.random.seed((seed + 1000 * rank + start) % 2**32)
    torch.manual_seed(seed + 1000 * rank + start)


def poly_lr(step: int, total: int, power: float) -> float:
    """lr multiplier (1 - t/T)^power: polynomial decay (the paper's factor 0.9; DHC's poly schedule)."""
    return (1.0 - min(step, total) / total) ** power


# the metrics log ---------------------------------------------------------------------------------------
def log_step(out_dir: Path, logs: dict[str, float], rank: int, total: int) -> None:
    if not math.isfinite(logs["loss"]):
        raise FloatingPointError(f"train: loss is {logs['loss']} at step {logs['step']}")
    if rank == 0:
        with open(out_dir / METRICS, "a") as fh:
            fh.write(json.dumps(logs) + "\n")
        console.print(f"  train: step {logs['step']}/{total}  loss {logs['loss']:.4f}  "
                      f"{logs['sec_per_iter']:.3f} s/it")


def _logged_step(out_dir: Path) -> int:
    try:
        metrics = read_metrics(out_dir)
    except ValueError:  # rank 0 is writing a line right now
        return 0
    return metrics[-1]["step"] if metrics else 0


@contextmanager
def follow_training(out_dir: Path, total: int) -> Iterator[None]:
    """A progress bar in the driver, following the metrics log that rank 0 writes (the workers' own lines
    stay in Ray's logs unless --verbose)."""
    stop = threading.Event()

    def follow(advance) -> None:  # noqa: ANN001
        shown = 0
        while True:
            stopping = stop.wait(1.0)
            step = _logged_step(out_dir)
            if step > shown:
                advance(step - shown)
                shown = step
            if stopping:
                return

    with progress("train", total=total, unit="steps") as advance:
        thread = threading.Thread(target=follow, args=(advance,), daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


# Ray Train ---------------------------------------------------------------------------------------------
def fit_on_ray(config: dict[str, Any], cfg: Config, name: str, func: Callable[[dict[str, Any]], Any]) -> None:
    """``func`` on ``train.workers`` DDP workers; a failed worker group is restarted up to
    ``execution.train.max_failures`` times, each time from the last reported checkpoint."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    ex = cfg.execution.train
    TorchTrainer(
        func, train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=cfg.train.workers, use_gpu=use_gpu(ex, on_ray=True),
                                     resources_per_worker={"CPU": ex.cpus_per_worker}),
        run_config=RunConfig(name=name, storage_path=str(Path(config["out_dir"], "ray")),
                             failure_config=FailureConfig(max_failures=ex.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=1)),
    ).fit()


def run_training(config: dict[str, Any], cfg: Config, workdir: Path, name: str,
                 func: Callable[[dict[str, Any]], Any]) -> dict[str, float]:
    """A stage's training: Ray started (or joined), ``func`` fitted under Ray Train with the driver's progress
    bar, and the metrics log checked to reach ``train.iterations``; its last entry."""
    from pipeline.shards import init_ray

    t = cfg.train
    init_ray(cfg.cluster, workdir / "logs")
    out_dir = Path(config["out_dir"])
    console.print(f"  train: {t.iterations} iterations on {t.workers} worker(s) under Ray Train")
    with follow_training(out_dir, t.iterations):
        fit_on_ray(config, cfg, name, func)
    metrics = read_metrics(out_dir)
    if not metrics or (metrics[-1]["step"] != t.iterations and not metrics[-1].get("stopped_early")):
        raise StageError(f"{out_dir / METRICS}: training ended before step {t.iterations}")
    return metrics[-1]


# the loop and the stage, the same for every trainer ---------------------------------------------------
@dataclass
class Run:
    """One rank's training as both trainers' workers hold it: what the loop needs besides the method."""

    cfg: Any  # the validated Config
    out_dir: Path
    rank: int
    world: int  # DDP workers
    use_ray: bool
    device: torch.device


def open_run(config: dict[str, Any]) -> Run:
    """The worker function's argument (``worker_config``) as a Run: the config validated, the output folder made,
    this rank's place and device."""
    from pipeline.config import Config

    cfg = Config.model_validate(config["cfg"])
    out_dir, use_ray = Path(config["out_dir"]), bool(config.get("use_ray", False))
    out_dir.mkdir(parents=True, exist_ok=True)
    rank, world, device = worker_device(cfg.execution.train, use_ray)
    return Run(cfg, out_dir, rank, world, use_ray, device)


def fit_steps(run: Run, start: int, optimise: Callable[[int], dict[str, torch.Tensor]],
              progress_logs: Callable[[], dict[str, Any]], save: Callable[[int, dict[str, Any]], None],
              after: Callable[[int], bool] | None = None) -> dict[str, float]:
    """Steps ``start`` .. ``train.iterations``: ``optimise(step)`` returns the step's logs (tensors); ``after(done)``
    (model selection) may end the training early by returning True. Every ``execution.train.log_every`` steps the
    logs are read (the only wait for the device), with ``progress_logs()`` (lr, ...), and logged; every
    ``checkpoint_every`` steps, and at the end, ``save(done, logs)``. Returns the last logs (``stopped_early`` when
    ``after`` ended it)."""
    t, ex, logs, tic = run.cfg.train, run.cfg.execution.train, {}, time.perf_counter()
    for step in range(start, t.iterations):
        step_logs = optimise(step)
        done = step + 1
        stop = bool(after and after(done))
        if done % ex.log_every == 0 or done == t.iterations or stop:
            logs = {k: v.tolist() for k, v in step_logs.items()} | {"step": done, **progress_logs()} | {
                "workers": run.world, "sec_per_iter": (time.perf_counter() - tic) / (done - start)}
            logs |= {"stopped_early": True} if stop else {}
            log_step(run.out_dir, logs, run.rank, t.iterations)
        if done % ex.checkpoint_every == 0 or done == t.iterations or stop:
            save(done, logs | {"step": done})
        if stop:
            break
    return logs


def worker_config(cfg: Any, out_dir: Path, use_ray: bool, **inputs: Any) -> dict[str, Any]:
    """A worker function's argument: plain, absolute values a Ray worker on any node can use (``inputs``: the
    paths and values of the task's own inputs)."""
    return {"cfg": cfg.model_dump(mode="json"), **inputs, "out_dir": str(Path(out_dir).resolve()), "use_ray": use_ray}


def train_stage(ctx: Any, config: dict[str, Any], setup: dict[str, Any], func: Callable[[dict[str, Any]], Any]
                ) -> Any:
    """A train stage's run: what the training uses written (``setup.json``), ``func`` fitted under Ray Train,
    the last logs as the stage's details."""
    from pipeline.stage import StageResult
    from pipeline.store import write_json
    from stages.trained import SETUP

    write_json(setup, ctx.out_dir / SETUP)
    last = run_training(config, ctx.cfg, ctx.workdir, f"train-{ctx.fingerprint[:12]}", func)
    return StageResult(ctx.cfg.train.iterations, {k: v for k, v in last.items() if k != "step"})
