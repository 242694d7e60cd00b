"""Module-level session and application functions: :class:`Connection`'s methods, each run on
the default connection.

Each function is made from its method, so signatures and docstrings are written once, on
:class:`Connection`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from flame_agents.core._connection import Connection, Session
from flame_agents.core._default import default_connection

__all__ = [
    "cancel_task",
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

P = ParamSpec("P")
R = TypeVar("R")


def _like(function: Callable[P, R], method: Callable[..., object]) -> Callable[P, R]:
    """``function`` named, documented and signed as ``method`` without its ``self``."""
    function.__name__ = method.__name__
    function.__qualname__ = method.__name__
    function.__module__ = "flame_agents.core"
    doc = (method.__doc__ or "").rstrip()
    function.__doc__ = f"{doc}\n\n        Runs on the default connection.\n        "
    signature = inspect.signature(method)
    function.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=list(signature.parameters.values())[1:]
    )
    return function


def _on_default(method: Callable[Concatenate[Connection, P], R]) -> Callable[P, R]:
    """``method`` as a function that runs it on the default connection."""

    def function(*args: P.args, **kwargs: P.kwargs) -> R:
        return method(default_connection(), *args, **kwargs)

    return _like(function, method)


def _following_default(
    method: Callable[Concatenate[Connection, P], Session],
) -> Callable[P, Session]:
    """Like :func:`_on_default` for a method that opens a session: the handle returned follows
    the default connection (see :class:`Session`) instead of pinning the one that happened to
    be current when it was opened."""

    def function(*args: P.args, **kwargs: P.kwargs) -> Session:
        session = method(default_connection(), *args, **kwargs)
        return Session(default_connection, session.last_info)

    return _like(function, method)


create_session = _following_default(Connection.create_session)
open_session = _following_default(Connection.open_session)
get_session = _on_default(Connection.get_session)
list_sessions = _on_default(Connection.list_sessions)
close_session = _on_default(Connection.close_session)
cancel_task = _on_default(Connection.cancel_task)
register_application = _on_default(Connection.register_application)
update_application = _on_default(Connection.update_application)
unregister_application = _on_default(Connection.unregister_application)
get_application = _on_default(Connection.get_application)
list_applications = _on_default(Connection.list_applications)
