"""The scheduler: hands pending tasks to instances and sizes each session's set of instances.

Event driven, with no polling on the invoke path: creating a task pushes its id onto the
session's heap (FIFO by id) and wakes one idle bound instance directly; when none is idle,
:meth:`Scheduler.reconcile` launches instances up to the demand. Every instance is a worker
coroutine: launch -> OnSessionEnter -> take tasks one at a time -> leave when idle for the
application's ``delay_release`` seconds, when its session closes, or when released to make
room for another session under the runtime-wide ``max_instances`` cap.

Sizing per open session: task demand = pending + running tasks, floored by ``min_instances``
(prewarm) and capped by the session's ``max_instances``. Task demand of every session is met
before any prewarm, in priority order (higher first, then older), so a prewarmed idle instance
is released for a session with waiting tasks and never steals the slot back.

Resources (see :mod:`._resources`): an instance of a session with an explicit ``resreq``
starts only when the ledger grants it, and holds the grant until its process is gone; every
release runs :meth:`Scheduler.reconcile` again, so a waiting session starts as soon as it fits.
Idle instances of sessions without waiting tasks are released to make room, and a session that
waits with no instance at all holds back later sessions that need what it lacks (so a large
request is not starved by a stream of small ones).

Failures: a process that dies mid-task puts its task back to Pending (attempt + 1, event 0)
for a fresh instance, until ``max_task_attempts`` losses fail it with a clear message. A bind
failure records session event 1001; after ``bind_retry_limit`` of them one event 1002 pauses
the session (its tasks stay Pending; closing it still works). A task that runs past its
timeout (the application's ``flame-agents.task-timeout`` label, else the runtime's
``task_timeout``) is failed, not retried -- a hung handler would likely hang again -- and its
instance is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import os
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from flame_agents._logging import get_logger
from flame_agents._wire import types_pb2
from flame_agents._wire.cache_aliases import retarget_ref
from flame_agents._wire.failures import failure_message
from flame_agents._wire.limits import DEFAULT_MAX_MESSAGE_BYTES
from flame_agents.runtime import _store as st
from flame_agents.runtime._apps import TASK_TIMEOUT_LABEL, SpecError, task_timeout
from flame_agents.runtime._instance import (
    BindError,
    InstanceLost,
    InstanceProcess,
    LaunchSpec,
    TaskTimeout,
)
from flame_agents.runtime._resources import (
    Allocation,
    Capacity,
    Ledger,
    format_bytes,
    resolved_spec,
)
from flame_agents.runtime._store import SessionRow, Store, StoreWriteError

__all__ = ["ExecutorView", "Scheduler", "SchedulerOptions", "default_concurrent_starts"]

_T = TypeVar("_T")

_log = get_logger(__name__)

EXECUTOR_BINDING = 3
EXECUTOR_BOUND = 4
EXECUTOR_UNBINDING = 5
EVENT_BIND_FAILED = 1001
EVENT_RETRY_LIMIT = 1002


@dataclass(frozen=True)
class SchedulerOptions:
    """Runtime-wide scheduling knobs (from the command line)."""

    node_name: str
    """Node name shown in executor listings and bind-failure events."""
    socket_dir: Path
    work_root: Path
    log_dir: Path
    frontend_endpoint: str
    cache_endpoint: str | None
    former_cache_endpoints: tuple[str, ...] = ()
    """Endpoints earlier runs of this home's cache advertised: refs naming them are re-aimed."""
    max_instances: int = 64
    """Cap on live instances across all sessions."""
    bind_timeout: float = 30.0
    """Seconds a launched service has to bind its socket (counted from its start)."""
    max_concurrent_starts: int = 2
    """Instances starting (spawn -> bound socket) at once; the rest wait their turn."""
    bind_retry_limit: int = 5
    """Bind failures after which a session gets no more instances (event 1002)."""
    max_task_attempts: int = 3
    """Instance losses after which a task fails instead of being re-dispatched."""
    stop_grace: float = 5.0
    """Seconds between SIGTERM and SIGKILL when stopping an instance."""
    task_timeout: float | None = None
    """Default seconds a task may run (None = no limit); an application label overrides it."""
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    """Message limit between the runtime and its instances (``--max-message-bytes``); a reply
    over it fails its task once, without a re-dispatch."""


def default_concurrent_starts() -> int:
    """Instances started at once by default: one per CPU, at least 2.

    A Python service spends its start-up importing on a CPU; starting 200 at once on 2 CPUs
    made each take minutes, past the bind timeout, so sessions paused under a burst of new
    sessions. Queued starts cost nothing, and each start is then as quick as on an idle
    machine (Ray limits worker start-up concurrency the same way).
    """
    return max(2, os.cpu_count() or 2)


@dataclass(frozen=True)
class ExecutorView:
    """A live instance as ListExecutor shows it."""

    id: str
    state: int
    session_id: str
    resreq: types_pb2.ResourceRequirement
    pid: int | None = None
    """Process id of the service, once started."""
    start_time: int | None = None
    """When the process started serving this instance (epoch ms), once started."""


@dataclass(eq=False)
class _Instance:
    id: str
    session: _Session
    process: InstanceProcess | None = None
    state: int = EXECUTOR_BINDING
    release: bool = False
    task_timeout: float | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    worker: asyncio.Task[None] | None = None
    allocation: Allocation | None = None
    """What the ledger granted it (None: its session's resreq is not accounted)."""


@dataclass(eq=False)
class _Session:
    row: SessionRow
    pending: list[int] = field(default_factory=list)
    running: dict[int, _Instance] = field(default_factory=dict)
    instances: set[_Instance] = field(default_factory=set)
    idle: deque[_Instance] = field(default_factory=deque)
    closed: bool = False
    bind_failures: int = 0
    paused: str | None = None
    """Why new instances are no longer started (event 1002's text), or None."""
    last_bind_failure: str = ""
    drained: asyncio.Event = field(default_factory=asyncio.Event)
    waiting_for: tuple[str, ...] = ()
    """Resources its next instance waits for (logged once per wait)."""

    @property
    def id(self) -> str:
        return self.row.id

    @property
    def accounted(self) -> bool:
        """Whether its instances hold resources: only a resreq the client gave counts."""
        return self.row.spec.HasField("resreq")

    def cap(self) -> int | None:
        spec = self.row.spec
        return int(spec.max_instances) if spec.HasField("max_instances") else None

    def task_demand(self) -> int:
        demand = len(self.pending) + len(self.running)
        cap = self.cap()
        return demand if cap is None else min(demand, cap)

    def total_demand(self) -> int:
        demand = max(len(self.pending) + len(self.running), int(self.row.spec.min_instances))
        cap = self.cap()
        return demand if cap is None else min(demand, cap)


class Scheduler:
    """Owns the live instances and the dispatch of pending tasks of open sessions."""

    def __init__(
        self, store: Store, options: SchedulerOptions, *, capacity: Capacity | None = None
    ) -> None:
        self._store = store
        self._opts = options
        self.resources = Ledger(capacity if capacity is not None else Capacity.detect())
        """The machine's capacity and what live instances hold."""
        self._sessions: dict[str, _Session] = {}
        self._watchers: dict[tuple[str, int], asyncio.Event] = {}
        self._stopping = False
        self._starts = asyncio.Semaphore(max(1, options.max_concurrent_starts))
        self._resources_wanted = False
        """Whether the last reconcile left a session with waiting tasks short of resources."""

    # -- start-up and shutdown --------------------------------------------------------------

    def recover(self) -> None:
        """Load open sessions; tasks left Running by a previous runtime go back to Pending."""
        for sid, tid in self._store.running_tasks():
            self._store.requeue_task(
                sid, tid, message="Task returned to <Pending>: the runtime restarted", lost=False
            )
        for row in self._store.list_sessions(state=st.SESSION_OPEN):
            sess = self._track(row)
            sess.pending = self._store.task_ids(row.id, st.PENDING)
            heapq.heapify(sess.pending)
        self.reconcile()

    def _track(self, row: SessionRow) -> _Session:
        sess = self._sessions[row.id] = _Session(row)
        if sess.accounted and (problem := self.resources.never_fits(row.spec.resreq)):
            # Opened on a bigger machine (the Frontend refuses it here): it can never start.
            sess.paused = problem
            _log.warning("session can never start here", session_id=row.id, reason=problem)
        return sess

    async def shutdown(self) -> None:
        """Leave and stop every instance; tasks still running go back to Pending."""
        self._stopping = True
        workers = []
        for sess in self._sessions.values():
            busy = set(sess.running.values())
            for inst in list(sess.instances):
                self._release(inst)
                if inst.worker is None:
                    continue
                if inst.state == EXECUTOR_BINDING:
                    # Still launching: waiting up to the bind timeout would stall the stop.
                    # Cancelling runs the worker's clean-up, which stops the process.
                    inst.worker.cancel()
                elif inst in busy and inst.process is not None:
                    # A running task would keep the process busy: stop it now; the task is
                    # re-run after the restart (at-least-once).
                    inst.process.terminate()
                workers.append(inst.worker)
        if workers:
            await asyncio.gather(*workers, return_exceptions=True)

    # -- notifications ----------------------------------------------------------------------

    def task_changed(self, sid: str, tid: int) -> asyncio.Event:
        """An event set at the next state change of task ``tid`` (for WatchTask)."""
        key = (sid, tid)
        ev = self._watchers.get(key)
        if ev is None:
            ev = self._watchers[key] = asyncio.Event()
        return ev

    def _notify(self, sid: str, tid: int) -> None:
        ev = self._watchers.pop((sid, tid), None)
        if ev is not None:
            ev.set()

    # -- Frontend entry points --------------------------------------------------------------

    def session_opened(self, row: SessionRow) -> None:
        """A new open session exists (prewarm its min_instances)."""
        self._track(row)
        self.reconcile()

    def task_created(self, sid: str, tid: int) -> None:
        """A pending task was committed: hand it to an idle instance or launch one."""
        sess = self._sessions.get(sid)
        if sess is None or sess.closed:
            return
        heapq.heappush(sess.pending, tid)
        self._offer(sess)
        self.reconcile()

    async def close_session(self, sid: str, *, cancel_running: bool = False) -> None:
        """Close: cancel pending tasks, let running ones finish (awaited), release instances.

        We wait for running tasks rather than refusing the close (Flame answers INTERNAL
        "Cannot close session with running tasks"): the session stops accepting tasks at
        once, and the caller gets the reply when nothing of the session runs any more.
        ``cancel_running`` (an interrupted client): running tasks are stopped instead, by
        stopping their instances; as lost after the close, they end CANCELLED.
        """
        cancelled = self._store.close_session(sid)
        for tid in cancelled:
            self._notify(sid, tid)
        sess = self._sessions.get(sid)
        if sess is None:
            return
        sess.closed = True
        sess.pending.clear()
        for inst in list(sess.instances):
            if inst not in sess.running.values():
                self._release(inst)
            elif cancel_running and inst.process is not None:
                inst.process.terminate()
        if sess.running:
            sess.drained.clear()
            await sess.drained.wait()
        self._forget_if_done(sess)

    def paused_reason(self, sid: str) -> str | None:
        """Why session ``sid`` gets no more instances (bind failures), or None if it does."""
        sess = self._sessions.get(sid)
        if sess is None or sess.paused is None:
            return None
        if not sess.last_bind_failure:
            return sess.paused
        return f"{sess.paused}. Last failure: {sess.last_bind_failure}"

    def session_deleted(self, sid: str) -> None:
        """Drop a (closed) session's bookkeeping."""
        sess = self._sessions.get(sid)
        if sess is not None and not sess.instances:
            del self._sessions[sid]

    def executors(self) -> list[ExecutorView]:
        """Every live instance."""
        out = []
        for sess in self._sessions.values():
            resreq = resolved_spec(sess.row.spec).resreq
            for inst in sess.instances:
                proc = inst.process
                pid = proc.pid if proc is not None and not proc.exited else None
                started = proc.started_at if proc is not None and pid is not None else None
                out.append(ExecutorView(inst.id, inst.state, sess.id, resreq, pid, started))
        return out

    # -- sizing -----------------------------------------------------------------------------

    def _live(self) -> int:
        return sum(len(s.instances) for s in self._sessions.values())

    def reconcile(self) -> None:
        """Launch instances up to each session's demand, within the runtime-wide cap and the
        machine's resources."""
        if self._stopping:
            return
        order = sorted(
            (s for s in self._sessions.values() if not s.closed and not s.paused),
            key=lambda s: (-int(s.row.spec.priority), s.row.creation_time),
        )
        live = self._live()
        starved = 0
        # Resources a session waiting with no instance lacks: later sessions may not take them.
        held: set[str] = set()
        waiting: list[tuple[_Session, list[str]]] = []
        for sess in order:  # task demand first ...
            deficit = sess.task_demand() - len(sess.instances)
            while deficit > 0 and live < self._opts.max_instances:
                if short := self._launch(sess, held):
                    waiting.append((sess, short))
                    if not sess.instances:
                        held.update(short)
                    break
                live += 1
                deficit -= 1
            else:
                starved += max(deficit, 0)
        # Prewarm never takes what a session with waiting tasks lacks.
        held.update(d for _, short in waiting for d in short)
        for sess in order:  # ... then prewarm (min_instances)
            deficit = sess.total_demand() - len(sess.instances)
            while deficit > 0 and live < self._opts.max_instances:
                if self._launch(sess, held):
                    break
                live += 1
                deficit -= 1
        keep = {s for s in order if s.task_demand() > 0}
        if starved:
            self._evict_idle(starved, keep=keep)
        self._resources_wanted = bool(waiting)
        if waiting:
            self._evict_for_resources(waiting, keep=keep)

    def _evict_for_resources(
        self, waiting: list[tuple[_Session, list[str]]], *, keep: set[_Session]
    ) -> None:
        """Release idle instances of sessions without waiting tasks until each waiting session
        would fit once they are gone (their exit runs :meth:`reconcile` again)."""
        leaving = [
            i.allocation
            for s in self._sessions.values()
            for i in s.instances
            if i.release and i.allocation is not None
        ]
        idle = [
            inst
            for s in self._sessions.values()
            if s not in keep
            for inst in s.idle
            if not inst.release and inst.allocation is not None
        ]
        for sess, _ in waiting:
            resreq = sess.row.spec.resreq
            while idle and self.resources.shortfall(resreq, plus=leaving):
                inst = idle.pop(0)
                assert inst.allocation is not None
                leaving.append(inst.allocation)
                self._release(inst)

    def _evict_idle(self, count: int, *, keep: set[_Session]) -> None:
        """Release up to ``count`` idle instances of sessions without waiting tasks."""
        for sess in self._sessions.values():
            if sess in keep:
                continue
            for inst in list(sess.idle):
                if count <= 0:
                    return
                if not inst.release:
                    self._release(inst)
                    count -= 1

    def _release(self, inst: _Instance) -> None:
        inst.release = True
        inst.wake.set()

    def _offer(self, sess: _Session) -> None:
        while sess.pending and sess.idle:
            sess.idle.popleft().wake.set()

    def _launch(self, sess: _Session, held: set[str]) -> list[str]:
        """Start one instance of ``sess``; or, when its resreq does not fit now (or needs
        resources ``held`` for another session), return the resources it waits for."""
        allocation = None
        if sess.accounted:
            resreq = sess.row.spec.resreq
            wanted = {"cpu": resreq.cpu, "memory": resreq.memory, "gpu": max(resreq.gpu, 0)}
            short = sorted(d for d in held if wanted[d] > 0) or self.resources.shortfall(resreq)
            if short:
                self._log_wait(sess, short)
                return short
            allocation = self.resources.acquire(resreq)
            assert allocation is not None
            sess.waiting_for = ()
        app = self._store.get_app(sess.row.application)
        inst = _Instance(id=str(uuid.uuid4()), session=sess, allocation=allocation)
        sess.instances.add(inst)
        inst.worker = asyncio.ensure_future(self._run_instance(inst, app))
        # A worker cancelled before it first ran skips its finally: return its grant anyway.
        inst.worker.add_done_callback(lambda _: self._free(inst))
        return []

    def _log_wait(self, sess: _Session, short: list[str]) -> None:
        if sess.waiting_for == tuple(short):
            return
        sess.waiting_for = tuple(short)
        resreq = sess.row.spec.resreq
        cpu, memory, gpu = self.resources.free
        _log.info(
            "session waits for resources",
            session_id=sess.id,
            waiting_for=",".join(short),
            resreq=f"cpu={resreq.cpu},memory={format_bytes(resreq.memory)},"
            f"gpu={max(resreq.gpu, 0)}",
            free=f"cpu={cpu},memory={format_bytes(memory)},gpu={gpu}",
        )

    def _free(self, inst: _Instance) -> None:
        """Return what ``inst`` holds to the ledger (once)."""
        if inst.allocation is not None:
            self.resources.release(inst.allocation)
            inst.allocation = None

    def _visible_gpus(self, inst: _Instance) -> tuple[str, ...] | None:
        """``CUDA_VISIBLE_DEVICES`` for ``inst``: its own GPUs when its session's resreq is
        accounted on a machine with GPUs (none for gpu=0, as Ray does), else None (inherit)."""
        if inst.allocation is None or not self.resources.capacity.gpus:
            return None
        return inst.allocation.gpus

    # -- instance worker --------------------------------------------------------------------

    async def _run_instance(self, inst: _Instance, app: st.AppRow | None) -> None:
        sess = inst.session
        try:
            if app is None:
                raise BindError(11, f"application {sess.row.application} is not registered")
            opts = self._opts
            inst.process = InstanceProcess(
                LaunchSpec(
                    executor_id=inst.id,
                    app_name=app.name,
                    app=app.spec,
                    session_id=sess.id,
                    common_data=self._common_data(sess),
                    socket_dir=opts.socket_dir,
                    work_root=opts.work_root,
                    log_dir=opts.log_dir,
                    frontend_endpoint=opts.frontend_endpoint,
                    cache_endpoint=opts.cache_endpoint,
                    bind_timeout=opts.bind_timeout,
                    stop_grace=opts.stop_grace,
                    visible_gpus=self._visible_gpus(inst),
                    max_message_bytes=opts.max_message_bytes,
                    app_created=app.creation_time,
                )
            )
            inst.task_timeout = self._task_timeout(app.spec)
            # Installing the application's package can take minutes: not in a start slot.
            await inst.process.prepare()
            async with self._starts:
                if inst.release or sess.closed or self._stopping:
                    return  # no longer wanted while it waited for its turn
                await inst.process.start()
            # An idle instance that dies is noticed at once: its exit wakes the worker.
            inst.process.on_exit(inst.wake.set)
            await inst.process.enter()
            inst.state = EXECUTOR_BOUND
            delay_release = (
                float(app.spec.delay_release) if app.spec.HasField("delay_release") else 60.0
            )
            while (tid := await self._next_task(inst, delay_release)) is not None:
                if not await self._run_task(inst, tid):
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
            self._free(inst)  # only now: its process is gone
            sess.instances.discard(inst)
            self._forget_if_done(sess)
            self.reconcile()

    def _common_data(self, sess: _Session) -> bytes | None:
        """The session's common_data, a context ref re-aimed at the cache's current endpoint."""
        if not sess.row.spec.HasField("common_data"):
            return None
        data = sess.row.spec.common_data
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
            seconds = self._opts.task_timeout
        return seconds or None

    def _forget_if_done(self, sess: _Session) -> None:
        if sess.closed and not sess.instances and not sess.running:
            self._sessions.pop(sess.id, None)

    async def _next_task(self, inst: _Instance, delay_release: float) -> int | None:
        """The next pending task for this instance, or None when it should be released."""
        sess = inst.session
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay_release
        while True:
            if inst.release or sess.closed or self._stopping:
                return None
            if inst.process is not None and inst.process.exited:
                _log.warning(
                    "instance exited while idle",
                    executor_id=inst.id,
                    session_id=sess.id,
                    exit=inst.process.exit_description(),
                )
                return None
            if sess.pending:
                return heapq.heappop(sess.pending)
            remaining: float | None = deadline - loop.time()
            if len(sess.instances) <= int(sess.row.spec.min_instances):
                remaining = None  # prewarmed: kept alive until a task, a release or the close
            elif remaining is not None and remaining <= 0:
                return None
            inst.wake.clear()
            sess.idle.append(inst)
            if inst.allocation is not None and self._resources_wanted:
                self.reconcile()  # what it holds may be what a waiting session needs
            try:
                await asyncio.wait_for(inst.wake.wait(), remaining)
            except asyncio.TimeoutError:
                pass
            finally:
                with contextlib.suppress(ValueError):
                    sess.idle.remove(inst)

    async def _run_task(self, inst: _Instance, tid: int) -> bool:
        """Run one task on ``inst``; False when the instance was lost."""
        sess = inst.session
        sid = sess.id
        assert inst.process is not None
        row = self._store.get_task(sid, tid)
        if row is None or row.state != st.PENDING:
            return True

        def start() -> bool:
            # Re-read: while a full disk delayed this write the session may have closed.
            current = self._store.get_task(sid, tid)
            if current is None or current.state != st.PENDING:
                return False
            self._store.start_task(sid, tid, executor_id=inst.id)
            return True

        if not await self._write("start task", start):
            return True
        sess.running[tid] = inst
        self._notify(sid, tid)
        try:
            outcome = await inst.process.invoke(tid, row.input, timeout=inst.task_timeout)
        except TaskTimeout as exc:
            timeout = exc.timeout
            await self._write("fail task", lambda: self._task_timed_out(sess, inst, tid, timeout))
            return False
        except InstanceLost as lost:
            text = lost.exit_description
            await self._write("requeue task", lambda: self._task_lost(sess, inst, tid, text))
            return False
        finally:
            sess.running.pop(tid, None)
            if not sess.running:
                sess.drained.set()
        if outcome.return_code == 0:
            state, message = st.SUCCEED, "Task was completed with state <Succeed>"
        else:
            state = st.FAILED
            message = outcome.message or f"task failed with return code {outcome.return_code}"
        await self._write(
            "finish task",
            lambda: self._store.finish_task(
                sid, tid, state=state, output=outcome.output, message=message
            ),
        )
        self._notify(sid, tid)
        return True

    async def _write(self, what: str, write: Callable[[], _T]) -> _T:
        """Run a store write; while the home's disk is full, keep the result and retry.

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
                if self._stopping:
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

    def _task_timed_out(self, sess: _Session, inst: _Instance, tid: int, timeout: float) -> None:
        _log.warning(
            "task timed out; instance killed",
            executor_id=inst.id,
            session_id=sess.id,
            task_id=tid,
            timeout=timeout,
        )
        self._store.finish_task(
            sess.id,
            tid,
            state=st.FAILED,
            output=None,
            message=(
                f"task {tid} timed out after {timeout:g}s and was not retried; its instance "
                f"{inst.id} was killed. Raise the limit with the application label "
                f"{TASK_TIMEOUT_LABEL}=<seconds> (0 = none) or the runtime's --task-timeout"
            ),
        )
        self._notify(sess.id, tid)

    def _task_lost(self, sess: _Session, inst: _Instance, tid: int, exit_text: str) -> None:
        sid = sess.id
        row = self._store.get_task(sid, tid)
        losses = (row.losses if row else 0) + 1
        limit = self._opts.max_task_attempts
        _log.warning(
            "instance lost while running a task",
            executor_id=inst.id,
            session_id=sid,
            task_id=tid,
            exit=exit_text,
            losses=losses,
        )
        if self._stopping:
            self._store.requeue_task(
                sid, tid, message="Task returned to <Pending>: the runtime is stopping", lost=False
            )
        elif losses >= limit:
            self._store.requeue_task(sid, tid, message=f"instance lost: {exit_text}", lost=True)
            self._store.finish_task(
                sid,
                tid,
                state=st.FAILED,
                output=None,
                # Named as our error class, so clients raise the retryable InstanceLostError.
                message=failure_message(
                    "InstanceLostError",
                    f"instance lost {losses} times while running task {tid}; last exit: "
                    f"{exit_text} (executor {inst.id})",
                ),
            )
        elif sess.closed:
            self._store.requeue_task(sid, tid, message=f"instance lost: {exit_text}", lost=True)
            self._store.finish_task(
                sid,
                tid,
                state=st.CANCELLED,
                output=None,
                message="Task was cancelled: its instance was lost after the session closed",
            )
        else:
            self._store.requeue_task(
                sid,
                tid,
                message=(
                    f"Task returned to <Pending>: instance {inst.id} lost ({exit_text}); "
                    f"attempt {losses + 1} of {limit}"
                ),
                lost=True,
            )
            heapq.heappush(sess.pending, tid)
            self._offer(sess)
        self._notify(sid, tid)

    def _bind_failed(self, sess: _Session, inst: _Instance, exc: BindError) -> None:
        if sess.paused or sess.closed or self._stopping:
            return
        sess.bind_failures += 1
        sess.last_bind_failure = exc.message
        limit = self._opts.bind_retry_limit
        message = (
            f"Executor {inst.id} on node {self._opts.node_name} failed to bind session with "
            f"return_code {exc.return_code}: {exc.message}"
        )
        _log.warning("bind failed", session_id=sess.id, executor_id=inst.id, reason=exc.message)
        self._store.add_session_event(sess.id, EVENT_BIND_FAILED, message)
        if sess.bind_failures >= limit:
            sess.paused = (
                f"Session retry limit reached after {sess.bind_failures}/{limit} failed "
                "attempts; new executor assignment is paused (tasks stay Pending until the "
                "session is closed or the runtime restarts)"
            )
            self._store.add_session_event(sess.id, EVENT_RETRY_LIMIT, sess.paused)
            for tid in list(sess.pending):  # fast-path waiters learn it now (see paused_reason)
                self._notify(sess.id, tid)
