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

from models.street.config import ModelConfig
from models.street.segmentor import Segmentor, build_segmentor
from pipeline.store import atomic_path

FORMAT = "semidavil-checkpoint/1"
MODEL_FORMAT = "semidavil-model/1"  # `semidavil export`: one network's weights and the config that rebuilds it
NETWORKS = ("teacher", "student")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message names the file."""


@dataclass
class Checkpoint:
    step: int
    networks: dict[str, dict[str, torch.Tensor]]  # name -> state_dict: student and teacher; a, b; net
    optimizers: dict[str, dict[str, Any]]  # name -> a torch optimizer state_dict ("optimizer" for one)
    meta: dict[str, Any]  # text_dim, num_classes, ...
    rng: dict[str, Any]  # python, numpy, torch (and cuda) generator states

    @property
    def student(self) -> dict[str, torch.Tensor]:
        return self.networks["student"]

    @property
    def teacher(self) -> dict[str, torch.Tensor]:
        return self.networks["teacher"]

    @property
    def optimizer(self) -> dict[str, Any]:
        return self.optimizers["optimizer"]


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
def _split_optimizer(state: dict[str, Any], name: str = "optimizer") -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    tensors, plain = {}, {}
    for pid, entries in state["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{name}.{pid}.{key}"] = value
            else:
                plain[f"{pid}.{key}"] = value
    return {"param_groups": state["param_groups"], "plain": plain}, tensors


def _join_optimizer(header: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    for name, value in header["plain"].items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    return {"state": state, "param_groups": header["param_groups"]}


# files -------------------------------------------------------------------------------------------------
def save_checkpoint(path: Path, step: int, student: torch.nn.Module, teacher: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, meta: dict[str, Any]) -> Path:
    """The SSDA trainer's checkpoint: student, teacher and their optimizer."""
    return save_state(path, step, {"student": student, "teacher": teacher}, {"optimizer": optimizer}, meta)


def save_state(path: Path, step: int, networks: dict[str, torch.nn.Module],
               optimizers: dict[str, torch.optim.Optimizer], meta: dict[str, Any]) -> Path:
    """Write a checkpoint of any trainer's networks and optimizers (by name) whole: temporary name, then rename."""
    from safetensors.torch import save_file

    if set(networks) & set(optimizers) or "rng" in {*networks, *optimizers}:
        raise ValueError(f"checkpoint names must differ: networks {sorted(networks)}, optimizers {sorted(optimizers)}")
    opt_headers, tensors = {}, {}
    for name, optimizer in optimizers.items():
        opt_headers[name], opt_tensors = _split_optimizer(optimizer.state_dict(), name)
        tensors.update(opt_tensors)
    rng_header, rng_tensors = rng_state()
    for name, net in networks.items():
        tensors.update({f"{name}.{k}": v for k, v in net.state_dict().items()})
    tensors = {k: v.detach().contiguous().cpu() for k, v in {**tensors, **rng_tensors}.items()}
    header = {"format": FORMAT, "step": step, "meta": meta, "networks": sorted(networks), "optimizers": opt_headers,
              "rng": rng_header}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"semidavil": json.dumps(header)})
    return Path(path)


def _by_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}


def checkpoint_step(path: Path | str) -> int:
    """The step a checkpoint was written at, from its header alone (no tensors are read)."""
    return _read_header(Path(path))["step"]


def _read_header(path: Path, formats: tuple[str, ...] = (FORMAT,)) -> dict[str, Any]:
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
    if not isinstance(header, dict) or header.get("format") not in formats:
        raise CheckpointError(f"{path}: a safetensors file, but not a SemiDAViL file (no {' or '.join(formats)} "
                              "header)")
    return header


def load_checkpoint(path: Path | str, device: torch.device | str = "cpu") -> Checkpoint:
    """Read a checkpoint that ``save_checkpoint`` wrote; CheckpointError naming the file for anything else."""
    from safetensors.torch import load_file

    path = Path(path)
    header = _read_header(path)  # refuses anything but our safetensors files before any tensor is read
    tensors = load_file(str(path), device=str(device))
    rng = {**header["rng"], **{k: v.cpu() for k, v in _by_prefix(tensors, "rng.").items()}}
    opt_headers = header["optimizers"] if "optimizers" in header else {"optimizer": header["optimizer"]}  # files
    # before several optimizers had one; a best checkpoint (model selection) has none
    networks = header.get("networks", list(NETWORKS))
    return Checkpoint(header["step"], {n: _by_prefix(tensors, f"{n}.") for n in networks},
                      {n: _join_optimizer(h, _by_prefix(tensors, f"{n}.")) for n, h in opt_headers.items()},
                      header["meta"], rng)


def read_meta(path: Path | str) -> dict[str, Any]:
    """The model metadata of a checkpoint or an exported model file (text_dim, num_classes, config)."""
    return _read_header(Path(path), (FORMAT, MODEL_FORMAT))["meta"]


def read_weights(path: Path | str, which: str | None = None,
                 device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """The teacher's or the student's weights, from a checkpoint or from a model file exported with them;
    ``which`` None: a checkpoint's teacher, or the network an exported file holds."""
    from safetensors.torch import load_file

    if which not in (None, *NETWORKS):
        raise ValueError(f"--model: {which!r} is not one of {', '.join(NETWORKS)}")
    header = _read_header(Path(path), (FORMAT, MODEL_FORMAT))
    which = which or header.get("which", "teacher")
    if header["format"] == MODEL_FORMAT and header["which"] != which:
        raise CheckpointError(f"{path}: an exported model holding the {header['which']} only, not the {which}")
    tensors = load_file(str(path), device=str(device))
    return tensors if header["format"] == MODEL_FORMAT else _by_prefix(tensors, f"{which}.")


def load_model(path: Path | str, model: ModelConfig, which: str | None, device: torch.device) -> Segmentor:
    """The teacher or student (``which``) of a checkpoint or exported model file, rebuilt from ``model`` (no
    pretrained weights are read: the file has them all) and the file's metadata, in eval mode on ``device``."""
    meta = read_meta(path)
    net = build_segmentor(model, meta["text_dim"], meta["num_classes"], load_weights=False)
    net.load_state_dict(read_weights(path, which, device))
    return net.to(device).eval()


def export_model(path: Path | str, which: str, out: Path | str) -> Path:
    """One network of a training checkpoint, with the metadata and config that rebuild it, as a model file."""
    from safetensors.torch import save_file

    header = _read_header(Path(path))
    weights = {k: v.contiguous() for k, v in read_weights(path, which).items()}
    meta = {"format": MODEL_FORMAT, "which": which, "step": header["step"], "meta": header["meta"]}
    with atomic_path(Path(out)) as tmp:
        save_file(weights, str(tmp), metadata={"semidavil": json.dumps(meta)})
    return Path(out)
