"""Session operations over a transport: create, open, get, list and close sessions.

They answer with :class:`SessionInfo` snapshots; :class:`~flame_agents.core.Connection` wraps
those of ``create_session``/``open_session`` in a :class:`~flame_agents.core.Session` handle.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from flame_agents._wire import closing, frontend_pb2
from flame_agents._wire.convert import session_from_proto, session_spec_to_proto
from flame_agents.core._validate import (
    check_application_name,
    check_bytes,
    check_session_id,
    check_uint32,
)
from flame_agents.errors import InvalidArgumentError
from flame_agents.types import ResourceRequirement, SessionInfo

if TYPE_CHECKING:
    from flame_agents.core._transport import Transport

__all__ = [
    "close_session",
    "create_session",
    "get_session",
    "list_sessions",
    "new_session_id",
    "open_session",
    "session_spec",
]

_ALPHABET = string.ascii_letters + string.digits
_SPEC_KEYS = ("application", "common_data", "min_instances", "max_instances", "priority", "resreq")


def new_session_id(application: str) -> str:
    """``<application>-<6 random alphanumerics>``, the id flamepy and flmctl generate."""
    return f"{application}-{''.join(secrets.choice(_ALPHABET) for _ in range(6))}"


def session_spec(
    application: Any,
    *,
    common_data: Any = None,
    min_instances: Any = 0,
    max_instances: Any = None,
    priority: Any = 0,
    resreq: Any = None,
) -> Any:
    """The checked wire spec (``types_pb2.SessionSpec``) of a new session.

    The keywords and defaults are :meth:`Connection.create_session`'s; a spec given to
    ``open_session`` as a mapping is read with these defaults too.
    """
    check_application_name(application)
    data = check_bytes("common_data", common_data)
    check_uint32("min_instances", min_instances)
    check_uint32("priority", priority)
    if max_instances is not None:
        check_uint32("max_instances", max_instances)
        if max_instances < min_instances:
            raise InvalidArgumentError(
                f"max_instances ({max_instances}) must not be below min_instances "
                f"({min_instances})",
                argument="max_instances",
            )
    return session_spec_to_proto(
        application,
        common_data=data,
        min_instances=min_instances,
        max_instances=max_instances,
        priority=priority,
        resreq=ResourceRequirement.coerce(resreq),
    )


def create_session(conn: Transport, spec: Any, *, session_id: str | None = None) -> SessionInfo:
    """Create a new session from a :func:`session_spec`; its id is ``session_id`` or
    :func:`new_session_id`'s."""
    application = spec.application
    sid = new_session_id(application) if session_id is None else check_session_id(session_id)
    request = frontend_pb2.CreateSessionRequest(session_id=sid, session=spec)
    reply = conn.call(
        "create_session",
        conn.stub.CreateSession,
        request,
        session_id=sid,
        application=application,
    )
    return _filled(session_from_proto(reply), sid, application)


def _spec_kwargs(spec: Any) -> dict[str, Any]:
    """The :func:`session_spec` keywords given by a mapping or a ``SessionAttributes``."""
    if isinstance(spec, Mapping):
        unknown = set(spec) - set(_SPEC_KEYS)
        if unknown:
            raise InvalidArgumentError(
                f"unknown session spec keys {sorted(unknown)} (expected some of "
                f"{list(_SPEC_KEYS)})",
                argument="spec",
            )
        values = dict(spec)
    elif hasattr(spec, "application"):
        # Duck-typed: flamepy's SessionAttributes has these names (without priority).
        values = {key: getattr(spec, key) for key in _SPEC_KEYS if hasattr(spec, key)}
    else:
        raise InvalidArgumentError(
            f"spec must be a mapping like {{'application': 'echo'}}, got {spec!r}",
            argument="spec",
        )
    if "application" not in values:
        raise InvalidArgumentError("spec needs an 'application'", argument="spec")
    return values


def open_session(conn: Transport, session_id: str, *, spec: Any = None) -> SessionInfo:
    """Open an existing open session, or create it from ``spec`` if it does not exist.

    ``spec`` is a mapping (or an object such as flamepy's ``SessionAttributes``) with the
    keyword names of :func:`create_session`: ``application`` (required), ``common_data``,
    ``min_instances``, ``max_instances``, ``priority``, ``resreq``. An existing session must
    match it (application, resreq, instance bounds, priority) or the call fails with
    :class:`InvalidArgumentError`; a closed session fails likewise, an unknown one without a
    spec with :class:`NotFoundError`.
    """
    sid = check_session_id(session_id)
    proto_spec = None
    if spec is not None:
        values = _spec_kwargs(spec)
        proto_spec = session_spec(values.pop("application"), **values)
    request = frontend_pb2.OpenSessionRequest(session_id=sid, session=proto_spec)
    reply = conn.call("open_session", conn.stub.OpenSession, request, session_id=sid)
    info = session_from_proto(reply)
    return _filled(info, sid, proto_spec.application if proto_spec else "")


def get_session(conn: Transport, session_id: str) -> SessionInfo:
    """A snapshot of one session."""
    sid = check_session_id(session_id)
    request = frontend_pb2.GetSessionRequest(session_id=sid)
    reply = conn.call("get_session", conn.stub.GetSession, request, session_id=sid)
    return _filled(session_from_proto(reply), sid, "")


def list_sessions(conn: Transport) -> list[SessionInfo]:
    """Snapshots of every session."""
    reply = conn.call("list_sessions", conn.stub.ListSession, frontend_pb2.ListSessionRequest())
    return [session_from_proto(s) for s in reply.sessions]


def close_session(conn: Transport, session_id: str, *, cancel_running: bool = False) -> SessionInfo:
    """Close a session; pending tasks become CANCELLED. Closing a closed session is a no-op.

    ``cancel_running``: running tasks are stopped too (our runtime; see ``_wire.closing``).
    """
    sid = check_session_id(session_id)
    request = frontend_pb2.CloseSessionRequest(session_id=sid)
    metadata = closing.CANCEL_RUNNING if cancel_running else None
    reply = conn.call(
        "close_session", conn.stub.CloseSession, request, metadata=metadata, session_id=sid
    )
    return _filled(session_from_proto(reply), sid, "")


def _filled(info: SessionInfo, session_id: str, application: str) -> SessionInfo:
    # A minimal reply (only metadata.id, as Flame tolerates) still names the right session.
    if info.id and info.application:
        return info
    return replace(info, id=info.id or session_id, application=info.application or application)
