"""What every task's evaluation shares: the model held where it runs — a Ray actor (on a GPU worker when
``execution.eval.num_gpus`` > 0), so the driver never builds a full model — fed chunks of items with a progress bar, each
chunk's result folded into the driver's totals. A task's evaluator is a class whose ``__call__(items, first)``
scores a chunk (``first``: the index of items[0]) and that extends ``Held`` (where it ran)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipeline.progress import progress


class Held:
    """Where an evaluator runs: its process, host and device (``location()``, recorded with the metrics)."""

    def hold(self, device: Any) -> None:
        import os
        import socket

        self.device = device
        self.where = {"pid": os.getpid(), "host": socket.gethostname(), "device": str(device)}

    def location(self) -> dict[str, Any]:
        return self.where


def evaluate_on_ray(ctx: Any, evaluator: type, args: tuple, items: list[Any], chunk: int, unit: str,
                    fold: Callable[[Any], None], label: str = "evaluate") -> dict[str, Any]:
    """``evaluator(*args)`` in one Ray actor (``execution.eval.num_cpus``, ``execution.eval.num_gpus``), ``items`` through it in chunks
    of ``chunk`` with a progress bar, each chunk's result given to ``fold``; returns where it ran."""
    import ray

    from pipeline.shards import init_ray

    cfg = ctx.cfg
    init_ray(cfg.cluster, ctx.workdir / "logs")
    actor = ray.remote(evaluator).options(num_cpus=cfg.execution.eval.num_cpus, num_gpus=cfg.execution.eval.num_gpus or None).remote(*args)
    try:
        with progress(label, total=len(items), unit=unit) as advance:
            for start in range(0, len(items), chunk):
                fold(ray.get(actor.__call__.remote(items[start:start + chunk], start)))
                advance(len(items[start:start + chunk]))
        return ray.get(actor.location.remote())
    finally:
        ray.kill(actor)
