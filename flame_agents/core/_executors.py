"""Executors: the runtime's slots that each run one instance (``ListExecutor``).

Flame's ``Executor`` message says which session an executor serves; our runtime also tells the
process behind it (see ``flame_agents._wire.executor_process``), which a Flame cluster does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flame_agents._wire import frontend_pb2, types_pb2
from flame_agents._wire.executor_process import executor_process

if TYPE_CHECKING:
    from flame_agents.core._transport import Transport

__all__ = ["ExecutorInfo", "list_executors"]


@dataclass(frozen=True)
class ExecutorInfo:
    """A snapshot of one executor."""

    id: str
    """The executor id."""
    node: str
    """The node it runs on."""
    state: str
    """``IDLE``, ``BOUND``, ``UNBINDING``, ... (Flame's ``ExecutorState`` without its prefix)."""
    session_id: str | None
    """The session it serves, if bound to one."""
    pid: int | None = None
    """Process id of its instance on the runtime's machine (None when the runtime does not
    say, as a Flame cluster does not)."""
    start_time: int | None = None
    """When that process took the launch (epoch milliseconds), or None."""


def list_executors(conn: Transport) -> list[ExecutorInfo]:
    """Every executor of the runtime."""
    reply = conn.call("list_executors", conn.stub.ListExecutor, frontend_pb2.ListExecutorRequest())
    executors = []
    for ex in reply.executors:
        process = executor_process(ex)
        executors.append(
            ExecutorInfo(
                id=ex.metadata.id,
                node=ex.spec.node,
                # "ExecutorBound" -> "BOUND", spelled like the other states the CLI prints.
                state=types_pb2.ExecutorState.Name(ex.status.state)
                .removeprefix("Executor")
                .upper(),
                session_id=ex.status.session_id if ex.status.HasField("session_id") else None,
                pid=process.pid if process else None,
                start_time=process.start_time if process else None,
            )
        )
    return executors
