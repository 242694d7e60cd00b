"""The Flame core client: sessions, tasks and applications over the Frontend gRPC API.

Module functions (``create_session``, ``register_application``, ...) use a default connection
created on first use from the environment/flame.yaml, or the embedded runtime when nothing is
configured; ``connect()`` gives an explicit :class:`Connection` with the same methods. The
object cache API of :mod:`flame_agents.cache` is re-exported for flamepy-style imports.
"""

from typing import TYPE_CHECKING, Any

from flame_agents.core._api import (
    cancel_task,
    close_session,
    create_session,
    get_application,
    get_session,
    list_applications,
    list_sessions,
    open_session,
    register_application,
    unregister_application,
    update_application,
)
from flame_agents.core._connection import Connection, Session
from flame_agents.core._default import connect, default_connection, reset_default_connection
from flame_agents.core._executors import ExecutorInfo
from flame_agents.core._transport import MAX_MESSAGE_BYTES
from flame_agents.types import (
    Application,
    ApplicationSchema,
    ApplicationSpec,
    ApplicationState,
    Event,
    ResourceRequirement,
    SessionInfo,
    SessionState,
    Shim,
    Task,
    TaskState,
)

if TYPE_CHECKING:
    from flame_agents.cache import (
        ObjectRef,
        delete_objects,
        get_object,
        patch_object,
        put_object,
        update_object,
    )

# The cache client loads pyarrow (about half a second); re-export it on first use so commands
# and services that never touch the cache start quickly.
_CACHE_NAMES = frozenset(
    {"ObjectRef", "delete_objects", "get_object", "patch_object", "put_object", "update_object"}
)


def __getattr__(name: str) -> Any:
    if name in _CACHE_NAMES:
        from flame_agents import cache

        return getattr(cache, name)
    raise AttributeError(f"module 'flame_agents.core' has no attribute {name!r}")


__all__ = [
    "MAX_MESSAGE_BYTES",
    "Application",
    "ApplicationSchema",
    "ApplicationSpec",
    "ApplicationState",
    "Connection",
    "Event",
    "ExecutorInfo",
    "ObjectRef",
    "ResourceRequirement",
    "Session",
    "SessionInfo",
    "SessionState",
    "Shim",
    "Task",
    "TaskState",
    "cancel_task",
    "close_session",
    "connect",
    "create_session",
    "default_connection",
    "delete_objects",
    "get_application",
    "get_object",
    "get_session",
    "list_applications",
    "list_sessions",
    "open_session",
    "patch_object",
    "put_object",
    "register_application",
    "reset_default_connection",
    "unregister_application",
    "update_application",
    "update_object",
]
