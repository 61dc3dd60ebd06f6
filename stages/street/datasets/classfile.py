"""A user's class file (YAML): the class names, a colour per class, how mask values map to class ids (by integer
value or by RGB colour), which values are ignored, and optional evaluation subsets. The ``folder`` dataset reads
its labels through it; as the target, its classes are the task's classes (the head, the tables, the palette).

    masks: rgb                  # value (default): a mask pixel is an integer 0-255; rgb: a colour
    ignore: [[0, 0, 0]]         # mask values (value masks) or colours (rgb masks) that are no class
    classes:
      - name: road
        colour: [128, 64, 128]  # its colour in the report and in colour predictions
        values: [[128, 64, 128], [244, 35, 232]]  # its mask values or colours; default: [its index] / [its colour]
      - name: vehicle
        colour: [0, 0, 142]
        target: car             # a source's class file only: the target class it counts as (default: its own
                                # name; null: ignored); a source class the target lacks is ignored
    subsets:                    # optional: more mIoU columns, each over some classes
      vehicles: [vehicle]

Every error names the file, the line and the key (``classes.1.colour``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Colour = tuple[int, int, int]


class ClassEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    colour: Colour
    values: list[int | Colour] | None = None  # None: [index] for value masks, [colour] for rgb masks
    target: str | None = ""  # "": its own name; None: ignored (as a source)

    @field_validator("colour")
    @classmethod
    def _byte(cls, c: Colour) -> Colour:
        if not all(0 <= v <= 255 for v in c):
            raise ValueError(f"{list(c)} is not a colour (three values 0-255)")
        return c


class ClassFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    masks: Literal["value", "rgb"] = "value"
    ignore: list[int | Colour] = [255]
    classes: list[ClassEntry] = Field(min_length=1)
    subsets: dict[str, list[str]] = {}

    @model_validator(mode="after")
    def _consistent(self) -> ClassFile:
        names = [c.name for c in self.classes]
        if len(set(names)) != len(names):
            twice = next(n for n in names if names.count(n) > 1)
            raise ValueError(f"classes: {twice!r} is named twice")
        if len(names) > 254:
            raise ValueError(f"classes: {len(names)} classes; at most 254 (255 is the ignored label)")
        for key, members in self.subsets.items():
            if unknown := [m for m in members if m not in names]:
                raise ValueError(f"subsets.{key}: {unknown[0]!r} is not a class of this file")
        self._check_values()
        return self

    def _check_values(self) -> None:
        rgb, seen = self.masks == "rgb", {}
        for k, entry in enumerate(self.classes):
            for v in self.values_of(k):
                if isinstance(v, int) == rgb or (isinstance(v, int) and not 0 <= v <= 255):
                    kind = "a colour [r, g, b]" if rgb else "an integer 0-255"
                    raise ValueError(f"classes.{k}.values: {v!r} is not {kind} (masks: {self.masks})")
                if v in seen:
                    raise ValueError(f"classes.{k}.values: {v!r} is already class {seen[v]!r}'s")
                seen[v] = entry.name
        for v in self.ignore:
            if isinstance(v, int) == rgb:
                raise ValueError(f"ignore: {v!r} is not {'a colour' if rgb else 'an integer'} (masks: {self.masks})")

    def values_of(self, k: int) -> list[int | Colour]:
        """The mask values (or colours) of class ``k``."""
        entry = self.classes[k]
        if entry.values is not None:
            return [tuple(v) if isinstance(v, (list, tuple)) else v for v in entry.values]
        return [entry.colour] if self.masks == "rgb" else [k]

    def target_of(self, k: int) -> str | None:
        """The target class name class ``k`` counts as (None: ignored)."""
        entry = self.classes[k]
        return entry.name if entry.target == "" else entry.target

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classes)


def key_line(text: str, loc: tuple) -> int | None:
    """The 1-based line of the YAML node at ``loc`` (keys and list indices), or of its nearest parent."""
    node, line = yaml.compose(text), None
    for part in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == str(part)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            node = None
    return node.start_mark.line + 1 if node is not None else line


def read_class_file(path: Path | str) -> ClassFile:
    """The class file at ``path``; ValueError naming the file, the line and the key of the first problem. Read
    once while the file is unchanged (the class set and each domain's codec ask for it)."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as err:
        raise ValueError(f"{path}: cannot read the class file ({err.strerror})") from None
    return _read(path, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=16)
def _read(path: Path, mtime_ns: int, size: int) -> ClassFile:
    try:
        text = path.read_text()
    except OSError as err:
        raise ValueError(f"{path}: cannot read the class file ({err.strerror})") from None
    return parse_class_file(text, path)


def parse_class_file(text: str, path: Path | str) -> ClassFile:
    """A class file's ``text`` (from ``path``, for messages)."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise ValueError(f"{path}:{mark.line + 1 if mark else '?'}: not valid YAML") from None
    try:
        return ClassFile.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        msg = first["msg"].removeprefix("Value error, ")
        loc = tuple(first["loc"])
        if ": " in msg and not loc:  # a model check names its key itself: "classes.1.values: ..."
            key, msg = msg.split(": ", 1)
            loc = tuple(int(p) if p.isdigit() else p for p in key.split("."))
        msg = "unknown key" if first["type"] == "extra_forbidden" else msg
        return _raise(path, text, loc, msg)


def _raise(path: Path | str, text: str, loc: tuple, msg: str) -> ClassFile:
    line = key_line(text, loc) if isinstance(yaml.safe_load(text), dict) else 1
    raise ValueError(f"{path}:{line}: {'.'.join(map(str, loc)) or '<root>'}: {msg}")
