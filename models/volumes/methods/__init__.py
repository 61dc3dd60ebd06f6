"""The registry of the 3D methods (the paper's Table 5, DESIGN §7): the only list of them.

One module per method, named here by one line. A method module defines:

- ``DISPLAY``: its name in the report (``"UA-MT"``); ``PAPER``: {DyCE: (mean DSC, ASD)}, the paper's published
  row (omitted: none); ``SEMI``: whether it reads unlabelled cases (default true);
- ``KEYS``: the ``volumes`` keys of its own that change what it trains (another method's keys change nothing);
- ``build(num_classes, volumes) -> Method``: its networks (``volumes``: the config section, or its saved dict);
- ``step(method, batch, context) -> (loss, logs)``: one training step;
- optional ``initial_state(counts, patch, device) -> dict`` (its running state: tensors, or objects whose
  tensor attributes ``STATE_FIELDS`` names; a checkpoint keeps them), ``check(volumes)`` (raises ValueError
  ``"key: problem"`` for a setting it cannot train), ``loss_keys(volumes) -> dict`` (loss settings of its own
  that its fingerprint reads, when DyCE is on), ``teacher(method, step, volumes)`` (after each optimiser step).

This module imports no torch: the config validates a method's name against ``names()`` without loading it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

_MODULES = {  # name -> module: one line per method, in the report's row order
    "supervised": "models.volumes.methods.supervised",
    "uamt": "models.volumes.methods.uamt",
    "urpc": "models.volumes.methods.urpc",
    "depl": "models.volumes.methods.depl",
    "dhc": "models.volumes.methods.dhc",
}


def register(name: str, module: str) -> None:
    """Add (or replace) a method: ``module`` is the dotted path of its module, imported on first use."""
    _MODULES[name] = module
    spec.cache_clear()


def names() -> tuple[str, ...]:
    return tuple(_MODULES)


def _none(*_: Any) -> None:
    return None


def _empty(*_: Any) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class MethodSpec:
    """A method module's interface, with the defaults filled in."""

    name: str
    display: str
    paper: dict[bool, tuple[float, float]]
    semi: bool
    keys: tuple[str, ...]
    module: ModuleType

    def __getattr__(self, attr: str) -> Any:  # build, step, initial_state, check, loss_keys, teacher, STATE_FIELDS
        defaults = {"initial_state": _empty, "check": _none, "loss_keys": _empty, "teacher": _none,
                    "STATE_FIELDS": {}}
        if hasattr(self.module, attr):
            return getattr(self.module, attr)
        if attr in defaults:
            return defaults[attr]
        raise AttributeError(f"method {self.name} ({self.module.__name__}) has no {attr}")


def _load(name: str) -> MethodSpec:
    if name not in _MODULES:
        raise ValueError(f"volumes.method: {name!r} is not one of {', '.join(_MODULES)}")
    module = importlib.import_module(_MODULES[name])
    return MethodSpec(name, getattr(module, "DISPLAY", name), getattr(module, "PAPER", {}),
                      getattr(module, "SEMI", True), tuple(getattr(module, "KEYS", ())), module)


_loaded: dict[str, MethodSpec] = {}


def spec(name: str) -> MethodSpec:
    """The registered method ``name``; ValueError naming ``volumes.method`` for an unknown one."""
    if name not in _loaded or _loaded[name].module.__name__ != _MODULES.get(name):
        _loaded[name] = _load(name)
    return _loaded[name]


spec.cache_clear = _loaded.clear  # type: ignore[attr-defined]
