"""One instance's life: launch, bind to its session, run its tasks one at a time, leave.

The scheduler (:mod:`._scheduler`) decides how many instances a session gets; each one is an
:class:`Instance` run by :meth:`InstanceRunner.run`, a coroutine: install the application's
package, start the process (the ``launch`` it was given, the launcher's ``InstanceProcess``;
a start slot at a time), ``OnSessionEnter``, then for each task::

    TaskBoard.start_next    Pending -> Running (the watchers see Running)
    process.invoke          OnTaskInvoke over the instance's Unix socket
    TaskBoard.finish_task   -> Succeed / Failed / Cancelled (the watchers see the end)

and it leaves when idle for the application's ``delay_release`` seconds, when its session
closes, or when the scheduler releases it.

Failures: a process that dies mid-task puts its task back to Pending (attempt + 1, event 0)
for a fresh instance, until ``max_task_attempts`` losses fail it with a clear message. A task
that runs past its timeout (the application's ``flame-agents.task-timeout`` label, else the
runtime's ``task_timeout``) is failed, not retried -- a hung handler would likely hang again --
and its instance is killed. A bind failure records session event 1001; after
``bind_retry_limit`` of them the session is paused (event 1002; its tasks stay Pending; closing
it still works). While the home's disk is full a task's result is kept and written once space
returns (:meth:`InstanceRunner.write`). A task that a client cancelled while it runs is stopped
as :mod:`._cancel` says, and ends Cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Protocol, TypeVar

from flame_agents._logging import get_logger
from flame_agents._wire import types_pb2
from flame_agents._wire.cache.aliases import retarget_ref
from flame_agents._wire.failures import failure_message, is_cancellation
from flame_agents.runtime._launch import (
    BindError,
    InstanceLost,
    Launch,
    LaunchSpec,
    TaskTimeout,
)
from flame_agents.runtime.sessions._apps import TASK_TIMEOUT_LABEL, SpecError, task_timeout
from flame_agents.runtime.sessions._board import EVENT_BIND_FAILED, TaskBoard
from flame_agents.runtime.sessions._cancel import cancelled_text, start_cancelling
from flame_agents.runtime.sessions._instances import (
    EXECUTOR_BOUND,
    EXECUTOR_UNBINDING,
    Instance,
    SessionInstances,
)
from flame_agents.runtime.sessions._options import SchedulerOptions
from flame_agents.runtime.sessions._rows import SUCCEEDED, AppRow, SessionRow, TaskRow
from flame_agents.runtime.sessions._store import StoreWriteError
from flame_agents.types import TaskState

__all__ = ["InstanceRunner", "RunnerHost"]

_T = TypeVar("_T")
_log = get_logger(__name__)


class RunnerHost(Protocol):
    """What a runner asks of the scheduler."""

    @property
    def stopping(self) -> bool:
        """Whether the runtime is stopping."""

    @property
    def resources_wanted(self) -> bool:
        """Whether a session with waiting tasks is short of resources."""

    def reconcile(self) -> None:
        """Size every session's instances again."""

    def instance_ended(self, inst: Instance) -> None:
        """``inst``'s process is gone: return its grant and forget it."""


class InstanceRunner:
    """Runs instances from launch to leave, and their tasks through the board."""

    def __init__(
        self,
        board: TaskBoard,
        options: SchedulerOptions,
        *,
        host: RunnerHost,
        launch: Launch,
    ) -> None:
        self._board = board
        self._opts = options
        self._host = host
        self._launch = launch
        self._starts = asyncio.Semaphore(options.limits.concurrent_starts())

    async def run(self, inst: Instance, app: AppRow | None) -> None:
        """Run ``inst`` until it leaves (the scheduler's worker task)."""
        sess = inst.session
        try:
            if app is None:
                raise BindError(11, f"application {sess.row.application} is not registered")
            inst.process = self._launch(self._launch_spec(inst, app))
            inst.task_timeout = self._task_timeout(app.spec)
            # Installing the application's package can take minutes: not in a start slot.
            await inst.process.prepare()
            async with self._starts:
                if inst.release or sess.closed or self._host.stopping:
                    return  # no longer wanted while it waited for its turn
                await inst.process.start()
            # An idle instance that dies is noticed at once: its exit wakes the worker.
            inst.process.on_exit(inst.wake.set)
            await inst.process.enter()
            inst.state = EXECUTOR_BOUND
            delay_release = (
                float(app.spec.delay_release) if app.spec.HasField("delay_release") else 60.0
            )
            while (row := await self._next_task(inst, delay_release)) is not None:
                if not await self._run_task(inst, row):
                    break
        except BindError as exc:
            self._bind_failed(sess, inst, exc)
        except Exception:
            _log.exception("instance worker failed", executor_id=inst.id, session_id=sess.id)
        finally:
            inst.state = EXECUTOR_UNBINDING
            with contextlib.suppress(ValueError):
                sess.idle.remove(inst)
            if inst.process is not None:
                with contextlib.suppress(Exception):
                    await inst.process.stop()
            self._host.instance_ended(inst)

    def _launch_spec(self, inst: Instance, app: AppRow) -> LaunchSpec:
        opts = self._opts
        return LaunchSpec(
            executor_id=inst.id,
            app_name=app.name,
            app=app.spec,
            session_id=inst.session.id,
            common_data=self._common_data(inst.session.row),
            socket_dir=opts.socket_dir,
            work_root=opts.work_root,
            log_dir=opts.log_dir,
            frontend_endpoint=opts.frontend_endpoint,
            cache_endpoint=opts.cache_endpoint,
            former_cache_endpoints=opts.former_cache_endpoints,
            bind_timeout=opts.limits.bind_timeout,
            stop_grace=opts.limits.stop_grace,
            visible_gpus=inst.visible_gpus,
            max_message_bytes=opts.max_message_bytes,
            app_created=app.creation_time,
            credentials=opts.credentials,
        )

    def _common_data(self, row: SessionRow) -> bytes | None:
        """The session's common_data, a context ref re-aimed at the cache's current endpoint."""
        if not row.spec.HasField("common_data"):
            return None
        data = row.spec.common_data
        opts = self._opts
        if opts.cache_endpoint is None:
            return data
        return retarget_ref(data, opts.former_cache_endpoints, opts.cache_endpoint)

    def _task_timeout(self, spec: types_pb2.ApplicationSpec) -> float | None:
        try:
            seconds = task_timeout(spec)
        except SpecError:  # registered before the label was validated: use the default
            seconds = None
        if seconds is None:
            seconds = self._opts.limits.task_timeout
        return seconds or None

    def cancel(self, inst: Instance, tid: int) -> None:
        """Stop task ``tid``, which ``inst`` runs, as a client asked (see :mod:`._cancel`)."""
        if inst.task != tid or inst.process is None or inst.cancelling is not None:
            return
        inst.cancelling = start_cancelling(
            inst.process,
            tid,
            grace=self._opts.limits.cancel_grace,
            executor_id=inst.id,
            log=_log.bind(executor_id=inst.id, session_id=inst.session.id),
        )

    async def _next_task(self, inst: Instance, delay_release: float) -> TaskRow | None:
        """The next task, started on this instance; None when the instance should leave."""
        sess = inst.session
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay_release
        while True:
            if inst.release or sess.closed or self._host.stopping:
                return None
            if inst.process is not None and inst.process.exited:
                _log.warning(
                    "instance exited while idle",
                    executor_id=inst.id,
                    session_id=sess.id,
                    exit=inst.process.exit_description(),
                )
                return None
            if sess.view.pending:
                row = await self.write("start task", lambda: self._board.start_next(sess.id))
                if row is not None:
                    return row
                continue  # another instance took it
            remaining: float | None = deadline - loop.time()
            if len(sess.instances) <= int(sess.row.spec.min_instances):
                remaining = None  # prewarmed: kept alive until a task, a release or the close
            elif remaining is not None and remaining <= 0:
                return None
            inst.wake.clear()
            sess.idle.append(inst)
            if inst.allocation is not None and self._host.resources_wanted:
                self._host.reconcile()  # what it holds may be what a waiting session needs
            try:
                await asyncio.wait_for(inst.wake.wait(), remaining)
            except asyncio.TimeoutError:
                pass
            finally:
                with contextlib.suppress(ValueError):
                    sess.idle.remove(inst)

    async def _run_task(self, inst: Instance, row: TaskRow) -> bool:
        """Run one started task on ``inst``; False when the instance was lost."""
        sess = inst.session
        sid, tid = sess.id, row.id
        assert inst.process is not None
        inst.task = tid
        try:
            outcome = await inst.process.invoke(tid, row.input, timeout=inst.task_timeout)
        except TaskTimeout as exc:
            timeout = exc.timeout
            await self.write("fail task", lambda: self._timed_out(inst, tid, timeout))
            return False
        except InstanceLost as lost:
            text = lost.exit_description
            await self.write("requeue task", lambda: self._lost(inst, tid, text))
            return False
        finally:
            inst.task = None
            if inst.cancelling is not None and inst.cancelling.stopper is not None:
                inst.cancelling.stopper.cancel()
            inst.cancelling = None
            if not sess.busy():
                sess.drained.set()
        if outcome.return_code == 0:
            state, message = TaskState.SUCCEED, SUCCEEDED
        elif is_cancellation(outcome.message):
            state, message = TaskState.CANCELLED, outcome.message or "Task was cancelled"
        else:
            state = TaskState.FAILED
            message = outcome.message or f"task failed with return code {outcome.return_code}"
        await self.write(
            "finish task",
            lambda: self._board.finish_task(
                sid, tid, state=state, output=outcome.output, message=message
            ),
        )
        return True

    async def write(self, what: str, write: Callable[[], _T]) -> _T:
        """Run a board transition; while the home's disk is full, keep the result and retry.

        A task's answer is never dropped for lack of space: it is committed (and its watchers
        told) once space returns. When the runtime stops meanwhile the error propagates and the
        task, still Running in the database, is re-run after the restart (at-least-once).
        """
        delay = 0.05
        warned = False
        while True:
            try:
                return write()
            except StoreWriteError as exc:
                if self._host.stopping:
                    raise
                if not warned:
                    _log.error(
                        "store write failed; retrying until space returns",
                        what=what,
                        error=str(exc),
                    )
                    warned = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    def _timed_out(self, inst: Instance, tid: int, timeout: float) -> None:
        sid = inst.session.id
        if self._board.cancel_requested(sid, tid):
            self._cancelled(inst, tid, f"timed out after {timeout:g}s")
            return
        _log.warning(
            "task timed out; instance killed",
            executor_id=inst.id,
            session_id=sid,
            task_id=tid,
            timeout=timeout,
        )
        self._board.finish_task(
            sid,
            tid,
            state=TaskState.FAILED,
            output=None,
            message=(
                f"task {tid} timed out after {timeout:g}s and was not retried; its instance "
                f"{inst.id} was killed. Raise the limit with the application label "
                f"{TASK_TIMEOUT_LABEL}=<seconds> (0 = none) or the runtime's --task-timeout"
            ),
        )

    def _lost(self, inst: Instance, tid: int, exit_text: str) -> None:
        sess = inst.session
        sid = sess.id
        row = self._board.get_task(sid, tid)
        losses = (row.losses if row else 0) + 1
        limit = self._opts.limits.max_task_attempts
        _log.warning(
            "instance lost while running a task",
            executor_id=inst.id,
            session_id=sid,
            task_id=tid,
            exit=exit_text,
            losses=losses,
        )
        lost = f"instance lost: {exit_text}"
        if self._board.cancel_requested(sid, tid):
            self._cancelled(inst, tid, exit_text)
        elif self._host.stopping:
            self._board.requeue_task(
                sid, tid, message="Task returned to <Pending>: the runtime is stopping", lost=False
            )
        elif losses >= limit:
            self._board.finish_task(
                sid,
                tid,
                state=TaskState.FAILED,
                output=None,
                # Named as our error class, so clients raise the retryable InstanceLostError.
                message=failure_message(
                    "InstanceLostError",
                    f"instance lost {losses} times while running task {tid}; last exit: "
                    f"{exit_text} (executor {inst.id})",
                ),
                lost=lost,
            )
        elif sess.closed:
            self._board.finish_task(
                sid,
                tid,
                state=TaskState.CANCELLED,
                output=None,
                message="Task was cancelled: its instance was lost after the session closed",
                lost=lost,
            )
        else:
            self._board.requeue_task(
                sid,
                tid,
                message=(
                    f"Task returned to <Pending>: instance {inst.id} lost ({exit_text}); "
                    f"attempt {losses + 1} of {limit}"
                ),
                lost=True,
            )

    def _cancelled(self, inst: Instance, tid: int, exit_text: str) -> None:
        """A cancelled task whose instance is gone (stopped for it, or lost): it ends Cancelled."""
        self._board.finish_task(
            inst.session.id,
            tid,
            state=TaskState.CANCELLED,
            output=None,
            message=cancelled_text(inst.cancelling, exit_text),
        )

    def _bind_failed(self, sess: SessionInstances, inst: Instance, exc: BindError) -> None:
        if sess.paused or sess.closed or self._host.stopping:
            return
        sess.bind_failures += 1
        limit = self._opts.limits.bind_retry_limit
        message = (
            f"Executor {inst.id} on node {self._opts.node_name} failed to bind session with "
            f"return_code {exc.return_code}: {exc.message}"
        )
        _log.warning("bind failed", session_id=sess.id, executor_id=inst.id, reason=exc.message)
        self._board.add_session_event(sess.id, EVENT_BIND_FAILED, message)
        if sess.bind_failures >= limit:
            paused = (
                f"Session retry limit reached after {sess.bind_failures}/{limit} failed "
                "attempts; new executor assignment is paused (tasks stay Pending until the "
                "session is closed or the runtime restarts)"
            )
            shown = f"{paused}. Last failure: {exc.message}" if exc.message else paused
            self._board.pause_session(sess.id, reason=shown, event=paused)
