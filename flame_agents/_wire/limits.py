"""The message size limit that every hop honours, and the errors that name it.

One limit, the runtime's ``--max-message-bytes`` (default 64 MiB, which is also the most the core
client sends or receives), bounds every gRPC message of a task: the request from the client to
the Frontend, the task to the instance, the instance's reply, and the task back to the client.
The runtime hands it to each instance in ``FLAME_AGENTS_MAX_MESSAGE_BYTES``.

A task's output must fit in the task message the client receives, so it may use the limit less
a small reserve for that message's id, state and events (:func:`output_budget`). The hop between
the runtime and an instance allows that reserve on top of the limit (:func:`instance_hop_bytes`),
so a request the Frontend accepted always reaches the instance. A reply over the budget fails
its task once, with a :class:`~flame_agents.errors.LimitExceededError` on the client: the instance
is kept and the handler is not run again.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from flame_agents._wire.failures import failure_message

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "MAX_MESSAGE_ENV",
    "MAX_MESSAGE_OPTION",
    "grpc_size_hint",
    "instance_hop_bytes",
    "limit_from_env",
    "output_budget",
    "refused_as_too_large",
    "reply_too_large",
]

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""The runtime's default limit, and the core client's own."""

MAX_MESSAGE_OPTION = "--max-message-bytes"
"""The runtime option that sets the limit."""

MAX_MESSAGE_ENV = "FLAME_AGENTS_MAX_MESSAGE_BYTES"
"""The variable in which the runtime passes the limit to instances (unset: the default)."""

_RESERVE = 4096
"""Bytes kept free in a task message for everything but the output (id, state, events)."""

_GRPC_SIZE = re.compile(r"(Sent|Received) message larger than max \((\d+) vs\. (\d+)\)")
_SIZES = re.compile(r"larger than max \((\d+) vs\. (\d+)\)")

_HOW_TO_FIX = (
    "Send less (put large data in the object cache and pass its reference), or start the "
    f"runtime with a larger {MAX_MESSAGE_OPTION} (default 64 MiB, also the most the core "
    "client sends or receives; a Flame cluster keeps gRPC's 4 MiB)"
)


def output_budget(limit: int) -> int:
    """Largest task output (bytes) under the message limit ``limit``."""
    return limit - min(_RESERVE, limit // 4)


def instance_hop_bytes(limit: int) -> int:
    """The gRPC message limit between the runtime and its instances, in both directions."""
    return limit + _RESERVE


def limit_from_env(environ: Mapping[str, str] | None = None) -> int:
    """The limit the launcher passed in ``FLAME_AGENTS_MAX_MESSAGE_BYTES`` (else the default)."""
    value = (os.environ if environ is None else environ).get(MAX_MESSAGE_ENV, "")
    try:
        limit = int(value)
    except ValueError:
        return DEFAULT_MAX_MESSAGE_BYTES
    return limit if limit > 0 else DEFAULT_MAX_MESSAGE_BYTES


def reply_too_large(task_id: str, size: int, limit: int) -> str:
    """The failure message of a task whose reply of ``size`` bytes is over the limit."""
    return failure_message(
        "LimitExceededError",
        f"the reply of task {task_id} is {size} bytes, over the message limit: a task's output "
        f"may be at most {output_budget(limit)} bytes under the runtime's "
        f"{MAX_MESSAGE_OPTION}={limit}. The handler ran once and is not run again. " + _HOW_TO_FIX,
        fields={"size": size, "limit": limit},
    )


def refused_as_too_large(task_id: str, details: str, limit: int) -> str:
    """The failure message of a task whose request or reply gRPC refused on the hop between the
    runtime and its instance (RESOURCE_EXHAUSTED with ``details``)."""
    size = _SIZES.search(details)
    if size is not None and int(size.group(2)) == instance_hop_bytes(limit):
        return reply_too_large(task_id, int(size.group(1)), limit)
    return failure_message(
        "LimitExceededError",
        f"the service refused task {task_id} as too large ({details}): its own message "
        f"limit is below the runtime's {MAX_MESSAGE_OPTION}={limit} (flamepy's server keeps "
        "gRPC's 4 MiB), and the task is not retried. Send less (put large data in the object "
        "cache and pass its reference), or raise the service's limit",
    )


def grpc_size_hint(details: str) -> str | None:
    """For gRPC's 'message larger than max (N vs. M)' text, the same with how to fix it."""
    match = _GRPC_SIZE.search(details)
    if match is None:
        return None
    size, limit = match.group(2), match.group(3)
    return f"a message of {size} bytes is over the limit of {limit} bytes ({details}). " + (
        _HOW_TO_FIX
    )
