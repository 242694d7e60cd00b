"""The one place the CLI talks to a Frontend: a connection for ``--endpoint``, and the executor
listing that the core client does not offer.

With no ``--endpoint`` the core client resolves where to connect itself (FLAME_ENDPOINT,
``~/.flame/flame.yaml``, else the embedded runtime of FLAME_AGENTS_HOME, started if needed).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flame_agents.core import Connection

# The client stack (grpc, pyarrow) is imported inside the functions: it takes a good part of a
# second, and `--help`, `status`, `down` and YAML errors should not wait for it.

__all__ = ["connection", "list_executors"]


@contextmanager
def connection(endpoint: str | None) -> Iterator[Connection]:
    """A core client connection for the duration of one command."""
    from flame_agents.core import connect

    conn = connect(endpoint)
    try:
        yield conn
    finally:
        conn.close()


def list_executors(conn: Connection, *, with_process: bool = False) -> list[dict[str, Any]]:
    """The Frontend's executors as plain rows (id, node, state, session_id).

    ``with_process``: also ``pid`` and ``start_time`` (epoch ms) of each executor's process,
    None when the Frontend does not say (a Flame cluster; see ``_wire.executor_process``).
    """
    from flame_agents._wire import frontend_pb2, types_pb2
    from flame_agents._wire.executor_process import executor_process

    reply = conn.call("list_executors", conn.stub.ListExecutor, frontend_pb2.ListExecutorRequest())
    rows = []
    for ex in reply.executors:
        row: dict[str, Any] = {
            "id": ex.metadata.id,
            "node": ex.spec.node,
            # "ExecutorBound" -> "BOUND", spelled like the other states the CLI prints.
            "state": types_pb2.ExecutorState.Name(ex.status.state).removeprefix("Executor").upper(),
            "session_id": ex.status.session_id if ex.status.HasField("session_id") else None,
        }
        if with_process:
            process = executor_process(ex)
            row["pid"] = process.pid if process else None
            row["start_time"] = process.start_time if process else None
        rows.append(row)
    return rows
