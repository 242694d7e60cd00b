"""Our modifier of Flame's CloseSession: also stop the session's running tasks.

Flame 0.6 has no way to cancel one task: CloseSession cancels the pending tasks, and Flame
refuses it (INTERNAL "Cannot close session with running tasks") while a task runs; our runtime
lets running tasks finish before it answers. A client interrupted while it waits (Ctrl-C) sends
CloseSession with the call metadata :data:`CANCEL_RUNNING`: our runtime then also stops the
instances running the session's tasks (SIGTERM to their process group), and those tasks end
CANCELLED (FAILED when it was their last attempt). A Flame cluster ignores the metadata.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CANCEL_RUNNING", "wants_cancel_running"]

CANCEL_RUNNING = (("flame-agents-close", "cancel-running"),)
"""Call metadata asking CloseSession to stop the session's running tasks too."""


def wants_cancel_running(metadata: Any) -> bool:
    """Whether the call's metadata carries :data:`CANCEL_RUNNING`."""
    return any((key, value) == CANCEL_RUNNING[0] for key, value in metadata or ())
