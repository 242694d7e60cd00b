"""The agent state machine under faults, over the in-memory store and a real cache server, and
the commit-path guarantees it found: ambiguous commits resolve, reused keys are checked, and a
new session's base is bounded from the start."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import rule, run_state_machine_as_test
from pydantic import BaseModel, Field

from flame_agents import cache
from flame_agents.agent import Agent, ContextModel, History
from flame_agents.agent._envelope import encode_request, error_from_message
from flame_agents.agent._journal import decode_base
from flame_agents.agent._state import StateHandle
from flame_agents.agent._state_objects import create_state
from flame_agents.agent._store import CacheStore, MemoryStore
from flame_agents.errors import (
    CacheError,
    InvalidArgumentError,
    RetryableError,
    RuntimeUnavailableError,
    TaskFailedError,
)
from flame_agents.runtime.cache.server import CacheServer
from flame_agents.testing._faults import Fault, FaultyStore
from flame_agents.testing.agents import AgentHarness, AgentStateMachine


class LedgerContext(ContextModel):
    total: int = 0
    entries: History[int] = Field(default_factory=History)
    starts: int = 0


class Entry(BaseModel):
    n: int
    fail: bool = False
    infra: bool = False


class Balance(BaseModel):
    total: int
    entries: int


class LedgerAgent(Agent[LedgerContext]):
    """Adds ``n``; fails on ``fail`` (after changing its copy), or with a retryable class."""

    def on_session_start(self, ctx: LedgerContext) -> None:
        ctx.starts += 1

    def handle(self, req: Entry, ctx: LedgerContext) -> Balance:
        ctx.total += req.n
        ctx.entries.append(req.n)
        if req.fail:
            raise ValueError(f"entry {req.n} refused")
        if req.infra:
            raise RuntimeUnavailableError("the handler's own client failed")
        return Balance(total=ctx.total, entries=len(ctx.entries))


START = list(range(7))  # with chunk 3: two chunks sealed when the session is created


class LedgerMachine(AgentStateMachine):
    """The ledger agent against a list of entries, under every built-in fault rule."""

    agent = LedgerAgent

    def initial_context(self) -> ContextModel:
        return LedgerContext(total=sum(START), entries=History(START))

    def initial_model(self) -> list[int]:
        return list(START)

    def apply_model(self, model: list[int], req: Any) -> Balance:
        model.append(req.n)
        return Balance(total=sum(model), entries=len(model))

    def check(self, ctx: LedgerContext, model: list[int]) -> None:
        assert ctx.entries.tolist() == model
        assert ctx.total == sum(model) and len(ctx.entries) == len(model)
        # on_session_start: once per session, whatever crashed, from the first instance on
        assert ctx.starts == (1 if self.history else ctx.starts) and ctx.starts <= 1

    def requests(self) -> st.SearchStrategy[BaseModel]:
        return st.builds(Entry, n=st.integers(-9, 9))

    def failing_requests(self) -> st.SearchStrategy[BaseModel]:
        return st.builds(Entry, n=st.integers(-9, 9), fail=st.just(True))

    @rule(n=st.integers(-9, 9))
    def add(self, n: int) -> None:
        self.step(Entry(n=n))


LedgerMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
TestLedgerMachine = LedgerMachine.TestCase


@pytest.fixture
def cache_server(tmp_path: Path) -> Iterator[CacheServer]:
    """A real object cache server on a free port, stopped at the end."""
    server = CacheServer(tmp_path / "cache", port=0)
    server.serve_in_background()
    yield server
    server.shutdown()
    cache.reset_clients()


def test_ledger_machine_over_the_object_cache(cache_server: CacheServer) -> None:
    """The same machine, faults and races included, holds over CacheStore and a real cache."""
    run_state_machine_as_test(
        lambda: LedgerMachine(store=CacheStore(cache_server.endpoint)),
        settings=settings(
            max_examples=25,
            stateful_step_count=15,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


def _harness(store: FaultyStore) -> AgentHarness[LedgerContext]:
    harness = AgentHarness(LedgerAgent, store=store)
    harness.invoke(Entry(n=1))  # entered, on_session_start committed
    return harness


def test_store_error_after_the_patch_landed_returns_the_committed_reply() -> None:
    """A store error after the commit's patch landed is resolved by re-reading: success, once."""
    store = FaultyStore(MemoryStore())
    with _harness(store) as h:
        store.inject(Fault("append", "after", "error", CacheError))
        assert h.invoke(Entry(n=2), idempotency_key="k") == Balance(total=3, entries=2)
        assert store.fired and not store.pending
        assert h.invoke(Entry(n=2), idempotency_key="k") == Balance(total=3, entries=2)
        assert h.context().entries.tolist() == [1, 2]
        assert h.state().committed_keys().count("k") == 1


def test_store_error_before_the_patch_landed_writes_it_again() -> None:
    """A store error before the patch landed (state unchanged) commits the turn once."""
    store = FaultyStore(MemoryStore())
    with _harness(store) as h:
        store.inject(Fault("append", "before", "error", RuntimeUnavailableError))
        assert h.invoke(Entry(n=2), idempotency_key="k") == Balance(total=3, entries=2)
        assert store.fired and h.context().entries.tolist() == [1, 2]


def test_unresolvable_commit_outcome_reaches_the_client_as_retryable() -> None:
    """When the re-read fails too, the client gets a retryable error, and its retry with the
    same key answers the committed turn; a handler's own retryable-class error is not retried."""
    store = FaultyStore(MemoryStore())
    with _harness(store) as h:
        store.inject(Fault("append", "after", "error", CacheError))
        store.inject(Fault("fetch", "before", "error", CacheError, skip=1))  # the re-read
        data = encode_request("k", Entry(n=2).model_dump(mode="json"))
        with pytest.raises(TaskFailedError) as failed:
            h.handler.on_task_invoke("1", h.session_id, data)
        error = error_from_message(failed.value.message)
        assert isinstance(error, RetryableError) and error.retryable
        assert "retry with the same idempotency key" in error.message
        assert h.invoke(Entry(n=2), idempotency_key="k") == Balance(total=3, entries=2)
        assert h.context().entries.tolist() == [1, 2]

        infra = encode_request("k2", Entry(n=5, infra=True).model_dump(mode="json"))
        with pytest.raises(TaskFailedError) as failed:
            h.handler.on_task_invoke("2", h.session_id, infra)
        error = error_from_message(failed.value.message)
        assert type(error) is TaskFailedError and not error.retryable
        assert error.message.startswith("RuntimeUnavailableError: the handler's own client")


def test_key_reused_with_a_different_request_is_refused() -> None:
    """A committed key sent with a different request raises InvalidArgumentError, changing
    nothing; with its own request (or recorded without a digest) it returns the recorded reply."""
    with AgentHarness(LedgerAgent) as h:
        first = h.invoke(Entry(n=5), idempotency_key="turn-1")
        h.crash()
        with pytest.raises(InvalidArgumentError, match="already used by a different request"):
            h.invoke(Entry(n=100), idempotency_key="turn-1")
        assert h.invoke(Entry(n=5), idempotency_key="turn-1") == first
        assert h.context().entries.tolist() == [5]
        # A key recorded without a request digest (state written before digests) replays as is.
        old = h.state()
        old.commit(old.working_copy(), idempotency_key="old", reply={"total": 0, "entries": 0})
        assert h.invoke(Entry(n=1), idempotency_key="old") == Balance(total=0, entries=0)


def _base_bytes(store: MemoryStore, items: list[Any]) -> int:
    key = create_state(store, "app/s", LedgerContext(entries=History(items)))
    return len(store.read(key))


def test_new_state_base_holds_less_than_a_chunk_from_creation() -> None:
    """A session created with 50,000 history items stores a base no bigger than one created
    with a chunk's worth, and reads back the same context."""
    store = MemoryStore()
    big = [7] * 50_000
    big_bytes = _base_bytes(store, big)
    chunk_bytes = _base_bytes(store, [7] * 255)  # DEFAULT_CHUNK - 1 items stay in the tail
    assert big_bytes <= chunk_bytes + 16  # the sealed count's digits
    assert big_bytes < 2_000
    key = create_state(store, "app/s", LedgerContext(total=3, entries=History(range(50_000))))
    base = decode_base(store.read(key), version=1)
    assert base.histories["entries"].length(base.chunk) == 50_000
    ctx = StateHandle(store, key, LedgerContext).context()
    assert ctx.total == 3 and ctx.entries.tolist() == list(range(50_000))


def test_new_state_base_is_bounded_in_the_object_cache(cache_server: CacheServer) -> None:
    """create_state over the real cache: the stored base is small and the context reads back."""
    store = CacheStore(cache_server.endpoint)
    key = create_state(store, "app/s", LedgerContext(entries=History(range(50_000))))
    assert len(store.read(key)) < 2_000
    ctx = StateHandle(store, key, LedgerContext).context()
    assert ctx.entries[-1] == 49_999 and ctx.entries.tolist() == list(range(50_000))
