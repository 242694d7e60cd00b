"""Payload encoding compatible with flamepy 0.6: what goes into the ``data`` column, and
which objects travel as native Arrow tables instead.

``data`` starts with a 4-byte tag: ``FLM\\x00`` cloudpickle, ``FLM\\x01`` numpy tensor (Arrow
tensor IPC), ``FLM\\x02`` Arrow table, ``FLM\\x03`` Arrow array, ``FLM\\x04`` record batch (IPC
streams). Untagged data is plain cloudpickle, as flamepy reads it.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from typing import Any

import cloudpickle
import pyarrow as pa

from flame_agents._wire.cache.schemas import (
    FORMAT_ARROW_TABLE,
    FORMAT_KEY,
    LOGICAL_TYPE_KEY,
    VERSION_KEY,
)

__all__ = [
    "NativePayload",
    "decode_data",
    "encode_data",
    "from_native",
    "native_payload",
]

_PICKLE = b"FLM\x00"
_NUMPY = b"FLM\x01"
_TABLE = b"FLM\x02"
_ARRAY = b"FLM\x03"
_BATCH = b"FLM\x04"


def _ipc_stream(tag: bytes, batches: list[pa.RecordBatch], schema: pa.Schema) -> bytes:
    sink = pa.BufferOutputStream()
    sink.write(tag)
    with pa.ipc.new_stream(sink, schema) as writer:
        for batch in batches:
            writer.write_batch(batch)
    return bytes(sink.getvalue().to_pybytes())


def _is_numpy_array(obj: Any) -> bool:
    # Look numpy up only if the caller already imported it: never import it on our own.
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(obj, numpy.ndarray)


def encode_data(obj: Any) -> bytes:
    """Tagged bytes for ``obj`` (fast paths for numpy and Arrow, cloudpickle otherwise)."""
    if _is_numpy_array(obj) and (obj.flags.c_contiguous or obj.flags.f_contiguous):
        sink = pa.BufferOutputStream()
        sink.write(_NUMPY)
        pa.ipc.write_tensor(pa.Tensor.from_numpy(obj), sink)
        return bytes(sink.getvalue().to_pybytes())
    if isinstance(obj, pa.Table):
        return _ipc_stream(_TABLE, obj.to_batches(), obj.schema)
    if isinstance(obj, pa.RecordBatch):
        return _ipc_stream(_BATCH, [obj], obj.schema)
    if isinstance(obj, pa.Array):
        batch = pa.RecordBatch.from_arrays([obj], names=["data"])
        return _ipc_stream(_ARRAY, [batch], batch.schema)
    return _PICKLE + bytes(cloudpickle.dumps(obj, protocol=cloudpickle.DEFAULT_PROTOCOL))


def decode_data(data: bytes) -> Any:
    """Inverse of :func:`encode_data`; untagged bytes are plain cloudpickle."""
    tag, body = data[:4], data[4:]
    if tag == _PICKLE:
        return cloudpickle.loads(body)
    if tag == _NUMPY:
        return pa.ipc.read_tensor(pa.BufferReader(body)).to_numpy()
    if tag == _TABLE:
        return pa.ipc.open_stream(pa.BufferReader(body)).read_all()
    if tag == _BATCH:
        return pa.ipc.open_stream(pa.BufferReader(body)).read_next_batch()
    if tag == _ARRAY:
        return pa.ipc.open_stream(pa.BufferReader(body)).read_next_batch().column(0)
    return cloudpickle.loads(data)


@dataclass(frozen=True)
class NativePayload:
    """A tabular object in native Arrow form: its schema (with flame metadata) and batches."""

    schema: pa.Schema
    batches: list[pa.RecordBatch]


def _tabular(obj: Any) -> tuple[str, pa.Table | pa.RecordBatch] | None:
    if isinstance(obj, pa.Table):
        return "pyarrow.table", obj
    if isinstance(obj, pa.RecordBatch):
        return "pyarrow.record_batch", obj
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(obj, pandas.DataFrame):
        return "pandas.dataframe", pa.Table.from_pandas(obj)
    polars = sys.modules.get("polars")
    if polars is not None and isinstance(obj, polars.LazyFrame):
        obj = obj.collect()
    if polars is not None and isinstance(obj, polars.DataFrame):
        return "polars.dataframe", obj.to_arrow()
    to_arrow = getattr(obj, "to_arrow", None)
    if callable(to_arrow):
        try:
            arrow = to_arrow()
        except TypeError:
            return None
        if isinstance(arrow, (pa.Table, pa.RecordBatch)):
            return "dataset", arrow
    return None


def native_payload(obj: Any) -> NativePayload | None:
    """The native Arrow form of tabular objects (tables, batches, data frames), else None."""
    found = _tabular(obj)
    if found is None:
        return None
    logical_type, value = found
    metadata = dict(value.schema.metadata or {})
    metadata[FORMAT_KEY] = FORMAT_ARROW_TABLE
    metadata[VERSION_KEY] = b"0"
    metadata[LOGICAL_TYPE_KEY] = logical_type.encode()
    schema = value.schema.with_metadata(metadata)
    if isinstance(value, pa.RecordBatch):
        return NativePayload(schema, [value.replace_schema_metadata(metadata)])
    table = value.replace_schema_metadata(metadata)
    # An empty table has no batches, but an upload needs at least one.
    batches = table.to_batches() or [pa.RecordBatch.from_pylist([], schema=schema)]
    return NativePayload(schema, batches)


def from_native(table: pa.Table) -> Any:
    """The user's object back from a native reply, without the ``flame.cache.*`` metadata."""
    metadata = table.schema.metadata or {}
    logical_type = metadata.get(LOGICAL_TYPE_KEY, b"pyarrow.table").decode()
    user = {k: v for k, v in metadata.items() if not k.startswith(b"flame.cache.")}
    table = table.replace_schema_metadata(user or None)
    if logical_type == "pyarrow.record_batch":
        batches = table.to_batches()
        return batches[0] if len(batches) == 1 else table
    if logical_type == "pandas.dataframe" and _importable("pandas"):
        return table.to_pandas()
    if logical_type == "polars.dataframe" and _importable("polars"):
        return importlib.import_module("polars").from_arrow(table)
    return table


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True
