"""Readiness pipe: how an instance tells its launcher "I am listening" without being polled.

Our extension of the Flame launch protocol. Flame's launcher waits for the socket file named by
``FLAME_INSTANCE_ENDPOINT`` to appear; the embedded runtime also passes the write end of a pipe
in ``FLAME_AGENTS_READY_FD``, and a service that knows this protocol writes one byte to it once
its server accepts connections, so the launcher wakes at once. Services that do not know it
(flamepy's) are still found by their socket file.
"""

from __future__ import annotations

import contextlib
import os
import stat

__all__ = ["READY_BYTE", "READY_FD_ENV", "notify_ready"]

READY_FD_ENV = "FLAME_AGENTS_READY_FD"
"""Environment variable holding the file descriptor number of the readiness pipe."""

READY_BYTE = b"R"
"""What a ready instance writes to the pipe."""


def notify_ready() -> None:
    """Signal the launcher that this process serves its socket; a no-op without a pipe.

    Called once, after the server started. The variable is removed so that child processes
    (which may inherit the descriptor number, not the pipe) never write to an unrelated file.
    """
    value = os.environ.pop(READY_FD_ENV, None)
    if not value:
        return
    with contextlib.suppress(ValueError, OSError):
        fd = int(value)
        # Only ever write to a pipe: a stale number could name any file of this process.
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            try:
                os.write(fd, READY_BYTE)
            finally:
                os.close(fd)
