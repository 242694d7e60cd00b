"""Waiting for another process to exit (the runtime's ``--exit-with-pid``).

A runtime started for a test (``flame_agents.testing.LocalRuntime``) runs detached, in its own
session, so that a Ctrl-C in the test's terminal does not kill it half-way. The price was that a
test process killed with SIGKILL left its runtime and instances running. With
``--exit-with-pid`` the runtime stops gracefully as soon as that process is gone.

Linux gives a file descriptor that becomes readable when a process exits (``pidfd_open``); the
event loop watches it, so nothing polls. Where it is missing, a once-a-second liveness check
stands in.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

__all__ = ["process_exists", "wait_for_exit"]

_POLL_SECONDS = 1.0


def process_exists(pid: int) -> bool:
    """Whether process ``pid`` exists (a zombie counts as gone only once reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


async def wait_for_exit(pid: int) -> None:
    """Return once process ``pid`` has exited (at once if it does not exist)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except (AttributeError, OSError):  # no pidfd on this system: poll
        while process_exists(pid):
            await asyncio.sleep(_POLL_SECONDS)
        return
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await exited
    finally:
        loop.remove_reader(fd)
        with contextlib.suppress(OSError):
            os.close(fd)
