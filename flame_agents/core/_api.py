"""Module-level session and application functions, each on the default connection."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flame_agents.core._default import default_connection
from flame_agents.core._session import Session
from flame_agents.types import Application, ApplicationSpec, ResourceRequirement, SessionInfo

__all__ = [
    "close_session",
    "create_session",
    "get_application",
    "get_session",
    "list_applications",
    "list_sessions",
    "open_session",
    "register_application",
    "unregister_application",
    "update_application",
]


# The handles returned here are built with connection=None: they follow the default connection
# (see Session), instead of pinning the one that happened to be current at creation.


def create_session(
    application: str,
    *,
    common_data: bytes | None = None,
    session_id: str | None = None,
    min_instances: int = 0,
    max_instances: int | None = None,
    priority: int = 0,
    resreq: ResourceRequirement | str | Mapping[str, Any] | None = None,
) -> Session:
    """Create a session of ``application`` and return its handle.

    Args:
        application: Name of a registered application.
        common_data: Opaque bytes handed to every instance of the session.
        session_id: The id to use (default ``<application>-<6 random alphanumerics>``).
        min_instances: Instances kept warm even without tasks.
        max_instances: Upper bound of concurrent instances (``None`` = unlimited).
        priority: Scheduling priority, higher first.
        resreq: Resources per instance: a ResourceRequirement, ``"cpu=1,mem=2g"`` or a mapping
            (default: the runtime's, ``cpu=1,mem=1g`` on Flame).

    Raises:
        AlreadyExistsError: the session id is taken. NotFoundError: no such application.
    """
    session = default_connection().create_session(
        application,
        common_data=common_data,
        session_id=session_id,
        min_instances=min_instances,
        max_instances=max_instances,
        priority=priority,
        resreq=resreq,
    )
    return Session(None, session.last_info)


def open_session(session_id: str, *, spec: Any = None) -> Session:
    """Open an existing open session, or create it when ``spec`` is given and it is missing.

    ``spec`` is a mapping with :func:`create_session`'s keyword names (``application``
    required) or flamepy's ``SessionAttributes``. Raises NotFoundError (missing, no spec) or
    InvalidArgumentError (closed, or the spec does not match).
    """
    session = default_connection().open_session(session_id, spec=spec)
    return Session(None, session.last_info)


def get_session(session_id: str) -> SessionInfo:
    """A snapshot of a session: state, task counters, events, spec."""
    return default_connection().get_session(session_id)


def list_sessions() -> list[SessionInfo]:
    """Snapshots of every session the runtime knows (closed ones included)."""
    return default_connection().list_sessions()


def close_session(session_id: str) -> SessionInfo:
    """Close a session: pending tasks are cancelled; closing a closed session is a no-op."""
    return default_connection().close_session(session_id)


def register_application(name: str, spec: ApplicationSpec | Mapping[str, Any] | Any) -> None:
    """Register an application.

    ``spec`` is an :class:`ApplicationSpec`, a dict with flamepy's ``ApplicationAttributes``
    field names (``command``, ``arguments``, ``environments``, ``working_directory``, ...), or
    an ``ApplicationAttributes``. Raises AlreadyExistsError if the name is taken.
    """
    default_connection().register_application(name, spec)


def update_application(name: str, spec: ApplicationSpec | Mapping[str, Any] | Any) -> None:
    """Replace an application's spec; InvalidStateError while it has open sessions."""
    default_connection().update_application(name, spec)


def unregister_application(name: str) -> None:
    """Remove an application; InvalidStateError while it has open sessions."""
    default_connection().unregister_application(name)


def get_application(name: str) -> Application | None:
    """The application called ``name``, or ``None``."""
    return default_connection().get_application(name)


def list_applications() -> list[Application]:
    """Every registered application."""
    return default_connection().list_applications()
