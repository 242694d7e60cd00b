"""Render command results: aligned tables and key/value blocks for people, JSON for scripts.

Results are the client's dataclasses; :func:`to_jsonable` turns them into plain JSON values
(enums by name, times in milliseconds as on the wire, bytes as size + base64) so ``-o json``
output is stable and parseable with ``json.loads``.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TextIO

__all__ = ["Column", "format_time", "print_json", "print_kv", "print_table", "to_jsonable"]

Column = tuple[str, Callable[[Any], Any]]
"""A table column: its header and how to get the cell from a row object."""


def to_jsonable(value: Any) -> Any:
    """Convert dataclasses, enums, bytes, datetimes and containers to JSON-compatible values."""
    if isinstance(value, enum.Enum):
        return value.name
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        return {"size": len(data), "base64": base64.b64encode(data).decode("ascii")}
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def print_json(value: Any, *, out: TextIO | None = None) -> None:
    """Write ``value`` as indented JSON followed by a newline."""
    stream = out or sys.stdout
    stream.write(json.dumps(to_jsonable(value), indent=2, sort_keys=False) + "\n")


def format_time(value: Any) -> str:
    """Show a wire time (Unix ms) or datetime as local ``YYYY-MM-DD HH:MM:SS``; blank if unset."""
    if value is None or value == 0:
        return ""
    if isinstance(value, (int, float)):
        value = dt.datetime.fromtimestamp(value / 1000)
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, (bytes, bytearray)):
        return f"{len(value)} bytes"
    return str(value)


def print_table(
    columns: Sequence[Column], rows: Iterable[Any], *, out: TextIO | None = None
) -> None:
    """Write ``rows`` as a left-aligned table with a header line (just the header when empty)."""
    stream = out or sys.stdout
    cells = [[_cell(get(row)) for _, get in columns] for row in rows]
    headers = [name for name, _ in columns]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    for line in [headers, *cells]:
        stream.write(
            "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() + "\n"
        )


def print_kv(pairs: Sequence[tuple[str, Any]], *, out: TextIO | None = None) -> None:
    """Write ``key: value`` lines with the values aligned (a "describe" view); unset values
    (None, empty) are left out so the view shows what is there."""
    stream = out or sys.stdout
    pairs = [(k, v) for k, v in pairs if _cell(v) != ""]
    width = max((len(k) for k, _ in pairs), default=0) + 1
    for key, value in pairs:
        stream.write(f"{(key + ':').ljust(width)} {_cell(value)}".rstrip() + "\n")
