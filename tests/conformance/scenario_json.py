"""JSON codec shared by the flamepy scenario runner and the tests: bytes as base64 objects."""

from __future__ import annotations

import base64
from typing import Any

REPLY_MARKER = "@@flamepy-scenario@@ "
"""Prefix of the runner's reply lines, so stray prints of libraries never parse as a reply."""


def to_json(value: Any) -> Any:
    """``value`` with every ``bytes`` replaced by ``{"__bytes__": "<base64>"}``."""
    if isinstance(value, bytes):
        return {"__bytes__": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


def from_json(value: Any) -> Any:
    """The inverse of :func:`to_json`."""
    if isinstance(value, dict):
        if set(value) == {"__bytes__"}:
            return base64.b64decode(value["__bytes__"])
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    return value
