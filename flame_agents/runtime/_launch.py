"""The contract between the session manager and the launcher: one instance, and how it fails.

:class:`LaunchSpec` is everything the scheduler decides about one instance (application,
session, folders, endpoints, limits, credentials); :class:`ServiceProcess` is what the scheduler
may do with a launched one, and :data:`Launch` how it gets one (``Runtime.start()`` passes the
launcher's ``InstanceProcess`` with its prestart pool); the exceptions are the outcomes the
scheduler tells apart (a bind failure with Flame's code, a lost instance, a message over the
limit, a timeout). Neither wing imports the other: both import this module.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from flame_agents._wire import types_pb2
from flame_agents._wire.limits import DEFAULT_MAX_MESSAGE_BYTES
from flame_agents.config import TOKEN_ENV

__all__ = [
    "BIND_ENTER_FAILED",
    "BIND_PROCESS_FAILED",
    "STDERR_TAIL_LINES",
    "BindError",
    "InstanceCredentials",
    "InstanceLost",
    "Launch",
    "LaunchSpec",
    "MessageRejected",
    "ServiceProcess",
    "TaskOutcome",
    "TaskTimeout",
    "describe_exit",
    "expand_vars",
    "stderr_tail_text",
    "working_directory_error",
]

BIND_PROCESS_FAILED = 11
"""Flame's bind return code for 'shim/process creation failed'."""
BIND_ENTER_FAILED = 12
"""Flame's bind return code for 'OnSessionEnter failed'."""

_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


class BindError(Exception):
    """The instance could not be bound to its session (Flame bind failure codes 11/12)."""

    def __init__(self, return_code: int, message: str) -> None:
        super().__init__(message)
        self.return_code = return_code
        self.message = message


class InstanceLost(Exception):
    """The service process died (or its channel broke) before answering a task."""

    def __init__(self, exit_description: str) -> None:
        super().__init__(exit_description)
        self.exit_description = exit_description


class MessageRejected(Exception):
    """A message to or from the live instance was over a size limit (RESOURCE_EXHAUSTED)."""

    def __init__(self, details: str) -> None:
        super().__init__(details)
        self.details = details


class TaskTimeout(Exception):
    """A task ran longer than its timeout; the instance's process group was killed."""

    def __init__(self, timeout: float) -> None:
        super().__init__(f"no answer within {timeout:g}s")
        self.timeout = timeout


@dataclass(frozen=True)
class InstanceCredentials:
    """What an instance needs to reach the runtime's servers, set in its environment (the
    runtime's own environment is left as it is)."""

    token: str | None = None
    """The servers' shared token (``FLAME_AGENTS_TOKEN``), or None when they need none."""
    ca_file: Path | None = None
    """A certificate the servers' TLS chains to (``FLAME_CA_FILE``), or None to inherit."""

    def environment(self) -> dict[str, str]:
        """The variables to set."""
        env = {} if self.token is None else {TOKEN_ENV: self.token}
        if self.ca_file is not None:
            env["FLAME_CA_FILE"] = str(self.ca_file)
        return env


@dataclass(frozen=True)
class LaunchSpec:
    """Everything needed to start one instance of an application for one session."""

    executor_id: str
    app_name: str
    app: types_pb2.ApplicationSpec
    session_id: str
    common_data: bytes | None
    socket_dir: Path
    work_root: Path
    log_dir: Path
    frontend_endpoint: str
    cache_endpoint: str | None
    bind_timeout: float
    former_cache_endpoints: tuple[str, ...] = ()
    """Endpoints of earlier runs of the runtime's cache (see ``_wire.cache.aliases``)."""
    stop_grace: float = 5.0
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    """The runtime's message limit (``--max-message-bytes``), passed on to the service."""
    visible_gpus: tuple[str, ...] | None = None
    """``CUDA_VISIBLE_DEVICES`` entries granted to the instance (empty: none); None leaves the
    variable as the runtime has it."""
    apps_dir: Path | None = None
    """Where the package installer keeps applications' packages (``<home>/apps``); None: the
    ``apps`` folder beside ``work_root``."""
    app_created: int = 0
    """The application's registration time (ms): a new registration installs its package anew."""
    credentials: InstanceCredentials = InstanceCredentials()
    """Token and CA the instance gets in its environment."""


@dataclass(frozen=True)
class TaskOutcome:
    """What ``OnTaskInvoke`` answered."""

    return_code: int
    output: bytes | None
    message: str | None


class ServiceProcess(Protocol):
    """A launched service process bound to one session, as the session manager drives it."""

    @property
    def pid(self) -> int | None:
        """Process id of the service (None before it started)."""

    @property
    def exited(self) -> bool:
        """True once the service process is gone."""

    started_at: int | None
    """When the process started serving this instance (epoch ms), None before."""

    async def prepare(self) -> None:
        """Install the application's package, if it has one; raises BindError."""

    async def start(self) -> None:
        """Start the process and wait until it serves; raises BindError."""

    async def enter(self) -> None:
        """Call OnSessionEnter; raises BindError."""

    async def invoke(
        self, task_id: int, data: bytes | None, *, timeout: float | None = None
    ) -> TaskOutcome:
        """Run one task; raises InstanceLost, MessageRejected or TaskTimeout."""

    async def cancel(self, task_id: int) -> bool:
        """Ask the service to stop task ``task_id``, which it runs now (our CancelTask, see
        ``_wire.cancel``); True when it will end the task as cancelled, False when it cannot
        (flamepy's services, a handler without ``on_task_cancel``, a broken channel)."""

    async def stop(self) -> None:
        """OnSessionLeave, then stop the process and clean up after it."""

    def terminate(self) -> None:
        """Signal the process to stop now."""

    def kill(self) -> None:
        """Kill the process (and its group) now, without a grace period."""

    def on_exit(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (once) when the process exits."""

    def exit_description(self) -> str:
        """How the process ended ('exit code 1', 'signal 9 (SIGKILL)')."""


Launch = Callable[[LaunchSpec], ServiceProcess]
"""How the session manager gets an instance for a launch spec."""


def expand_vars(text: str, env: Mapping[str, str]) -> str:
    """Expand ``$VAR`` and ``${VAR}`` from ``env``; unknown names expand to '' (shellexpand)."""
    return _VAR.sub(lambda m: env.get(m.group(1) or m.group(2), ""), text)


def describe_exit(returncode: int | None) -> str:
    """Human text for a process exit status ('signal 9 (SIGKILL)' or 'exit code 1')."""
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown"
        return f"signal {-returncode} ({name})"
    return f"exit code {returncode}"


STDERR_TAIL_LINES = 10
"""Lines of a failed service's stderr quoted in its bind failure."""
_TAIL_BYTES = 16 * 1024
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_TAIL_LINE_CHARS = 300
_TAIL_CHARS = 2000
"""The quote travels in events and gRPC error trailers, which are small: keep it bounded."""


def stderr_tail_text(path: Path, *, lines: int = STDERR_TAIL_LINES) -> str:
    """The last ``lines`` non-blank lines of the log ``path``, as a suffix for an error text.

    The reason a service did not start (an exception at import, ``cannot execute ...``) is in
    its stderr; quoting it saves the user a trip to the log file, which is still named.
    """
    try:
        with open(path, "rb") as log:
            log.seek(0, os.SEEK_END)
            size = log.tell()
            log.seek(max(0, size - _TAIL_BYTES))
            data = log.read()
    except OSError:
        return f"; see {path}"
    text = data.decode("utf-8", errors="replace")
    if size > _TAIL_BYTES:
        text = text.partition("\n")[2]  # the first line read is likely cut
    # Colour codes and other control characters would garble the error text.
    text = "".join(c if c.isprintable() or c == "\n" else " " for c in _ANSI.sub("", text))
    tail = [ln.rstrip() for ln in text.splitlines() if ln.strip()][-lines:]
    if not tail:
        return f"; its stderr ({path}) is empty"
    shown = [
        ln if len(ln) <= _TAIL_LINE_CHARS else ln[: _TAIL_LINE_CHARS - 3] + "..." for ln in tail
    ]
    while len(shown) > 1 and sum(len(ln) + 3 for ln in shown) > _TAIL_CHARS:
        shown.pop(0)
    body = "".join(f"\n  | {ln}" for ln in shown)
    return f"; last lines of its stderr ({path}):{body}"


def working_directory_error(path: str) -> str | None:
    """Why the absolute ``working_directory`` ``path`` cannot be used here, or None if it can.

    Checked at registration and again at each launch: the runtime never creates an
    application's folder (it could be anywhere on the machine, and a typo would silently get
    an empty folder instead of an error).
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return (
                f"spec.working_directory {path!r} does not exist on this machine; "
                "create it or fix the path"
            )
        return (
            f"spec.working_directory {path!r} cannot be used by the runtime: "
            f"{exc.strerror or exc}; fix its permissions or the path"
        )
    if not stat.S_ISDIR(mode):
        return f"spec.working_directory {path!r} is not a directory; fix the path"
    return None
