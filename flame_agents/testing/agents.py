"""Test helpers for agents: run one in-process with no runtime, and drive it with hypothesis.

:class:`AgentHarness` runs an :class:`~flame_agents.Agent` through exactly the commit path its
service process uses (the same handler, state journal and envelopes) against an in-memory store
(or any state store, such as the object cache's), so unit tests need no runtime.
:class:`AgentStateMachine` is a hypothesis ``RuleBasedStateMachine`` that checks an agent against
a plain in-memory model of its context, while crashing the instance (also inside commits and
compactions), failing the store, replaying idempotency keys and racing a second writer along
the way (it needs hypothesis, so it is imported on first use).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel

from flame_agents.agent import Agent, ContextModel
from flame_agents.agent.testing_support import (
    DEFAULT_CHUNK,
    DEFAULT_COMPACT_EVERY,
    AgentHandler,
    MemoryStore,
    StateHandle,
    StateStore,
    create_state,
    encode_drop,
    encode_request,
    encode_resume,
)
from flame_agents.errors import InvalidStateError

if TYPE_CHECKING:
    from flame_agents.testing._agent_machine import AgentStateMachine

__all__ = ["AgentHarness", "AgentStateMachine"]

C = TypeVar("C", bound=ContextModel)


class AgentHarness(Generic[C]):
    """One agent session served in-process: ``invoke``, ``resume``, ``cancel`` and ``context``
    like an AgentSession.

    ``chunk`` and ``compact_every`` default to the production values; tests make them small to
    exercise sealing and compaction with few invocations. ``store`` defaults to a fresh
    in-memory store; the session's state object is created in it as ``AgentSession`` creates
    one (initial histories sealed into chunks), unless ``state_key`` names one that exists in
    ``store`` (another harness's :attr:`key`: e.g. a newer version of the agent taking over a
    session, to test migrations).

    Errors reach the test as the instance raises them (``Interrupted`` with its ``payload``,
    ``InvalidStateError``, ...), not wrapped in a task failure.
    """

    def __init__(
        self,
        agent: type[Agent[C]],
        ctx: C | None = None,
        *,
        store: StateStore | None = None,
        session_id: str = "test-session",
        app: str = "test-agent",
        chunk: int = DEFAULT_CHUNK,
        compact_every: int = DEFAULT_COMPACT_EVERY,
        state_key: str | None = None,
    ) -> None:
        self.agent = agent
        self.context_type: type[C] = agent.context_type  # type: ignore[assignment]
        self.store: StateStore = store if store is not None else MemoryStore()
        self.session_id = session_id
        self.app = app
        self.compact_every = compact_every
        if state_key is not None:
            self.key = state_key
        else:
            start = ctx if ctx is not None else self.context_type()
            self.key = create_state(self.store, f"{app}/{session_id}", start, chunk=chunk)
        self._handler: AgentHandler | None = None

    @property
    def handler(self) -> AgentHandler:
        """The live instance handler, entering the session on first use (like a new instance)."""
        if self._handler is None:
            handler = AgentHandler(
                self.agent,
                store_factory=lambda _endpoint: self.store,
                compact_every=self.compact_every,
            )
            handler.enter(self.session_id, self.app, "memory://", self.key)
            self._handler = handler
        return self._handler

    def invoke(self, req: BaseModel, *, idempotency_key: str | None = None) -> Any:
        """Invoke the agent with ``req``; returns its validated reply (a ``reply_type``)."""
        key = idempotency_key or uuid.uuid4().hex
        data = encode_request(key, req.model_dump(mode="json"))
        envelope = self.handler.invoke(data)
        return self.agent.reply_type.model_validate(envelope.reply)

    def pending_interrupt(self) -> dict[str, Any] | None:
        """The turn waiting for an answer, as ``AgentSession.pending_interrupt()`` gives it:
        ``{"idempotency_key", "index", "payload"}``, or None."""
        return self.state().pending_interrupt_json()

    def resume(self, answer: Any) -> Any:
        """Answer the paused turn with ``answer`` (JSON or a model) and run it on; returns its
        reply (raises ``Interrupted`` again when it pauses at a later interrupt)."""
        pending = self.pending_interrupt()
        if pending is None:
            raise InvalidStateError(f"session {self.session_id} has no turn waiting for an answer")
        if isinstance(answer, BaseModel):
            answer = answer.model_dump(mode="json")
        data = encode_resume(str(pending["idempotency_key"]), int(pending["index"]), answer)
        envelope = self.handler.invoke(data)
        return self.agent.reply_type.model_validate(envelope.reply)

    def cancel(self) -> None:
        """Drop the turn waiting for an answer, as ``AgentSession.cancel()`` does (no-op when
        there is none)."""
        pending = self.pending_interrupt()
        if pending is not None:
            self.handler.invoke(encode_drop(str(pending["idempotency_key"])))

    def context(self) -> C:
        """The context as a fresh reader sees it (materialized from the store)."""
        return StateHandle(self.store, self.key, self.context_type).context()

    def state(self) -> StateHandle[C]:
        """A fresh reader of the state object (version, summary, lookups)."""
        return StateHandle(self.store, self.key, self.context_type)

    def crash(self) -> None:
        """Drop the instance without leaving (like kill -9); the next invoke starts a new one."""
        if self._handler is not None:
            self._handler.close()
            self._handler = None

    def leave(self) -> None:
        """Leave the session gracefully (runs ``on_session_end``)."""
        if self._handler is not None:
            self._handler.on_session_leave()
            self._handler = None

    def close(self) -> None:
        """Leave the session; the state stays in the store."""
        self.leave()

    def __enter__(self) -> AgentHarness[C]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def __getattr__(name: str) -> Any:
    # hypothesis is a test-time dependency: import the state machine only when asked for.
    if name == "AgentStateMachine":
        from flame_agents.testing._agent_machine import AgentStateMachine

        return AgentStateMachine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
