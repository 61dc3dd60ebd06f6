"""What each stage asks Ray for, from the config: one place that says it, for the cluster-fit check."""

from __future__ import annotations

from pipeline.config import Config


def stage_requests(cfg: Config) -> dict[str, dict[str, float]]:
    """Ray resource request of each kind of task or actor a run starts (CPU, GPU), by name."""
    c, t, tr, ev = cfg.caption, cfg.text, cfg.train, cfg.eval
    gpu = 1.0 if tr.use_gpu is True else 0.0  # "auto" asks for a GPU only where the cluster has one
    return {
        "caption decode task": {"CPU": c.decode_cpus},
        "caption replica": {"CPU": c.replica_cpus, "GPU": c.num_gpus},
        "text replica": {"CPU": 1.0, "GPU": t.num_gpus},
        "train worker": {"CPU": float(tr.cpus_per_worker), "GPU": gpu},
        "evaluation actor": {"CPU": ev.num_cpus, "GPU": ev.num_gpus},
    }


def misfits(cfg: Config, node_types: dict[str, dict[str, float]]) -> list[str]:
    """The requests that no node type can hold."""
    def fits(request: dict[str, float], node: dict[str, float]) -> bool:
        return all(node.get(k, 0.0) >= v for k, v in request.items() if v > 0)

    return [name for name, request in stage_requests(cfg).items()
            if not any(fits(request, node) for node in node_types.values())]
