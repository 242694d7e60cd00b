"""The in-process harness and the state machine helper, driving agents without a runtime."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from agentdefs import Add, Answer, Ask, ChatAgent, ChatContext, CounterAgent, CounterContext, Total
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import rule

from flame_agents.agent import History
from flame_agents.errors import ContextValidationError, TaskFailedError
from flame_agents.testing.agents import AgentHarness, AgentStateMachine


class CounterMachine(AgentStateMachine):
    """The counter agent against a list of additions."""

    agent = CounterAgent

    def initial_model(self) -> list[int]:
        return []

    def apply_model(self, model: list[int], req: Any) -> Any:
        model.append(req.n)
        return None  # the reply carries the pid; compared field by field in `add`

    def check(self, ctx: CounterContext, model: list[int]) -> None:
        assert ctx.count == sum(model)
        assert ctx.added.tolist() == model
        assert len(ctx.added) == len(model)

    @rule(n=st.integers(-5, 5))
    def add(self, n: int) -> None:
        reply = self.step(Add(n=n))
        assert (reply.count, reply.entries) == (sum(self.model), len(self.model))


CounterMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=30, deadline=None)
TestCounterMachine = CounterMachine.TestCase


def test_chat_round_trip_in_process() -> None:
    """The harness runs the handler and commits its context like a service would."""
    with AgentHarness(ChatAgent, ChatContext(system_prompt="be brief")) as h:
        assert h.invoke(Ask(text="hi")) == Answer(text="HI", turns=1)
        assert h.invoke(Ask(text="again")) == Answer(text="AGAIN", turns=2)
        ctx = h.context()
        assert ctx.system_prompt == "be brief" and ctx.turns == 2
        assert [m.text for m in ctx.messages] == ["hi", "again"]


def test_handler_exception_and_invalid_context_leave_state_unchanged() -> None:
    """A failing handler or an invalid context fails the invocation and commits nothing."""
    with AgentHarness(ChatAgent) as h:
        h.invoke(Ask(text="one"))
        version = h.state().version
        with pytest.raises(TaskFailedError, match="ValueError: the handler exploded"):
            h.handler.on_task_invoke("1", h.session_id, _envelope("explode"))
        with pytest.raises(ContextValidationError):
            h.invoke(Ask(text="invalidate"))
        assert h.state().version == version
        assert h.context().turns == 1 and len(h.context().messages) == 1


def _envelope(text: str) -> bytes:
    from flame_agents.agent._envelope import encode_request

    return encode_request("k-" + text, {"text": text})


def test_explicit_key_returns_the_recorded_reply() -> None:
    """Repeating an idempotency key returns the first reply without running handle again."""
    with AgentHarness(CounterAgent) as h:
        first = h.invoke(Add(n=5), idempotency_key="turn-1")
        h.crash()  # a new instance must still know the key
        assert h.invoke(Add(n=5), idempotency_key="turn-1") == first
        assert h.context().count == 5


def test_session_hooks_run_once_per_session_and_per_leave() -> None:
    """on_session_start commits once per session; on_session_end commits on each leave."""
    with AgentHarness(CounterAgent) as h:
        h.invoke(Add())
        h.crash()
        h.invoke(Add())
        h.leave()
        h.invoke(Add())
    ctx = h.context()
    assert (ctx.started, ctx.ended, ctx.count) == (1, 2, 3)


def test_bytes_per_invocation_do_not_grow_with_history() -> None:
    """Patch bytes and amortized bytes per invocation are equal at 1k and 50k messages."""

    def measure(size: int) -> tuple[set[int], float]:
        ctx = CounterContext(added=History(range(size)), count=0)
        with AgentHarness(CounterAgent, ctx, compact_every=16) as h:
            for _ in range(17):  # the first compaction seals the initial history into chunks
                h.invoke(Add(n=1))
            h.store.patch_sizes.clear()
            start = h.store.bytes_written
            for _ in range(256):
                h.invoke(Add(n=1))
            return set(h.store.patch_sizes), (h.store.bytes_written - start) / 256

    small_patches, small_amortized = measure(1_000)
    large_patches, large_amortized = measure(50_000)
    assert max(large_patches) <= max(small_patches) + 8  # only digits of the counter differ
    assert large_amortized <= small_amortized * 1.2


def test_invocation_logs_bind_session_task_and_app(caplog: pytest.LogCaptureFixture) -> None:
    """Commit logs carry session_id, task_id and app."""
    with AgentHarness(CounterAgent, app="counter-app", session_id="s-1") as h:
        h.invoke(Add())
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="flame_agents"):
            h.handler.on_task_invoke("7", "s-1", _counter_envelope())
    logs = [getattr(r, "flame_agents_event", {}) for r in caplog.records]
    committed = [e for e in logs if e.get("event") == "invocation committed"]
    assert committed and committed[0]["session_id"] == "s-1"
    assert committed[0]["task_id"] == "7" and committed[0]["app"] == "counter-app"


def _counter_envelope() -> bytes:
    from flame_agents.agent._envelope import encode_request

    return encode_request("log-key", Add(n=1).model_dump(mode="json"))


def test_reply_type_is_validated() -> None:
    """The harness returns the agent's reply type."""
    with AgentHarness(CounterAgent) as h:
        assert isinstance(h.invoke(Add(n=2)), Total)
