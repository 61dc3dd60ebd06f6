"""Typed records between stages: the report's run records as a declared schema (every task's report uses it).

A run record is a JSON object (``run.json`` merged with ``metrics.json``). Runs of other settings fill the same
key with other kinds of value: training without consistency writes ``colour_jitter: "-"`` where a run with it
writes ``0.5``. A table built by inferring types from the first rows then fails on the next run
(``ArrowInvalid: Could not convert '-' with type str: tried to convert to double``). Here every declared key has
its type, a placeholder (``"-"``, ``""``, absent) is null, and any key not declared is kept as its JSON text.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pyarrow as pa

PLACEHOLDERS = ("-", "")


def _cell(value: Any, kind: pa.DataType) -> Any:
    """``value`` as a cell of ``kind``: placeholders and NaN null; numbers, flags and lists as they are."""
    if value is None or (isinstance(value, str) and value in PLACEHOLDERS and not pa.types.is_string(kind)):
        return None
    if pa.types.is_string(kind):
        return value if isinstance(value, str) else json.dumps(value)
    if pa.types.is_floating(kind):
        value = float(value)
        return None if math.isnan(value) else value
    if pa.types.is_integer(kind):
        return int(value)
    if pa.types.is_boolean(kind):
        return bool(value)
    return value


def records_table(rows: list[dict[str, Any]], fields: dict[str, pa.DataType]) -> pa.Table:
    """``rows`` as one table: the declared ``fields`` first, with their types; every other key as JSON text.

    A value of a declared field that cannot take its type raises ``ValueError`` naming the key and the value."""
    extra = sorted({k for r in rows for k in r} - set(fields))
    schema = pa.schema([*fields.items(), *((k, pa.string()) for k in extra)])
    columns: dict[str, list[Any]] = {name: [] for name in schema.names}
    for row in rows:
        for field in schema:
            try:
                columns[field.name].append(_cell(row.get(field.name), field.type))
            except (TypeError, ValueError):
                raise ValueError(f"run record: {field.name}: {row.get(field.name)!r} is not a {field.type}") from None
    return pa.table(columns, schema=schema)
