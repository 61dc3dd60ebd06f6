"""Training checkpoints without pickle: tensors in one safetensors file, everything else as JSON in its header.

A checkpoint holds the student, the teacher, the optimizer (its tensors, and its param groups as JSON), the
step, the model's metadata and the random number generators' states. Loading never runs code from the file:
``safetensors`` reads tensors and a JSON header only, and a file that is anything else — a pickled ``.pt``,
say — is refused with an error naming it.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.config import ModelConfig
from models.segmentor import Segmentor, build_segmentor
from pipeline.store import atomic_path

FORMAT = "semidavil-checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message names the file."""


@dataclass
class Checkpoint:
    step: int
    student: dict[str, torch.Tensor]
    teacher: dict[str, torch.Tensor]
    optimizer: dict[str, Any]  # a torch optimizer state_dict
    meta: dict[str, Any]  # text_dim, num_classes, ...
    rng: dict[str, Any]  # python, numpy, torch (and cuda) generator states


# random number generators ---------------------------------------------------------------------------
def rng_state() -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """This process's generator states: (JSON part, tensor part)."""
    version, state, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    return {"python": [version, list(state), gauss], "numpy": [name, keys.tolist(), pos, has_gauss, cached]}, tensors


def set_rng_state(rng: dict[str, Any]) -> None:
    version, state, gauss = rng["python"]
    random.setstate((version, tuple(state), gauss))
    name, keys, pos, has_gauss, cached = rng["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["cuda"])


# the optimizer as tensors + JSON -------------------------------------------------------------------
def _split_optimizer(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    tensors, plain = {}, {}
    for pid, entries in state["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{pid}.{key}"] = value
            else:
                plain[f"{pid}.{key}"] = value
    return {"param_groups": state["param_groups"], "plain": plain}, tensors


def _join_optimizer(header: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        pid, key = name.removeprefix("optimizer.").split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    for name, value in header["plain"].items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    return {"state": state, "param_groups": header["param_groups"]}


# files -------------------------------------------------------------------------------------------------
def save_checkpoint(path: Path, step: int, student: torch.nn.Module, teacher: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, meta: dict[str, Any]) -> Path:
    """Write the checkpoint whole (temporary name, then rename)."""
    from safetensors.torch import save_file

    opt_header, opt_tensors = _split_optimizer(optimizer.state_dict())
    rng_header, rng_tensors = rng_state()
    tensors = {**{f"student.{k}": v for k, v in student.state_dict().items()},
               **{f"teacher.{k}": v for k, v in teacher.state_dict().items()}, **opt_tensors, **rng_tensors}
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    header = {"format": FORMAT, "step": step, "meta": meta, "optimizer": opt_header, "rng": rng_header}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"semidavil": json.dumps(header)})
    return Path(path)


def _by_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}


def checkpoint_step(path: Path | str) -> int:
    """The step a checkpoint was written at, from its header alone (no tensors are read)."""
    return _read_header(Path(path))["step"]


def _read_header(path: Path) -> dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import safe_open

    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint file")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = json.loads((f.metadata() or {}).get("semidavil", "null"))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: not a safetensors checkpoint ({str(err)[:120]}); pickled checkpoints "
                              "(.pt, .pth) are refused, since loading one can run any code it holds") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(f"{path}: a safetensors file, but not a SemiDAViL checkpoint (no {FORMAT} header)")
    return header


def load_checkpoint(path: Path | str, device: torch.device | str = "cpu") -> Checkpoint:
    """Read a checkpoint that ``save_checkpoint`` wrote; CheckpointError naming the file for anything else."""
    from safetensors.torch import load_file

    path = Path(path)
    header = _read_header(path)  # refuses anything but our safetensors files before any tensor is read
    tensors = load_file(str(path), device=str(device))
    rng = {**header["rng"], **{k: v.cpu() for k, v in _by_prefix(tensors, "rng.").items()}}
    return Checkpoint(header["step"], _by_prefix(tensors, "student."), _by_prefix(tensors, "teacher."),
                      _join_optimizer(header["optimizer"], _by_prefix(tensors, "optimizer.")), header["meta"], rng)


def load_model(path: Path | str, model: ModelConfig, which: str, device: torch.device) -> Segmentor:
    """The checkpoint's teacher or student (``which``), rebuilt from ``model`` and the checkpoint's metadata,
    in eval mode on ``device``."""
    ckpt = load_checkpoint(path, device)
    net = build_segmentor(model, ckpt.meta["text_dim"], ckpt.meta["num_classes"])
    net.load_state_dict(getattr(ckpt, which))
    return net.to(device).eval()
