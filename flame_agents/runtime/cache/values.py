"""What the object store is handed and what it answers: uploads, read replies, object facts.

The Arrow Flight server (:mod:`.server`) turns these into the wire's tables and tickets; the
store (:mod:`.object_store`) never sees a Flight message.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

__all__ = [
    "NativeBody",
    "NativeReply",
    "NotModified",
    "ObjectInfo",
    "ReadReply",
    "RowsReply",
]


@dataclass(frozen=True)
class NativeBody:
    """A native Arrow table as uploaded: schema (with ``flame.cache.*`` metadata) and batches."""

    schema: pa.Schema
    batches: list[pa.RecordBatch]


@dataclass(frozen=True)
class NotModified:
    """The caller already holds ``version``."""

    version: int


@dataclass(frozen=True)
class NativeReply:
    """A native Arrow object; ``table``'s metadata carries ``flame.cache.version``."""

    version: int
    table: pa.Table


@dataclass(frozen=True)
class RowsReply:
    """Rows ``(version, kind, data)``: a full reply starts with the base row, else patches only."""

    version: int
    rows: list[tuple[int, str, bytes]]


ReadReply = NotModified | NativeReply | RowsReply


@dataclass(frozen=True)
class ObjectInfo:
    """What list_flights and get_flight_info report about an object."""

    key: str
    version: int
    size: int
    native_schema: pa.Schema | None
