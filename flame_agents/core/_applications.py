"""Application operations on a connection: register, update, unregister, get and list.

Flame answers Register/Update/Unregister with gRPC OK and a ``Result`` whose non-zero
``return_code`` carries the failure as text; we read that text to raise the specific error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import grpc

from flame_agents._wire import frontend_pb2
from flame_agents._wire.convert import application_from_proto, application_spec_to_proto
from flame_agents._wire.errors import rpc_status
from flame_agents.core._validate import check_application_name
from flame_agents.errors import (
    AlreadyExistsError,
    FlameAgentsError,
    InvalidArgumentError,
    InvalidStateError,
    NotFoundError,
)
from flame_agents.types import Application, ApplicationSpec

if TYPE_CHECKING:
    from flame_agents.core._transport import Transport

__all__ = [
    "get_application",
    "list_applications",
    "register_application",
    "result_error",
    "unregister_application",
    "update_application",
]


def result_error(op: str, name: str, return_code: int, message: str | None) -> FlameAgentsError:
    """The error for a non-zero ``Result`` of an application RPC, chosen from its text."""
    text = message or f"failed with return_code {return_code}"
    lowered = text.lower()
    cls: type[FlameAgentsError]
    if "not found" in lowered or "does not exist" in lowered or "no such" in lowered:
        cls = NotFoundError
    elif "exist" in lowered:
        cls = AlreadyExistsError
    elif "session" in lowered and ("open" in lowered or "running" in lowered):
        cls = InvalidStateError
    else:
        cls = InvalidArgumentError
    return cls(f"{op} {name!r}: {text}", application=name, return_code=return_code)


def _check_result(op: str, name: str, reply: Any) -> None:
    if reply.return_code != 0:
        message = reply.message if reply.HasField("message") else None
        raise result_error(op, name, reply.return_code, message)


def register_application(
    conn: Transport, name: str, spec: ApplicationSpec | Mapping[str, Any] | Any
) -> None:
    """Register ``name`` with ``spec``; see :func:`flame_agents.core.register_application`."""
    check_application_name(name)
    proto = application_spec_to_proto(ApplicationSpec.coerce(spec))
    request = frontend_pb2.RegisterApplicationRequest(name=name, application=proto)
    reply = conn.call(
        "register_application", conn.stub.RegisterApplication, request, application=name
    )
    _check_result("register_application", name, reply)


def update_application(
    conn: Transport, name: str, spec: ApplicationSpec | Mapping[str, Any] | Any
) -> None:
    """Replace the spec of ``name`` (refused while the application has open sessions)."""
    check_application_name(name)
    proto = application_spec_to_proto(ApplicationSpec.coerce(spec))
    request = frontend_pb2.UpdateApplicationRequest(name=name, application=proto)
    reply = conn.call("update_application", conn.stub.UpdateApplication, request, application=name)
    _check_result("update_application", name, reply)


def unregister_application(conn: Transport, name: str) -> None:
    """Remove ``name`` (refused while it has open sessions)."""
    check_application_name(name)
    request = frontend_pb2.UnregisterApplicationRequest(name=name)
    reply = conn.call(
        "unregister_application", conn.stub.UnregisterApplication, request, application=name
    )
    _check_result("unregister_application", name, reply)


def get_application(conn: Transport, name: str) -> Application | None:
    """The application called ``name``, or ``None`` if none is registered."""
    check_application_name(name)
    request = frontend_pb2.GetApplicationRequest(name=name)
    conn.check_open("get_application")
    try:
        reply = conn.stub.GetApplication(request, timeout=conn.rpc_timeout)
    except grpc.RpcError as exc:
        if rpc_status(exc)[0] == grpc.StatusCode.NOT_FOUND:
            return None
        raise conn.error(exc, op="get_application", application=name) from exc
    return application_from_proto(reply)


def list_applications(conn: Transport) -> list[Application]:
    """Every registered application."""
    reply = conn.call(
        "list_applications", conn.stub.ListApplication, frontend_pb2.ListApplicationRequest()
    )
    return [application_from_proto(a) for a in reply.applications]
