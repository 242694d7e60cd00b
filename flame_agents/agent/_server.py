"""The instance side of an agent: an Instance-shim handler running ``Agent.handle`` per task.

Per invocation: refresh the state from the journal's version, return the recorded reply if the
idempotency key is committed (refusing a key reused for a different request), else run
``handle`` on a copy, validate, commit ONE patch conditionally on the version read, and reply.
A conflict means another writer moved the state: reload, and either return that writer's
recorded reply for the key or fail; never fork. A commit whose outcome the store left unknown
is resolved by :class:`StateHandle` (re-read, look the key up), and what cannot be resolved is
reported as a retryable error, so the client retries with the same key.

Failures travel to the client as ``"<ErrorClass>: <text>"`` followed by an error document that
carries the class and the error's fields (``flame_agents._wire.failures``), so the client raises
the same class with the same fields. A retryable class there means the agent layer (reading or
committing state) asks for a retry; a handler's own exception is never retried, so one of a
retryable class is reported as ``"TaskFailedError: <ErrorClass>: <text>"`` (without fields).
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import uuid
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from flame_agents._logging import get_logger
from flame_agents.agent._agent import Agent, takes_turn
from flame_agents.agent._envelope import ReplyEnvelope, RequestEnvelope, decode_request
from flame_agents.agent._journal import request_digest
from flame_agents.agent._progress import pending_interrupt
from flame_agents.agent._state import StateHandle
from flame_agents.agent._store import CacheStore, StateStore
from flame_agents.agent._stream import TurnStreams, stream_outcome
from flame_agents.agent._stream_format import REPLY
from flame_agents.agent._turn import AsyncTurn, Turn, TurnCancelled, TurnInterrupted, TurnRun
from flame_agents.agent._typenames import type_name
from flame_agents.errors import (
    Cancelled,
    CommitConflictError,
    FlameAgentsError,
    Interrupted,
    InvalidArgumentError,
    InvalidStateError,
    TaskFailedError,
)

__all__ = ["START_KEY", "AgentHandler"]

#: Idempotency key of the ``on_session_start`` commit: it runs once per session, not per instance.
START_KEY = "~session-start"

_log = get_logger(__name__)


class AgentHandler:
    """Serves one :class:`Agent` subclass through the Instance-shim handler protocol.

    ``store_factory(endpoint)`` builds the store for the session's state object; the default
    talks to the object cache at that endpoint. The in-process harness passes an in-memory one.
    """

    def __init__(
        self,
        agent_type: type[Agent[Any]],
        *,
        store_factory: Callable[[str], StateStore] | None = None,
        compact_every: int | None = None,
    ) -> None:
        if not hasattr(agent_type, "request_type"):
            raise TypeError(f"{agent_type.__qualname__} does not define a checked handle()")
        self.agent_type = agent_type
        self._store_factory = store_factory or CacheStore
        self._compact_every = compact_every
        self._agent: Agent[Any] | None = None
        self._state: StateHandle[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._log = _log.bind(agent=agent_type.__qualname__)
        # The exception the handler raised in the current invocation (see on_task_invoke).
        self._handler_error: BaseException | None = None
        self._streams: TurnStreams | None = None
        # Cancellation: set from the shim's cancel call (another thread) for the running task.
        self._cancel_lock = threading.Lock()
        self._cancel_event = threading.Event()
        self._current_task = ""
        self._async_task: asyncio.Task[Any] | None = None
        self.session_id = ""
        self.app = ""

    # -- the Instance handler protocol ------------------------------------------------------

    def on_session_enter(
        self, session_id: str, application_name: str, common_data: bytes | None
    ) -> None:
        from flame_agents.cache import ObjectRef

        if not common_data:
            raise InvalidArgumentError(
                f"session {session_id}: no state reference in common_data; create agent "
                "sessions with AgentSession",
                session_id=session_id,
            )
        ref = ObjectRef.decode(common_data)
        self.enter(session_id, application_name, ref.endpoint, ref.key)

    def enter(self, session_id: str, app: str, endpoint: str, key: str) -> None:
        """Bind to the state object ``key`` at ``endpoint`` (what on_session_enter decodes)."""
        self.session_id, self.app = session_id, app
        self._log = _log.bind(session_id=session_id, app=app, agent=self.agent_type.__qualname__)
        state: StateHandle[Any] = StateHandle(
            self._store_factory(endpoint), key, self.agent_type.context_type
        )
        if self._compact_every is not None:
            state.compact_every = self._compact_every
        state.load()
        try:
            state.upgrade()
        except CommitConflictError:
            # Another instance moved (or upgraded) the state first: upgrade from what it wrote.
            state.load()
            state.upgrade()
        self._state = state
        self._streams = TurnStreams(endpoint, key)
        self._agent = self.agent_type()
        self._run_hook("on_session_start", START_KEY)
        self._log.info("session entered", version=state.version)

    def on_task_invoke(self, task_id: str, session_id: str, input: bytes | None) -> bytes | None:
        with self._cancel_lock:
            self._current_task = task_id
            self._cancel_event = threading.Event()
        try:
            return self.invoke(input, task_id=task_id).encode()
        except Cancelled:
            raise  # the shim reports it as a cancelled task
        except Exception as exc:
            # Class and fields travel with the task's failure so the client raises the same.
            text = exc.message if isinstance(exc, FlameAgentsError) else str(exc)
            name = type(exc).__name__
            reported = name
            fields = exc.fields if isinstance(exc, FlameAgentsError) else {}
            if exc is self._handler_error and getattr(exc, "retryable", False):
                # The client retries a retryable class; a handler's failure it must not retry.
                name = f"{TaskFailedError.__name__}: {name}"
                reported, fields = TaskFailedError.__name__, {}
            raise TaskFailedError(
                f"{name}: {text}", remote_type=reported, remote_fields=fields
            ) from exc
        finally:
            self._handler_error = None
            with self._cancel_lock:
                self._current_task = ""

    def on_task_cancel(self, task_id: str) -> None:
        """Cancel the running turn of ``task_id`` (called from another thread).

        A sync handler stops at its next ``step``/``emit``/``interrupt`` (``turn.cancelled``
        turns True at once); an async handler gets ``asyncio.CancelledError``.
        """
        with self._cancel_lock:
            if task_id and task_id != self._current_task:
                return
            self._cancel_event.set()
            task, loop = self._async_task, self._loop
        if task is not None and loop is not None:
            loop.call_soon_threadsafe(task.cancel)

    def on_session_leave(self) -> None:
        try:
            if self._state is not None:
                self._run_hook("on_session_end", f"~session-end-{uuid.uuid4().hex}")
        except Exception as exc:  # leaving must not fail (Flame retries a failed leave forever)
            self._log.warning("on_session_end failed", error=str(exc))
        finally:
            self.close()

    def close(self) -> None:
        """Drop the session binding and the event loop without running hooks."""
        self._state = None
        self._agent = None
        if self._loop is not None:
            self._loop.close()
            self._loop = None

    # -- one invocation ---------------------------------------------------------------------

    def invoke(self, data: bytes | None, *, task_id: str = "") -> ReplyEnvelope:
        """Run one request envelope through the commit path; returns the reply envelope.

        A request that asks for a stream gets the turn's emitted items written to the turn's
        stream object, ended by the turn's outcome (a resumed turn goes on in its stream if it
        has one); otherwise emitted items are dropped.
        """
        envelope = decode_request(data)
        resuming = envelope.resume is not None
        if not (envelope.stream or resuming) or self._streams is None or envelope.probe:
            return self._invoke(envelope, task_id=task_id, sink=None)
        writer = self._streams.writer(envelope.key, if_exists=resuming and not envelope.stream)
        try:
            result = self._invoke(
                envelope, task_id=task_id, sink=writer.emit, replayed_items=writer.replayed
            )
        except BaseException as exc:
            writer.close(stream_outcome(exc, handler_error=self._handler_error))
            raise
        writer.close(REPLY, replayed=result.replayed)
        return result

    def _invoke(
        self,
        envelope: RequestEnvelope,
        *,
        task_id: str,
        sink: Callable[[Any], None] | None,
        replayed_items: Callable[[int], None] | None = None,
    ) -> ReplyEnvelope:
        state, agent = self._state, self._agent
        if state is None or agent is None:
            raise InvalidStateError("no session entered")
        log = self._log.bind(task_id=task_id)
        key = envelope.key
        schema = self.agent_type.reply_type.model_json_schema() if envelope.want_schema else None
        if envelope.probe:
            return self._envelope(None, replayed=True, schema=schema)
        state.refresh()
        if envelope.drop:
            self._drop_turn(state, key)
            return self._envelope(None, replayed=False, schema=schema)
        request, request_json, digest = self._turn_request(state, envelope)
        recorded = state.recorded(key, request=digest)
        if recorded is not None:
            log.info("replayed recorded reply", key=key, version=state.version)
            return self._envelope(recorded.reply, replayed=True, schema=schema)
        self._check_not_paused(state, key, resuming=envelope.resume is not None)
        if request is None:
            request = self._validate_request(request_json)
        work = state.working_copy()
        run = TurnRun(
            state,
            key,
            session_id=self.session_id,
            request=request_json,
            digest=digest,
            sink=sink,
            replayed_items=replayed_items,
            cancel_event=self._cancel_event,
        )
        reply = self._run_turn(agent, request, work, run)
        reply_json = reply.model_dump(mode="json")
        # Another writer may have moved the state: if it committed this very key (a duplicate
        # delivery), its reply is the answer (replayed); otherwise CommitConflictError, and ours
        # does not land on top of it.
        committed = state.commit(work, idempotency_key=key, reply=reply_json, request=digest)
        if committed.replayed:
            log.info("commit resolved by recorded reply", key=key, version=committed.version)
            return self._envelope(committed.reply, replayed=True, schema=schema)
        log.info(
            "invocation committed",
            key=key,
            version=committed.version,
            steps_run=run.steps_run,
            steps_replayed=run.steps_replayed,
        )
        return self._envelope(reply_json, replayed=False, schema=schema)

    def _validate_request(self, request_json: Any) -> Any:
        try:
            return self.agent_type.request_type.model_validate(request_json)
        except ValidationError as exc:
            raise InvalidArgumentError(f"invalid request: {exc}") from exc

    def _turn_request(
        self, state: StateHandle[Any], envelope: RequestEnvelope
    ) -> tuple[Any, Any, str | None]:
        """The request the turn runs on (validated, or None for a resume), its JSON and digest;
        a resume records its answer first.

        A resume runs the request its turn was interrupted with; its answer is recorded once
        (a repeated resume of an answered interrupt just runs the turn on).
        """
        if envelope.resume is None:
            request = self._validate_request(envelope.request)
            request_json = request.model_dump(mode="json")
            return request, request_json, request_digest(request_json)
        key, (index, answer) = envelope.key, envelope.resume
        progress = state.journal.turns.get(key)
        if progress is None or not progress.interrupts:
            found = state.recorded(key)
            if found is not None:  # a resume whose turn already committed: its reply
                return None, None, found.request
            raise InvalidStateError(
                f"turn {key!r} of session {self.session_id} is not waiting for an answer "
                "(nothing to resume)",
                idempotency_key=key,
                session_id=self.session_id,
            )
        if index == len(progress.answers) and index < len(progress.interrupts):
            state.record_progress({"k": key, "op": "answer", "index": index, "value": answer})
        elif index > len(progress.answers) or index >= len(progress.interrupts):
            raise InvalidStateError(
                f"turn {key!r} has no interrupt {index} waiting for an answer",
                idempotency_key=key,
                session_id=self.session_id,
            )
        return None, progress.request, progress.digest or request_digest(progress.request)

    def _check_not_paused(self, state: StateHandle[Any], key: str, *, resuming: bool) -> None:
        """Refuse a new turn while another waits for an answer; re-raise a repeated pause."""
        found = pending_interrupt(state.journal.turns)
        if found is None:
            return
        paused, index, payload = found
        if paused == key and not resuming:
            raise Interrupted(
                f"turn {key!r} is waiting for an answer to interrupt {index}; resume it with "
                "AgentSession.resume(answer)",
                payload=payload,
                idempotency_key=key,
                index=index,
                session_id=self.session_id,
            )
        if paused != key:
            raise InvalidStateError(
                f"session {self.session_id} has a turn waiting for an answer (idempotency key "
                f"{paused!r}, interrupt {index}, payload {payload!r}); answer it with "
                "AgentSession.resume(answer) or drop it with AgentSession.cancel() before "
                "invoking again",
                session_id=self.session_id,
                idempotency_key=paused,
                payload=payload,
            )

    def _run_turn(self, agent: Agent[Any], request: Any, work: Any, run: TurnRun) -> Any:
        """Call ``handle`` for one turn; a pause or a cancellation becomes its client error."""
        args: tuple[Any, ...] = (request, work)
        if self.agent_type.takes_turn:
            args += (AsyncTurn(run) if self.agent_type.is_async else Turn(run),)
        self._handler_error = None
        try:
            reply = self._call(agent.handle, *args)
            if run.cancel_event.is_set():
                # Cancelled while a handler that never looked finished: its turn is dropped,
                # not committed (a cancel that arrives once the commit started changes nothing).
                raise TurnCancelled("turn cancelled")
        except TurnInterrupted as pause:
            raise Interrupted(
                f"turn {run.idempotency_key!r} is waiting for an answer (interrupt "
                f"{pause.index}); resume it with AgentSession.resume(answer)",
                payload=pause.payload,
                idempotency_key=run.idempotency_key,
                index=pause.index,
                session_id=self.session_id,
            ) from None
        except (TurnCancelled, asyncio.CancelledError):
            self._drop_turn(run.state, run.idempotency_key)
            raise Cancelled(
                f"turn {run.idempotency_key!r} was cancelled; nothing of it was committed",
                idempotency_key=run.idempotency_key,
                session_id=self.session_id,
            ) from None
        except BaseException as exc:
            # A failure to record the turn's progress is the agent layer's, not the handler's.
            self._handler_error = None if exc is run.failure else exc
            raise
        if not isinstance(reply, self.agent_type.reply_type):
            raise TaskFailedError(
                f"{self.agent_type.__qualname__}.handle returned {type(reply).__name__}, "
                f"expected {self.agent_type.reply_type.__name__}"
            )
        return reply

    def _drop_turn(self, state: StateHandle[Any], key: str) -> None:
        """Forget the recorded progress of turn ``key`` (cancelled, or its interrupt dropped)."""
        if key in state.journal.turns:
            state.record_progress({"k": key, "op": "drop"})

    def _envelope(
        self, reply_json: Any, *, replayed: bool, schema: dict[str, Any] | None
    ) -> ReplyEnvelope:
        assert self._state is not None
        return ReplyEnvelope(
            reply=reply_json,
            replayed=replayed,
            version=self._state.version,
            type=type_name(self.agent_type.reply_type),
            schema=schema,
        )

    def _run_hook(self, name: str, key: str) -> None:
        state, agent = self._state, self._agent
        assert state is not None and agent is not None
        hook = getattr(agent, name)
        if getattr(type(agent), name) is getattr(Agent, name):
            return  # not overridden: no commit
        state.refresh()
        if state.lookup(key)[0]:
            return
        work = state.working_copy()
        args: tuple[Any, ...] = (work,)
        if takes_turn(hook):
            run = TurnRun(state, key, session_id=self.session_id, interrupts_allowed=False)
            args += (AsyncTurn(run) if inspect.iscoroutinefunction(hook) else Turn(run),)
        self._call(hook, *args)
        state.commit(work, idempotency_key=key, reply=None)  # resolves conflicts on the key

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        result = fn(*args)
        if inspect.isawaitable(result):
            # One loop per instance, so async handlers may keep loop-bound clients across calls.
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
            task = self._loop.create_task(_awaited(result))
            with self._cancel_lock:
                self._async_task = task
                cancelled = self._cancel_event.is_set()
            if cancelled:
                task.cancel()
            try:
                result = self._loop.run_until_complete(task)
            finally:
                with self._cancel_lock:
                    self._async_task = None
        return result


async def _awaited(awaitable: Any) -> Any:
    return await awaitable
