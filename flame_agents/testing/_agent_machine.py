"""``AgentStateMachine``: a hypothesis state machine checking an agent against a plain model.

Kept apart from :mod:`flame_agents.testing.agents` because it needs hypothesis, a test-time
dependency; ``flame_agents.testing.agents.AgentStateMachine`` imports it on first use.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from pydantic import BaseModel

from flame_agents.agent._agent import Agent
from flame_agents.agent._context import ContextModel
from flame_agents.testing.agents import AgentHarness

__all__ = ["AgentStateMachine"]


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
