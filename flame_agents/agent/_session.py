"""``AgentSession``: open, invoke and read an agent session from any process.

Creating a session stores its initial state object at ``<app>/<session id>`` and creates the
Flame session with ``common_data`` = the BSON ``ObjectRef`` of that object (as flamepy's
``Session(ctx=...)`` does), served by one instance at a time by default. Every ``invoke``
carries an idempotency key that its retries reuse, so a retried invocation is applied once.
"""

from __future__ import annotations

import contextlib
import importlib
import secrets
import string
import uuid
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from flame_agents import cache, core
from flame_agents._logging import get_logger
from flame_agents.agent._agent import Agent
from flame_agents.agent._context import ContextModel
from flame_agents.agent._envelope import (
    ReplyEnvelope,
    encode_drop,
    encode_probe,
    encode_request,
    encode_resume,
    error_from_message,
)
from flame_agents.agent._retry import RetryPolicy
from flame_agents.agent._schema_model import model_from_schema
from flame_agents.agent._state import StateHandle
from flame_agents.agent._state_objects import create_state, delete_state
from flame_agents.agent._store import CacheStore
from flame_agents.agent._stream_format import stream_key
from flame_agents.agent._turn import to_json_value
from flame_agents.agent._turn_stream import TurnStream
from flame_agents.errors import (
    FlameAgentsError,
    InvalidArgumentError,
    InvalidStateError,
    NotFoundError,
    TaskFailedError,
)

__all__ = ["AgentSession"]

C = TypeVar("C", bound=ContextModel)
_ALNUM = string.ascii_letters + string.digits
_log = get_logger(__name__)


def _session_id(app: str) -> str:
    return f"{app}-{''.join(secrets.choice(_ALNUM) for _ in range(6))}"


def _agent_attr(agent: type[Agent[Any]] | None, name: str) -> Any:
    return getattr(agent, name, None) if agent is not None else None


def _check_model_arg(what: str, value: object, expected: type[BaseModel] | None) -> None:
    """Refuse a dict (or anything) where a model instance is required, naming the model."""
    if value is None or isinstance(value, expected or BaseModel):
        return
    wanted = expected.__name__ if expected is not None else "a pydantic model instance"
    hint = f" (build it: {wanted}(**value))" if isinstance(value, dict) else ""
    raise InvalidArgumentError(f"{what}: expected {wanted}, got {type(value).__name__}{hint}")


def _import_type(name: str) -> type[BaseModel] | None:
    module, _, qualname = name.partition(":")
    if module == "__main__" or not qualname:
        return None
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        return None
    return obj if isinstance(obj, type) and issubclass(obj, BaseModel) else None


class AgentSession(Generic[C]):
    """A client handle on one agent session.

    Create a new session of application ``app`` starting from ``ctx``::

        with AgentSession("chat-agent", ctx=ChatContext(system_prompt="be brief")) as s:
            answer = s.invoke(Ask(text="hi"))

    or reopen an existing one by id from any process::

        s = AgentSession(session_id=sid, context_type=ChatContext)

    Args:
        app: Registered application serving the agent (required to create).
        ctx: Initial context (validated); creating without it uses ``context_type()``.
        context_type: The context model (defaults to ``type(ctx)`` or ``agent.context_type``).
        session_id: Reopen this session; with ``app`` and a context type, create it if missing.
        agent: The agent class, when importable: gives the context and reply types.
        reply_type: The reply model (else taken from ``agent`` or imported by name).
        retry: Client retry policy for retryable failures (same idempotency key).
        max_instances: Instances serving the session at once; 1 keeps one writer.
        timeout: Per-attempt deadline in seconds for ``invoke`` (None = wait).
        connection: The runtime to use (``core.connect(url)``, a ``LocalRuntime``'s
            ``connect()``); a new session's state goes to its ``cache_endpoint``. Default: the
            process's default connection.
    """

    def __init__(
        self,
        app: str | None = None,
        *,
        ctx: C | None = None,
        context_type: type[C] | None = None,
        session_id: str | None = None,
        agent: type[Agent[C]] | None = None,
        reply_type: type[BaseModel] | None = None,
        retry: RetryPolicy | None = None,
        max_instances: int | None = 1,
        timeout: float | None = None,
        connection: core.Connection | None = None,
    ) -> None:
        _check_model_arg("ctx", ctx, context_type or _agent_attr(agent, "context_type"))
        if context_type is None:
            if ctx is not None:
                context_type = type(ctx)
            elif agent is not None:
                context_type = agent.context_type  # type: ignore[assignment]
        if ctx is not None and not isinstance(ctx, ContextModel):
            raise InvalidArgumentError(
                f"ctx must be the agent's ContextModel instance, got {type(ctx).__name__}"
            )
        self.context_type = context_type
        self.request_type: type[BaseModel] | None = _agent_attr(agent, "request_type")
        self.reply_type = reply_type or _agent_attr(agent, "reply_type")
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self._connection = connection
        self._created = False
        if ctx is None and session_id is not None:
            try:
                opener = core.open_session if connection is None else connection.open_session
                self._session = opener(session_id)
            except NotFoundError:
                if app is None or context_type is None:
                    raise
                # Reopen-or-create: a named session that does not exist yet starts fresh.
                self._session = self._create(app, None, session_id, max_instances)
        else:
            self._session = self._create(app, ctx, session_id, max_instances)
        data = self._session.common_data()
        if not data:
            raise InvalidArgumentError(
                f"session {self._session.id} has no agent state (common_data is empty); it was "
                "not created by AgentSession",
                session_id=self._session.id,
            )
        self.ref = cache.ObjectRef.decode(data)
        self.app = self._session.info().application
        self._log = _log.bind(session_id=self._session.id, app=self.app)
        self._state: StateHandle[C] | None = None
        if self._created:
            self._check_agent()

    def _check_agent(self) -> None:
        """Ask the new session's service whether it is an agent, before anything is committed.

        The probe runs no handler (a plain service fails to read it before calling its
        entrypoint) and tells the reply type, so a reply class this process cannot import is
        known now, not after a turn committed. A session that turns out unusable is closed.
        """
        try:
            envelope = self._send(encode_probe(want_schema=self.reply_type is None), "~probe")
        except (TaskFailedError, InvalidArgumentError) as exc:
            self._abandon()
            raise InvalidArgumentError(
                f"application {self.app!r} is not an agent: its service could not read an agent "
                f"request ({exc}); AgentSession needs a service that runs `YourAgent.run()`, "
                "use flame_agents.service.Session for plain services",
                app=self.app,
            ) from exc
        except BaseException:
            self._abandon()
            raise
        self._resolve_reply_model(envelope)

    def _abandon(self) -> None:
        with contextlib.suppress(FlameAgentsError):
            self._session.close()
        delete_state(CacheStore(self.ref.endpoint), self.ref.key)

    def _resolve_reply_model(self, envelope: ReplyEnvelope) -> type[BaseModel]:
        """The reply class: given, imported by the name the agent recorded, or rebuilt from the
        JSON Schema it sent; remembered for the session's later replies."""
        if self.reply_type is None:
            model = _import_type(envelope.type)
            if model is None and envelope.schema is not None:
                model = model_from_schema(envelope.schema)
            if model is None:
                # An agent that sent no schema (an older version): keep the fields unchecked.
                model = create_model(
                    envelope.type.rpartition(":")[2] or "Reply",
                    __config__=ConfigDict(extra="allow"),
                )
            self.reply_type = model
        return self.reply_type

    def _create(
        self, app: str | None, ctx: C | None, session_id: str | None, max_instances: int | None
    ) -> core.Session:
        if not app:
            raise InvalidArgumentError("AgentSession needs `app` to create a session")
        if ctx is None:
            if self.context_type is None:
                raise InvalidArgumentError("AgentSession needs `ctx` or `context_type` to create")
            ctx = self.context_type()
        sid = session_id or _session_id(app)
        self._created = True
        conn = self._connection
        store = CacheStore(None if conn is None else conn.cache_endpoint)
        key = create_state(store, f"{app}/{sid}", ctx)
        ref = cache.ObjectRef(str(store.endpoint), key, 1)
        create = core.create_session if conn is None else conn.create_session
        try:
            return create(
                app, common_data=ref.encode(), session_id=sid, max_instances=max_instances
            )
        except FlameAgentsError:
            # No session will ever reference the object: do not leave it (or its chunks) behind.
            delete_state(store, key)
            raise

    def id(self) -> str:
        """The session id (reopen it with ``AgentSession(session_id=...)``)."""
        return str(self._session.id)

    def invoke(
        self,
        req: BaseModel,
        *,
        idempotency_key: str | None = None,
        reply_type: type[BaseModel] | None = None,
        timeout: float | None = None,
        cancel_on_timeout: bool = False,
    ) -> Any:
        """Invoke the agent; returns its reply, validated as the reply type.

        ``idempotency_key`` defaults to a fresh key per call; retries of this call reuse it.
        Passing the key of an earlier invocation returns that invocation's recorded reply
        without running the handler again.

        ``timeout`` (seconds per attempt; default the session's) with ``cancel_on_timeout``
        cancels the turn when it runs out and raises ``Cancelled``; without it the turn goes on
        and ``InvocationTimeoutError`` is retried under the policy. Ctrl-C while waiting
        cancels the turn before the ``KeyboardInterrupt`` goes on.

        Raises:
            Interrupted: the turn paused for an answer (``resume()`` continues it).
            Cancelled: the turn was cancelled (``cancel()`` from any thread or process,
                ``cancel_on_timeout``); nothing of it was committed.
            TaskFailedError: the handler raised (message ``"<ExceptionClass>: <text>"``).
            ContextValidationError: the handler left the context invalid (state unchanged).
            CommitConflictError: another writer moved the state (state unchanged).
            RetryableError subclasses: the retry budget ran out.
        """
        _check_model_arg("req", req, self.request_type)
        key = idempotency_key or uuid.uuid4().hex
        want_schema = reply_type is None and self.reply_type is None
        envelope = self._send(
            encode_request(key, req.model_dump(mode="json"), want_schema=want_schema),
            key,
            timeout=timeout,
            cancel_on_timeout=cancel_on_timeout,
        )
        return self._typed_reply(envelope, reply_type)

    def _typed_reply(self, envelope: ReplyEnvelope, reply_type: type[BaseModel] | None) -> Any:
        model = reply_type or self._resolve_reply_model(envelope)
        try:
            return model.model_validate(envelope.reply)
        except ValidationError as exc:
            raise TaskFailedError(
                f"the reply does not validate as {model.__name__}: {exc}"
            ) from exc

    def pending_interrupt(self) -> dict[str, Any] | None:
        """The turn waiting for an answer, read from the session's state, or None.

        ``{"idempotency_key": <the paused turn's key>, "index": <its interrupt>, "payload":
        <what the handler passed to interrupt()>}``; works from any process, by session id.
        """
        reader = StateHandle(CacheStore(self.ref.endpoint), self.ref.key, ContextModel)
        return reader.pending_interrupt_json()

    def resume(self, answer: Any, *, reply_type: type[BaseModel] | None = None) -> Any:
        """Answer the session's paused turn with ``answer`` and run it on; returns its reply.

        The turn runs again from the top on the request it was interrupted with: its steps
        replay from the journal, ``turn.interrupt()`` returns ``answer`` (as JSON; a model
        arrives as its dict), and the turn commits as an invocation does. It raises
        ``Interrupted`` again when the turn pauses at a later interrupt. Works from any process
        after ``AgentSession(session_id=...)``, and after runtime restarts.
        """
        pending = self.pending_interrupt()
        if pending is None:
            raise InvalidStateError(
                f"session {self.id()} has no turn waiting for an answer; resume() answers the "
                "interrupt an invoke raised as Interrupted",
                session_id=self.id(),
            )
        key = str(pending["idempotency_key"])
        want_schema = reply_type is None and self.reply_type is None
        data = encode_resume(
            key,
            int(pending["index"]),
            to_json_value(answer, what="the answer"),
            want_schema=want_schema,
        )
        return self._typed_reply(self._send(data, key), reply_type)

    def cancel(self) -> None:
        """Cancel the session's running turn, and drop a turn waiting for an answer.

        Callable from another thread while ``invoke``/``stream`` runs, or from another process
        (``AgentSession(session_id=...).cancel()``). The running turn stops (an async handler
        gets ``asyncio.CancelledError``, a sync one stops at its next ``step``/``emit``/
        ``interrupt``), its context changes are not committed, and the caller's ``invoke`` or
        ``stream`` raises ``Cancelled``; returns once it ended. A paused turn is dropped with
        its recorded steps. The session serves the next invocation.

        Raises:
            InvalidStateError: a Flame cluster cannot cancel a running task (there was no
                paused turn to drop either; see docs/flame-cluster.md).
        """
        unsupported: InvalidStateError | None = None
        try:
            self._session.cancel()
        except InvalidStateError as exc:
            if exc.fields.get("grpc_code") != "UNIMPLEMENTED":
                raise
            unsupported = exc
        pending = self.pending_interrupt()
        if pending is not None:
            key = str(pending["idempotency_key"])
            self._send(encode_drop(key), key)
        elif unsupported is not None:
            raise unsupported

    def stream(
        self,
        req: BaseModel,
        *,
        idempotency_key: str | None = None,
        after: int = 0,
        reply_type: type[BaseModel] | None = None,
    ) -> TurnStream:
        """Invoke the agent and follow the items its turn emits, as it emits them::

            stream = s.stream(Ask(text="..."))
            for item in stream:      # in emit order
                print(item)
            answer = stream.reply    # the typed reply (or the invocation's error)

        The invocation runs in the background with ``invoke``'s retries and idempotency.
        Calling ``stream`` again with the ``idempotency_key`` of a turn that is running or
        finished recently yields its items from the start (or from ``after``, e.g. an
        earlier stream's ``offset``), then the rest; a finished turn is not run again.
        """
        _check_model_arg("req", req, self.request_type)
        key = idempotency_key or uuid.uuid4().hex
        want_schema = reply_type is None and self.reply_type is None
        data = encode_request(
            key, req.model_dump(mode="json"), want_schema=want_schema, stream=True
        )

        return TurnStream(
            key=key,
            endpoint=self.ref.endpoint,
            prefix=stream_key(self.ref.key, key),
            send=lambda: self._send(data, key),
            to_reply=lambda envelope: self._typed_reply(envelope, reply_type),
            after=after,
            reconnect=idempotency_key is not None,
            cancel=lambda: self._session.cancel(wait=False),
        )

    def _send(
        self,
        data: bytes,
        key: str,
        *,
        timeout: float | None = None,
        cancel_on_timeout: bool = False,
    ) -> ReplyEnvelope:
        """One task with ``data``, retried under the session's policy; its reply envelope."""
        log = self._log.bind(key=key)
        deadline = self.timeout if timeout is None else timeout

        def attempt() -> bytes | None:
            try:
                return self._session.invoke(
                    data, timeout=deadline, cancel_on_timeout=cancel_on_timeout
                )
            except TaskFailedError as exc:
                raise error_from_message(exc.message, **exc.fields) from exc

        def on_retry(exc: BaseException, attempt_number: int) -> None:
            log.warning("retrying invocation", attempt=attempt_number, error=str(exc))

        return ReplyEnvelope.decode(self.retry.call(attempt, on_retry=on_retry))

    def state(self) -> StateHandle[C]:
        """The session's state object, refreshed (version, summary, lookups)."""
        if self.context_type is None:
            raise InvalidArgumentError("pass context_type= to AgentSession to read its context")
        if self._state is None:
            self._state = StateHandle(
                CacheStore(self.ref.endpoint), self.ref.key, self.context_type
            )
        self._state.refresh()
        return self._state

    def context(self) -> C:
        """The current context: materialized, migrated if needed, validated (a private copy)."""
        return self.state().working_copy()

    def close(self) -> None:
        """Close the session (its state stays readable in the object cache)."""
        self._session.close()

    def __enter__(self) -> AgentSession[C]:
        return self

    def __exit__(self, *exc: object) -> None:
        if not isinstance(exc[1], KeyboardInterrupt):
            self.close()
            return
        # Ctrl-C: a running invocation is stopped, not awaited (see core Session.close), and a
        # failed close (a Flame cluster refuses it while a task runs) does not hide the Ctrl-C.
        try:
            self._session.close(cancel_running=True)
        except FlameAgentsError as close_exc:
            _log.warning("session_close_failed", session_id=self.id(), error=str(close_exc))

    def __repr__(self) -> str:
        return f"AgentSession(id={self.id()!r}, app={self.app!r})"
