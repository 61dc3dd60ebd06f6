"""The plug-in registry (DESIGN §7): names → modules, each imported on first use, read with defaults.

Every kind of plug-in (3D methods, street datasets, tasks) is a ``Registry``: the only list of its kind, one line
per entry, and ``register`` for one's own. A registry imports nothing until an entry is asked for, so the config
and the CLI can check a name without loading what the entry needs (torch for a method).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class Entry:
    """One registered module, read with the registry's defaults for what it leaves out."""

    def __init__(self, name: str, module: ModuleType, defaults: dict[str, Any]):
        self.name, self.module, self._defaults = name, module, defaults

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        if hasattr(self.module, attr):
            return getattr(self.module, attr)
        if attr in self._defaults:
            return self._defaults[attr]
        raise AttributeError(f"{self.module.__name__} has no {attr}")

    def __repr__(self) -> str:
        return f"<{self.name}: {self.module.__name__}>"


class Registry:
    """``kind``'s entries by name; ``key`` is the config key that names one (used in errors)."""

    def __init__(self, kind: str, key: str, modules: dict[str, str], defaults: dict[str, Any] | None = None):
        self.kind, self.key, self._modules, self._defaults = kind, key, dict(modules), defaults or {}
        self._loaded: dict[str, Entry] = {}

    def register(self, name: str, module: str) -> None:
        """Add (or replace) ``name``: ``module`` is the dotted path of its module, imported on first use."""
        self._modules[name] = module
        self._loaded.pop(name, None)

    def unregister(self, name: str) -> None:
        self._modules.pop(name, None)
        self._loaded.pop(name, None)

    def names(self) -> tuple[str, ...]:
        return tuple(self._modules)

    def check(self, name: str) -> None:
        """ValueError ``"<key>: 'x' is not one of a, b"`` for an unknown name."""
        if name not in self._modules:
            raise ValueError(f"{self.key}: {name!r} is not a registered {self.kind} ({', '.join(self._modules)})")

    def get(self, name: str) -> Entry:
        self.check(name)
        if name not in self._loaded:
            self._loaded[name] = Entry(name, importlib.import_module(self._modules[name]), self._defaults)
        return self._loaded[name]
