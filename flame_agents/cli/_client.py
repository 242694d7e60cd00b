"""The one place the CLI talks to a Frontend: a connection for ``--endpoint``, plus the reads the
flmctl verbs need on any session (open or closed) and on executors.

With no ``--endpoint`` the core client resolves where to connect itself (FLAME_ENDPOINT,
``~/.flame/flame.yaml``, else the embedded runtime of FLAME_AGENTS_HOME, started if needed).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flame_agents.core import Connection
    from flame_agents.types import Task

# The client stack (grpc, pyarrow) is imported inside the functions: it takes a good part of a
# second, and `--help`, `status`, `down` and YAML errors should not wait for it.

__all__ = ["connection", "get_task", "list_executors", "list_tasks"]


@contextmanager
def connection(endpoint: str | None) -> Iterator[Connection]:
    """A core client connection for the duration of one command."""
    from flame_agents.core import connect

    conn = connect(endpoint)
    try:
        yield conn
    finally:
        conn.close()


def list_tasks(conn: Connection, session_id: str) -> list[Task]:
    """Every task of a session, also of a closed one (opening it would be refused)."""
    from flame_agents.core import _tasks

    return _tasks.list_tasks(conn, session_id)


def get_task(conn: Connection, session_id: str, task_id: str) -> Task:
    """One task of a session, with its events."""
    from flame_agents.core import _tasks

    return _tasks.get_task(conn, session_id, task_id)


def list_executors(conn: Connection) -> list[dict[str, Any]]:
    """The Frontend's executors as plain rows (id, node, state, session_id)."""
    from flame_agents._wire import frontend_pb2, types_pb2

    reply = conn.call("list_executors", conn.stub.ListExecutor, frontend_pb2.ListExecutorRequest())
    return [
        {
            "id": ex.metadata.id,
            "node": ex.spec.node,
            "state": types_pb2.ExecutorState.Name(ex.status.state),
            "session_id": ex.status.session_id if ex.status.HasField("session_id") else None,
        }
        for ex in reply.executors
    ]
