"""Test helpers for agents: run one in-process with no runtime, and drive it with hypothesis.

:class:`AgentHarness` runs an :class:`~flame_agents.Agent` through exactly the commit path its
service process uses (the same handler, state journal and envelopes) against an in-memory store,
so unit tests need no runtime. :class:`AgentStateMachine` is a hypothesis
``RuleBasedStateMachine`` that checks an agent against a plain in-memory model of its context,
while also crashing the instance, replaying idempotency keys and compacting along the way.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar, Generic, TypeVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from pydantic import BaseModel

from flame_agents.agent._agent import Agent
from flame_agents.agent._context import ContextModel
from flame_agents.agent._envelope import encode_request
from flame_agents.agent._journal import DEFAULT_CHUNK
from flame_agents.agent._server import AgentHandler
from flame_agents.agent._state import DEFAULT_COMPACT_EVERY, StateHandle, initial_base
from flame_agents.agent._store import MemoryStore

__all__ = ["AgentHarness", "AgentStateMachine"]

C = TypeVar("C", bound=ContextModel)


class AgentHarness(Generic[C]):
    """One agent session served in-process: ``invoke`` and ``context`` like an AgentSession.

    ``chunk`` and ``compact_every`` default to the production values; tests make them small to
    exercise sealing and compaction with few invocations.
    """

    def __init__(
        self,
        agent: type[Agent[C]],
        ctx: C | None = None,
        *,
        store: MemoryStore | None = None,
        session_id: str = "test-session",
        app: str = "test-agent",
        chunk: int = DEFAULT_CHUNK,
        compact_every: int = DEFAULT_COMPACT_EVERY,
    ) -> None:
        self.agent = agent
        self.context_type: type[C] = agent.context_type  # type: ignore[assignment]
        self.store = store or MemoryStore()
        self.session_id = session_id
        self.app = app
        self.compact_every = compact_every
        start = ctx if ctx is not None else self.context_type()
        self.key = self.store.create(f"{app}/{session_id}", initial_base(start, chunk=chunk))
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


class AgentStateMachine(RuleBasedStateMachine):
    """Check an agent against a plain model of its context, with crashes and replays mixed in.

    Subclass it, set :attr:`agent`, implement :meth:`initial_model`, :meth:`apply_model` and
    :meth:`check`, and add ``@rule`` methods that call :meth:`step` with requests::

        class CounterMachine(AgentStateMachine):
            agent = CounterAgent

            def initial_model(self) -> list[int]:
                return []

            def apply_model(self, model: list[int], req: Add) -> Any:
                model.append(req.n)
                return Total(total=sum(model))

            def check(self, ctx: CounterContext, model: list[int]) -> None:
                assert list(ctx.added) == model

            @rule(n=st.integers())
            def add(self, n: int) -> None:
                self.step(Add(n=n))

        TestCounter = CounterMachine.TestCase

    The built-in rules crash the instance (a new one resumes from the store), replay an earlier
    idempotency key (the recorded reply comes back and nothing changes), and leave gracefully.
    Small chunks and a short compaction interval make every run cross sealing and compaction.
    """

    agent: ClassVar[type[Agent[Any]]]
    chunk: ClassVar[int] = 3
    compact_every: ClassVar[int] = 4

    def __init__(self) -> None:
        super().__init__()
        self.harness: AgentHarness[Any] = AgentHarness(
            self.agent,
            self.initial_context(),
            chunk=self.chunk,
            compact_every=self.compact_every,
        )
        self.model = self.initial_model()
        self.history: list[tuple[str, BaseModel, Any]] = []

    # -- to implement -----------------------------------------------------------------------

    def initial_context(self) -> ContextModel:
        """The context the session starts with (default: the context model's defaults)."""
        return self.agent.context_type()

    def initial_model(self) -> Any:
        """The plain model's starting value."""
        raise NotImplementedError

    def apply_model(self, model: Any, req: BaseModel) -> Any:
        """Apply ``req`` to ``model`` (mutate it); return the expected reply or None to skip."""
        raise NotImplementedError

    def check(self, ctx: Any, model: Any) -> None:
        """Assert that the agent's context ``ctx`` matches ``model``."""
        raise NotImplementedError

    # -- helpers and built-in rules ---------------------------------------------------------

    def step(self, req: BaseModel) -> Any:
        """Invoke the agent with a fresh key and check its reply against the model."""
        key = uuid.uuid4().hex
        reply = self.harness.invoke(req, idempotency_key=key)
        expected = self.apply_model(self.model, req)
        if expected is not None:
            assert reply == expected, f"reply {reply!r} != model {expected!r}"
        self.history.append((key, req, reply))
        return reply

    @rule()
    def crash_instance(self) -> None:
        """A new instance must resume from the stored state alone."""
        self.harness.crash()

    @precondition(lambda self: bool(self.history))
    @rule(pick=st.integers(min_value=0))
    def replay_earlier_key(self, pick: int) -> None:
        """A repeated key returns the recorded reply and changes nothing."""
        key, req, reply = self.history[pick % len(self.history)]
        version = self.harness.state().version
        assert self.harness.invoke(req, idempotency_key=key) == reply
        assert self.harness.state().version == version

    @invariant()
    def context_matches_model(self) -> None:
        self.check(self.harness.context(), self.model)

    def teardown(self) -> None:
        self.harness.close()
