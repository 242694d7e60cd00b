"""Error fields as they cross the wire: JSON values out, attribute-safe names back in.

Both structured documents of ours (a cache rejection's ``extra_info``, a task failure's error
document) carry an error's fields (``key``, ``expected_version``, ``limit``, ...) so the other
side raises the same class with the same fields. A value that is not JSON travels as its
``str``; a name that could not be an attribute, or would shadow one every error has
(``message``, ``fields``), is dropped when read back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["from_wire", "to_wire"]

_RESERVED = frozenset({"message", "fields", "retryable", "args", "with_traceback", "add_note"})


def _json_value(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return str(value)
    return value


def to_wire(fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` with every value made JSON (non-JSON values become their ``str``)."""
    return {str(name): _json_value(value) for name, value in fields.items()}


def from_wire(doc: Mapping[str, Any], *, skip: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The fields of a received document that may become attributes of an error."""
    return {
        name: value
        for name, value in doc.items()
        if isinstance(name, str)
        and name.isidentifier()
        and not name.startswith("_")
        and name not in _RESERVED
        and name not in skip
    }
