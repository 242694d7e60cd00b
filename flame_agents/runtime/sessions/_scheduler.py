"""The scheduler: sizes each session's set of instances and wakes them when there is work.

Event driven, with no polling on the invoke path. The :class:`~._board.TaskBoard` tells the
scheduler (it is the board's listener) when a session opens or closes and when a session has
a new Pending task; the scheduler then wakes the session's idle instances, and when none is
idle :meth:`Scheduler.reconcile` launches instances up to the demand. Each instance is run by
:class:`~._worker.InstanceRunner`, which takes the tasks from the board one at a time.

Sizing per open session: task demand = pending + running tasks, floored by ``min_instances``
(prewarm) and capped by the session's ``max_instances``. Task demand of every session is met
before any prewarm, in priority order (higher first, then older), so a prewarmed idle instance
is released for a session with waiting tasks and never steals the slot back. Instances leave
when idle for ``delay_release``, when their session closes, or when released to make room
under the runtime-wide ``max_instances`` cap.

Resources (see :mod:`._resources`): an instance of a session with an explicit ``resreq``
starts only when the ledger grants it, and holds the grant until its process is gone; every
release runs :meth:`Scheduler.reconcile` again, so a waiting session starts as soon as it fits.
Idle instances of sessions without waiting tasks are released to make room, and a session that
waits with no instance at all holds back later sessions that need what it lacks (so a large
request is not starved by a stream of small ones).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

from flame_agents._logging import get_logger
from flame_agents._wire import types_pb2
from flame_agents.runtime._launch import Launch
from flame_agents.runtime.sessions._board import SessionView, TaskBoard
from flame_agents.runtime.sessions._instances import EXECUTOR_BINDING, Instance, SessionInstances
from flame_agents.runtime.sessions._options import SchedulerOptions
from flame_agents.runtime.sessions._resources import Capacity, Ledger, format_bytes, resolved_spec
from flame_agents.runtime.sessions._store import Store
from flame_agents.runtime.sessions._worker import InstanceRunner

__all__ = ["ExecutorView", "Scheduler"]

_log = get_logger(__name__)


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


class Scheduler:
    """Owns the live instances of open sessions; the board's listener."""

    def __init__(
        self,
        board: TaskBoard,
        store: Store,
        options: SchedulerOptions,
        *,
        capacity: Capacity | None = None,
        launch: Launch,
    ) -> None:
        """Attaches to ``board``; ``store``: where applications are read; ``launch``: how an
        instance is started for a launch spec (the launcher's, given by ``Runtime.start()``)."""
        self._board = board
        self._store = store
        self._opts = options
        self.resources = Ledger(capacity if capacity is not None else Capacity.detect())
        """The machine's capacity and what live instances hold."""
        self._sessions: dict[str, SessionInstances] = {}
        self._stopping = False
        self._resources_wanted = False
        """Whether the last reconcile left a session with waiting tasks short of resources."""
        self._runner = InstanceRunner(board, options, host=self, launch=launch)
        board.attach(self)

    @property
    def stopping(self) -> bool:
        """Whether :meth:`shutdown` began."""
        return self._stopping

    @property
    def resources_wanted(self) -> bool:
        """Whether a session with waiting tasks is short of resources."""
        return self._resources_wanted

    # -- start-up and shutdown --------------------------------------------------------------

    def start(self) -> None:
        """Take on the board's open sessions (after :meth:`TaskBoard.recover`)."""
        for view in self._board.open_sessions():
            self._track(view)
        self.reconcile()

    def _track(self, view: SessionView) -> SessionInstances:
        sess = self._sessions[view.id] = SessionInstances(view)
        if sess.accounted and (problem := self.resources.never_fits(view.row.spec.resreq)):
            # Opened on a bigger machine (the Frontend refuses it here): it can never start.
            self._board.pause_session(view.id, reason=problem)
            _log.warning("session can never start here", session_id=view.id, reason=problem)
        return sess

    async def shutdown(self) -> None:
        """Leave and stop every instance; tasks still running go back to Pending."""
        self._stopping = True
        workers = []
        for sess in self._sessions.values():
            for inst in list(sess.instances):
                self._release(inst)
                if inst.worker is None:
                    continue
                if inst.state == EXECUTOR_BINDING:
                    # Still launching: waiting up to the bind timeout would stall the stop.
                    # Cancelling runs the worker's clean-up, which stops the process.
                    inst.worker.cancel()
                elif inst.task is not None and inst.process is not None:
                    # A running task would keep the process busy: stop it now; the task is
                    # re-run after the restart (at-least-once).
                    inst.process.terminate()
                workers.append(inst.worker)
        if workers:
            await asyncio.gather(*workers, return_exceptions=True)

    # -- the board's wake-ups ---------------------------------------------------------------

    def session_opened(self, view: SessionView) -> None:
        """A new open session exists (prewarm its min_instances)."""
        self._track(view)
        self.reconcile()

    def tasks_pending(self, view: SessionView) -> None:
        """A Pending task is waiting: hand it to an idle instance or launch one."""
        sess = self._sessions.get(view.id)
        if sess is None:
            return
        self._offer(sess)
        self.reconcile()

    def session_closed(self, view: SessionView) -> None:
        """The session closed: its idle instances leave; busy ones finish their task first."""
        sess = self._sessions.get(view.id)
        if sess is None:
            return
        for inst in list(sess.instances):
            if inst.task is None:
                self._release(inst)

    def cancel_running(self, view: SessionView, tid: int) -> None:
        """Running task ``tid`` was cancelled: its instance's runner stops it."""
        sess = self._sessions.get(view.id)
        if sess is None:
            return
        for inst in sess.instances:
            if inst.task == tid:
                self._runner.cancel(inst, tid)

    # -- Frontend entry points --------------------------------------------------------------

    async def drain(self, sid: str, *, cancel_running: bool = False) -> None:
        """Wait until no instance of the closed session ``sid`` runs a task.

        We wait for running tasks rather than refusing the close (Flame answers INTERNAL
        "Cannot close session with running tasks"): the session stops accepting tasks at
        once, and the caller gets the reply when nothing of the session runs any more.
        ``cancel_running`` (an interrupted client): running tasks are stopped instead, by
        stopping their instances; as lost after the close, they end CANCELLED.
        """
        sess = self._sessions.get(sid)
        if sess is None:
            return
        if cancel_running:
            for inst in list(sess.instances):
                if inst.task is not None and inst.process is not None:
                    inst.process.terminate()
        if sess.busy():
            sess.drained.clear()
            await sess.drained.wait()
        self._forget_if_done(sess)

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
        cap = self._opts.limits.max_instances
        live = self._live()
        starved = 0
        # Resources a session waiting with no instance lacks: later sessions may not take them.
        held: set[str] = set()
        waiting: list[tuple[SessionInstances, list[str]]] = []
        for sess in order:  # task demand first ...
            deficit = sess.task_demand() - len(sess.instances)
            while deficit > 0 and live < cap:
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
            while deficit > 0 and live < cap:
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
        self, waiting: list[tuple[SessionInstances, list[str]]], *, keep: set[SessionInstances]
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

    def _evict_idle(self, count: int, *, keep: set[SessionInstances]) -> None:
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

    def _release(self, inst: Instance) -> None:
        inst.release = True
        inst.wake.set()

    def _offer(self, sess: SessionInstances) -> None:
        while sess.view.pending and sess.idle:
            sess.idle.popleft().wake.set()

    def _launch(self, sess: SessionInstances, held: set[str]) -> list[str]:
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
        inst = Instance(id=str(uuid.uuid4()), session=sess, allocation=allocation)
        # Its own GPUs when its resreq is accounted on a machine with GPUs (none for gpu=0, as
        # Ray does); else it inherits the runtime's CUDA_VISIBLE_DEVICES.
        if allocation is not None and self.resources.capacity.gpus:
            inst.visible_gpus = allocation.gpus
        sess.instances.add(inst)
        inst.worker = asyncio.ensure_future(self._runner.run(inst, app))
        # A worker cancelled before it first ran skips its finally: return its grant anyway.
        inst.worker.add_done_callback(lambda _: self._free(inst))
        return []

    def _log_wait(self, sess: SessionInstances, short: list[str]) -> None:
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

    def _free(self, inst: Instance) -> None:
        """Return what ``inst`` holds to the ledger (once)."""
        if inst.allocation is not None:
            self.resources.release(inst.allocation)
            inst.allocation = None

    def instance_ended(self, inst: Instance) -> None:
        """``inst``'s process is gone: return its grant, forget it, size again."""
        self._free(inst)
        sess = inst.session
        sess.instances.discard(inst)
        self._forget_if_done(sess)
        self.reconcile()

    def _forget_if_done(self, sess: SessionInstances) -> None:
        if sess.closed and not sess.instances:
            self._sessions.pop(sess.id, None)
