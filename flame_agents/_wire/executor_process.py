"""The process behind an executor: pid and start time, carried inside Flame's ``Executor``.

Our extension of ListExecutor. Flame's ``Executor`` message has no field for the process that
serves it, so the embedded runtime appends one that Flame's schema does not define: field
:data:`PROCESS_FIELD` of ``Executor``, a length-delimited message with ``pid = 1`` (uint64) and
``start_time = 2`` (uint64, epoch milliseconds when the process took the launch)::

    message Executor { ...; ExecutorProcess process = 1000; }   // flame-agents only
    message ExecutorProcess { uint64 pid = 1; uint64 start_time = 2; }

Every protobuf parser skips fields it does not know, so flamepy, flmctl and our own generated
code read the message as before; :func:`executor_process` finds the field among the message's
unknown fields. A Flame cluster sends none, and the pid is then unknown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf import empty_pb2
from google.protobuf.message import DecodeError, Message
from google.protobuf.unknown_fields import UnknownFieldSet

__all__ = ["PROCESS_FIELD", "ExecutorProcess", "add_executor_process", "executor_process"]

PROCESS_FIELD = 1000
"""Field number of the process in ``Executor``: far above Flame's own (1-3), so a field Flame
adds later does not collide with it."""

_VARINT = 0
_LENGTH_DELIMITED = 2


@dataclass(frozen=True)
class ExecutorProcess:
    """The service process of one executor."""

    pid: int
    """Process id on the runtime's machine."""
    start_time: int
    """When it started serving the executor (epoch milliseconds)."""


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _key(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


def add_executor_process(executor: Message, process: ExecutorProcess) -> None:
    """Append ``process`` to ``executor`` (a ``flame.v1.Executor``) as field 1000."""
    body = _key(1, _VARINT) + _varint(process.pid) + _key(2, _VARINT) + _varint(process.start_time)
    executor.MergeFromString(_key(PROCESS_FIELD, _LENGTH_DELIMITED) + _varint(len(body)) + body)


def _unknown_fields(message: Message) -> list[Any]:
    fields = UnknownFieldSet(message)
    return [fields[i] for i in range(len(fields))]


def executor_process(executor: Message) -> ExecutorProcess | None:
    """The process of ``executor`` when our runtime sent it, else None."""
    for field in _unknown_fields(executor):
        if field.field_number != PROCESS_FIELD or field.wire_type != _LENGTH_DELIMITED:
            continue
        try:
            # An empty message type parses the body and keeps its two fields as unknown ones.
            inner = empty_pb2.Empty.FromString(field.data)
        except DecodeError:
            return None
        values = {f.field_number: f.data for f in _unknown_fields(inner) if f.wire_type == _VARINT}
        pid, start = values.get(1), values.get(2)
        if isinstance(pid, int) and isinstance(start, int) and pid > 0:
            return ExecutorProcess(pid=pid, start_time=start)
    return None
