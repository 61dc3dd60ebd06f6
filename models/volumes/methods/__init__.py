"""The registry of the 3D methods (the paper's Table 5, DESIGN §7): the only list of them.

One module per method, named here by one line. A method module defines:

- ``DISPLAY``: its name in the report (``"UA-MT"``); ``PAPER``: {DyCE: (mean DSC, ASD)}, the paper's published
  row (omitted: none); ``SEMI``: whether it reads unlabelled cases (default true); ``ALL_LABELLED``: every training
  case taken as labelled, whatever the split (the fully supervised row);
- ``VERSION``: the method's own version (default 1), raised when a change of its code changes what it trains: the
  train fingerprint of that method alone changes (runs of the other methods are reused);
- ``KEYS``: the ``volumes`` keys of its own that change what it trains (another method's keys change nothing);
- ``build(num_classes, volumes) -> Method``: its networks (``volumes``: the config section, or its saved dict);
- ``step(method, batch, context) -> (loss, logs)``: one training step;
- optional ``initial_state(counts, patch, device) -> dict`` (its running state: tensors, or objects whose
  tensor attributes ``STATE_FIELDS`` names; a checkpoint keeps them), ``check(volumes)`` (raises ValueError
  ``"key: problem"`` for a setting it cannot train), ``loss_keys(volumes) -> dict`` (loss settings of its own
  that its fingerprint reads, when DyCE is on), ``teacher(method, step, context)`` (after each optimiser step).

This module imports no torch: the config validates a method's name against ``names()`` without loading it.
"""

from __future__ import annotations

from typing import Any

from models.registry import Entry, Registry


def _nothing(*_: Any) -> None:
    return None


def _empty(*_: Any) -> dict[str, Any]:
    return {}


METHODS = Registry("method", "volumes.method", {  # one line per method, in the report's row order
    "supervised": "models.volumes.methods.supervised",
    "fully": "models.volumes.methods.fully",
    "uamt": "models.volumes.methods.uamt",
    "urpc": "models.volumes.methods.urpc",
    "depl": "models.volumes.methods.depl",
    "dhc": "models.volumes.methods.dhc",
}, {"VERSION": 1, "PAPER": {}, "SEMI": True, "ALL_LABELLED": False, "KEYS": (), "STATE_FIELDS": {}, "initial_state": _empty, "check": _nothing,
    "loss_keys": _empty, "teacher": _nothing})
register, names = METHODS.register, METHODS.names


def spec(name: str) -> Entry:
    """The registered method ``name`` (ValueError naming ``volumes.method`` for an unknown one)."""
    return METHODS.get(name)
