"""The Arrow schemas and schema metadata of the object cache (flame-wire §4.2, §4.3).

Uploads are either *opaque* (:data:`OPAQUE_SCHEMA`, one ``data`` blob concatenated from every
row, read by column position) or *native* Arrow tables, marked by ``flame.cache.format =
arrow-table-v1`` in their schema metadata and stored as they are. Every non-native do_get reply
has :data:`REPLY_SCHEMA`: rows ``(version, "base"|"patch", data)``.
"""

from __future__ import annotations

import pyarrow as pa

__all__ = [
    "FORMAT_ARROW_TABLE",
    "FORMAT_KEY",
    "LOGICAL_TYPE_KEY",
    "OPAQUE_SCHEMA",
    "REPLY_SCHEMA",
    "ROW_BASE",
    "ROW_PATCH",
    "VERSION_KEY",
    "is_native",
    "native_version",
    "opaque_batch",
]

FORMAT_KEY = b"flame.cache.format"
"""Schema metadata key whose value :data:`FORMAT_ARROW_TABLE` marks a native Arrow object."""
VERSION_KEY = b"flame.cache.version"
"""Schema metadata key of a native reply: the object's version."""
LOGICAL_TYPE_KEY = b"flame.cache.logical_type"
"""Schema metadata key set by clients: what the table was (``pandas.dataframe``, ...)."""
FORMAT_ARROW_TABLE = b"arrow-table-v1"

OPAQUE_SCHEMA = pa.schema([pa.field("version", pa.uint64()), pa.field("data", pa.binary())])
"""Schema of an opaque upload; servers read the columns by position (1 = data)."""

REPLY_SCHEMA = pa.schema(
    [
        pa.field("version", pa.uint64(), nullable=False),
        pa.field("kind", pa.utf8(), nullable=False),
        pa.field("data", pa.binary(), nullable=False),
    ]
)
"""Schema of every non-native do_get reply: rows ``(version, kind, data)``."""

ROW_BASE = "base"
"""``kind`` of the reply row holding the object's base (the first row of a full reply)."""
ROW_PATCH = "patch"
"""``kind`` of a reply row holding one patch."""


def opaque_batch(data: bytes) -> pa.RecordBatch:
    """The one-row ``(version=0, data)`` batch every opaque upload of ours sends."""
    return pa.RecordBatch.from_arrays(
        [pa.array([0], pa.uint64()), pa.array([data], pa.binary())], schema=OPAQUE_SCHEMA
    )


def is_native(schema: pa.Schema) -> bool:
    """Whether an upload or reply schema marks a native Arrow object."""
    return bool((schema.metadata or {}).get(FORMAT_KEY) == FORMAT_ARROW_TABLE)


def native_version(schema: pa.Schema) -> int:
    """The version a native reply carries in ``flame.cache.version`` (0 if missing)."""
    try:
        return int((schema.metadata or {}).get(VERSION_KEY, b"0"))
    except ValueError:
        return 0
