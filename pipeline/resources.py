"""What each stage asks Ray for, from the config (its ``execution`` section says it), for the cluster-fit check."""

from __future__ import annotations

from pipeline.config import Config


def stage_requests(cfg: Config) -> dict[str, dict[str, float]]:
    """Ray resource request of each kind of task or actor a run starts (CPU, GPU), by name."""
    return cfg.execution.requests()


def misfits(cfg: Config, node_types: dict[str, dict[str, float]]) -> list[str]:
    """The requests that no node type can hold."""
    def fits(request: dict[str, float], node: dict[str, float]) -> bool:
        return all(node.get(k, 0.0) >= v for k, v in request.items() if v > 0)

    return [name for name, request in stage_requests(cfg).items()
            if not any(fits(request, node) for node in node_types.values())]
