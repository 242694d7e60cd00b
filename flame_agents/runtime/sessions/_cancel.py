"""Stopping a Running task that a client cancelled: ask its instance, stop the instance if need be.

The Frontend's CancelTask asks the board (:meth:`~._board.TaskBoard.cancel_tasks`): a Pending
task ends Cancelled there; a Running one is marked as asked to stop and the scheduler hands its
instance to :func:`start_cancelling`, which asks the service (our instance CancelTask, see
``_wire.cancel``). The task then ends in one of three ways, all Cancelled:

* the service answers it as cancelled (a failure naming ``Cancelled``): the instance stays and
  serves the session's next task;
* the service cannot stop a task (flamepy's services answer UNIMPLEMENTED, a handler without
  ``on_task_cancel`` says so): the instance is killed at once;
* the service has not answered within the grace period (``SchedulingLimits.cancel_grace``):
  the instance is killed.

A killed instance is lost to its runner, which ends the task Cancelled (not Failed, and not
dispatched again) with the reason :func:`cancelled_text` gives. A service that finishes the task
before the request reaches it answers it as usual: the cancel came too late, and the task ends
as the service says (Succeed or Failed).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from flame_agents.runtime._launch import ServiceProcess

__all__ = [
    "CANCELLED_PENDING",
    "Cancelling",
    "cancelled_text",
    "start_cancelling",
]

CANCELLED_PENDING = "Task was cancelled: it had not started"
"""The event of a Pending task that was cancelled."""


@dataclass(eq=False)
class Cancelling:
    """The stop of one Running task on its instance (its runner cancels :attr:`stopper` when
    the task ends)."""

    task_id: int
    stopper: asyncio.Task[None] | None = None
    killed: str | None = field(default=None)
    """Why the instance was killed, once it was."""


def start_cancelling(
    process: ServiceProcess, task_id: int, *, grace: float, executor_id: str, log: Any
) -> Cancelling:
    """Ask ``process`` to stop ``task_id`` and kill it when it cannot, or when it has not
    answered the task within ``grace`` seconds."""
    cancelling = Cancelling(task_id)
    cancelling.stopper = asyncio.ensure_future(
        _stop(process, cancelling, grace=grace, executor_id=executor_id, log=log)
    )
    return cancelling


async def _stop(
    process: ServiceProcess, cancelling: Cancelling, *, grace: float, executor_id: str, log: Any
) -> None:
    tid = cancelling.task_id
    if await process.cancel(tid):
        await asyncio.sleep(grace)
        reason = f"its instance {executor_id} did not stop it within {grace:g}s and was stopped"
        log.warning("cancelled task still running after its grace period", task_id=tid)
    else:
        reason = f"its service cannot stop a running task; its instance {executor_id} was stopped"
    cancelling.killed = reason
    log.info("instance killed to cancel its task", task_id=tid, reason=reason)
    process.kill()


def cancelled_text(cancelling: Cancelling | None, exit_text: str) -> str:
    """The event of a cancelled task whose instance was lost (killed to stop it, or died)."""
    if cancelling is not None and cancelling.killed is not None:
        return f"Task was cancelled: {cancelling.killed}"
    return f"Task was cancelled: its instance was lost ({exit_text})"
