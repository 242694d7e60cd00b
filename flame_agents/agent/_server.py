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
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from flame_agents._logging import get_logger
from flame_agents.agent._agent import Agent
from flame_agents.agent._envelope import ReplyEnvelope, RequestEnvelope, decode_request
from flame_agents.agent._journal import request_digest
from flame_agents.agent._state import StateHandle
from flame_agents.agent._store import CacheStore, StateStore
from flame_agents.agent._stream import TurnStreams, drop_item, stream_outcome, turn_sink
from flame_agents.agent._stream_format import REPLY
from flame_agents.errors import (
    CommitConflictError,
    FlameAgentsError,
    InvalidArgumentError,
    InvalidStateError,
    TaskFailedError,
)

__all__ = ["START_KEY", "AgentHandler"]

#: Idempotency key of the ``on_session_start`` commit: it runs once per session, not per instance.
START_KEY = "~session-start"

_log = get_logger(__name__)


def type_name(tp: type) -> str:
    """``module:qualname`` of a type (recorded in replies and state for tools).

    A type defined in a script run as ``python agent.py`` lives in ``__main__``, a name no other
    process can import; the script's own module name (``agent``) is recorded instead.
    """
    module = tp.__module__
    if module == "__main__":
        module = main_module_name() or module
    return f"{module}:{tp.__qualname__}"


def main_module_name() -> str | None:
    """The importable name of this process's ``__main__``: ``pkg.mod`` when run with ``-m``,
    the file's stem for a script; None when there is neither (an interactive session)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name and spec.name != "__main__":
        return str(spec.name).removesuffix(".__main__")
    path = getattr(main, "__file__", None)
    if path:
        stem = Path(path).stem
        if stem.isidentifier():
            return stem
    return None


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
        try:
            return self.invoke(input, task_id=task_id).encode()
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
        stream object, ended by the turn's outcome; otherwise emitted items are dropped.
        """
        envelope = decode_request(data)
        if not envelope.stream or self._streams is None or envelope.probe:
            return self._invoke(envelope, task_id=task_id, sink=drop_item)
        writer = self._streams.writer(envelope.key)
        try:
            result = self._invoke(envelope, task_id=task_id, sink=writer.emit)
        except BaseException as exc:
            writer.close(stream_outcome(exc, handler_error=self._handler_error))
            raise
        writer.close(REPLY, replayed=result.replayed)
        return result

    def _invoke(
        self, envelope: RequestEnvelope, *, task_id: str, sink: Callable[[Any], None]
    ) -> ReplyEnvelope:
        state, agent = self._state, self._agent
        if state is None or agent is None:
            raise InvalidStateError("no session entered")
        log = self._log.bind(task_id=task_id)
        key, request_json = envelope.key, envelope.request
        schema = self.agent_type.reply_type.model_json_schema() if envelope.want_schema else None
        if envelope.probe:
            return self._envelope(None, replayed=True, schema=schema)
        try:
            request = self.agent_type.request_type.model_validate(request_json)
        except ValidationError as exc:
            raise InvalidArgumentError(f"invalid request: {exc}") from exc
        digest = request_digest(request.model_dump(mode="json"))
        state.refresh()
        recorded = state.recorded(key, request=digest)
        if recorded is not None:
            log.info("replayed recorded reply", key=key, version=state.version)
            return self._envelope(recorded.reply, replayed=True, schema=schema)
        work = state.working_copy()
        self._handler_error = None
        try:
            with turn_sink(sink):
                reply = self._call(agent.handle, request, work)
        except BaseException as exc:
            self._handler_error = exc
            raise
        if not isinstance(reply, self.agent_type.reply_type):
            raise TaskFailedError(
                f"{self.agent_type.__qualname__}.handle returned {type(reply).__name__}, "
                f"expected {self.agent_type.reply_type.__name__}"
            )
        reply_json = reply.model_dump(mode="json")
        # Another writer may have moved the state: if it committed this very key (a duplicate
        # delivery), its reply is the answer (replayed); otherwise CommitConflictError, and ours
        # does not land on top of it.
        committed = state.commit(work, idempotency_key=key, reply=reply_json, request=digest)
        if committed.replayed:
            log.info("commit resolved by recorded reply", key=key, version=committed.version)
            return self._envelope(committed.reply, replayed=True, schema=schema)
        log.info("invocation committed", key=key, version=committed.version)
        return self._envelope(reply_json, replayed=False, schema=schema)

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
        self._call(hook, work)
        state.commit(work, idempotency_key=key, reply=None)  # resolves conflicts on the key

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        result = fn(*args)
        if inspect.isawaitable(result):
            # One loop per instance, so async handlers may keep loop-bound clients across calls.
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
            result = self._loop.run_until_complete(result)
        return result
