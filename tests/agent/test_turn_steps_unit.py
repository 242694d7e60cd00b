"""Durable turns in-process (AgentHarness over a MemoryStore): steps replay, reconcile, interrupts
and their resume or drop, and what compaction, migration and the open-turn bound keep of them.

A death inside a step is simulated by :class:`Die`, a BaseException raised out of the step's
function (nothing of the code under test catches it), followed by ``h.crash()``: the next invoke
runs on a fresh instance from the stored state alone, as the runtime's re-dispatch does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel, Field

from flame_agents import Agent, AsyncTurn, ContextModel, Interrupted, Turn
from flame_agents.agent import History
from flame_agents.agent import _turn as turn_module
from flame_agents.agent._journal import decode_base
from flame_agents.agent._progress import MAX_OPEN_TURNS
from flame_agents.agent._store import MemoryStore
from flame_agents.agent.testing_support import encode_request, error_from_message
from flame_agents.errors import (
    CacheError,
    FlameAgentsError,
    InvalidArgumentError,
    InvalidStateError,
    RetryableError,
    TaskFailedError,
)
from flame_agents.testing._faults import Fault, FaultyStore
from flame_agents.testing.agents import AgentHarness


class Die(BaseException):
    """The process died here (raised out of a step's function, caught by nothing)."""


calls: list[str] = []
"""Every call of a step function (its step name), in order, across instances."""
die_points: set[str] = set()
"""Step names whose function dies on its next call (then the name is removed)."""
ledger: list[str] = []
"""External effects done by steps (their step keys)."""
reconciled: list[str] = []
"""Keys reconcile hooks were called with."""


@pytest.fixture(autouse=True)
def _fresh_records() -> Iterator[None]:
    for record in (calls, die_points, ledger, reconciled):
        record.clear()
    yield


def work(name: str, value: Any = None) -> Any:
    """A step function: counted, dies once when ``name`` is armed in die_points."""
    calls.append(name)
    if name in die_points:
        die_points.discard(name)
        raise Die(name)
    return f"{name}:{value}" if value is not None else name


class Notes(ContextModel):
    done: History[str] = Field(default_factory=History)
    count: int = 0


class Go(BaseModel):
    tag: str = "t"
    steps: int = 3


class Went(BaseModel):
    results: list[Any]
    keys: list[str]
    count: int


def die_once(point: str) -> None:
    """Die at ``point`` of the handler when it is armed in die_points."""
    if point in die_points:
        die_points.discard(point)
        raise Die(point)


class Steps(Agent[Notes]):
    """Takes ``steps`` steps named s1..sN (dying between them when armed), appends its tag."""

    def handle(self, req: Go, ctx: Notes, turn: Turn) -> Went:
        results, keys = [], []
        for i in range(1, req.steps + 1):
            die_once(f"before-s{i}")
            results.append(turn.step(f"s{i}", work, f"s{i}", req.tag))
            keys.append(turn.key(f"s{i}"))
        die_once("before-commit")
        ctx.done.append(req.tag)
        ctx.count += 1
        return Went(results=results, keys=keys, count=ctx.count)


def test_completed_steps_replay_without_calling_their_function() -> None:
    """A turn that died inside step 3 runs again on a fresh instance: steps 1-2 return their
    recorded results without running, step 3 (intent, no result, no reconcile) runs again, and
    the turn commits once."""
    with AgentHarness(Steps) as h:
        die_points.add("s3")
        with pytest.raises(Die):
            h.invoke(Go(tag="a"), idempotency_key="turn-1")
        h.crash()
        assert h.context().count == 0 and h.state().recorded("turn-1") is None
        progress = h.state().journal.turns["turn-1"]
        assert set(progress.steps) == {"s1", "s2"} and progress.intents == ["s3"]
        reply = h.invoke(Go(tag="a"), idempotency_key="turn-1")
        assert reply.results == ["s1:a", "s2:a", "s3:a"]
        assert calls == ["s1", "s2", "s3", "s3"]
        assert h.context().done.tolist() == ["a"]
        assert h.invoke(Go(tag="a"), idempotency_key="turn-1") == reply  # committed: replayed
        assert calls == ["s1", "s2", "s3", "s3"]
        assert not h.state().journal.turns, "the commit ended the turn's progress"


@pytest.mark.parametrize("point", ["before-s1", "before-s2", "before-s3", "before-commit"])
def test_a_turn_that_died_between_steps_runs_only_the_rest(point: str) -> None:
    """A handler that died between steps (outside any step function) re-runs none of the steps
    that completed, and its context changes land once."""
    with AgentHarness(Steps) as h:
        die_points.add(point)
        with pytest.raises(Die):
            h.invoke(Go(tag="b"), idempotency_key="k")
        h.crash()
        first_calls = list(calls)
        reply = h.invoke(Go(tag="b"), idempotency_key="k")
        assert reply.results == ["s1:b", "s2:b", "s3:b"] and reply.count == 1
        assert sorted(calls) == ["s1", "s2", "s3"], (
            f"{first_calls} then {calls[len(first_calls) :]}"
        )
        assert h.context().done.tolist() == ["b"]


def test_step_keys_are_stable_and_distinct() -> None:
    """turn.key(name) is the same on every run of a turn and differs between steps, turns and
    sessions."""
    with AgentHarness(Steps) as h, AgentHarness(Steps, session_id="other") as other:
        die_points.add("before-commit")
        with pytest.raises(Die):
            h.invoke(Go(), idempotency_key="k")
        h.crash()
        keys = h.invoke(Go(), idempotency_key="k").keys
        assert len(set(keys)) == 3
        assert h.invoke(Go(), idempotency_key="k2").keys != keys
        assert other.invoke(Go(), idempotency_key="k").keys != keys


class Inner(BaseModel):
    words: list[str]


class Draft(BaseModel):
    text: str
    inner: Inner


class Drafted(BaseModel):
    kinds: list[str]
    text: str


def make_draft(text: str) -> Draft:
    calls.append("draft")
    return Draft(text=text, inner=Inner(words=text.split()))


def raw_values() -> dict[str, Any]:
    calls.append("raw")
    return {"n": 1, "f": 0.5, "items": [True, None, "x"]}


class Drafter(Agent[Notes]):
    """Steps returning a pydantic model and plain JSON; reports the classes it got back."""

    def handle(self, req: Go, ctx: Notes, turn: Turn) -> Drafted:
        draft = turn.step("draft", make_draft, req.tag)
        raw = turn.step("raw", raw_values)
        die_once("before-commit")
        assert raw == {"n": 1, "f": 0.5, "items": [True, None, "x"]}
        ctx.done.append(draft.text)
        return Drafted(kinds=[type(draft).__name__, type(draft.inner).__name__], text=draft.text)


def test_model_results_come_back_as_their_class() -> None:
    """A step returning a pydantic model gives the handler the model, on the first run and on
    a replay in a process that has to import the class by its recorded name."""
    with AgentHarness(Drafter) as h:
        die_points.add("before-commit")
        with pytest.raises(Die):
            h.invoke(Go(tag="two words"), idempotency_key="k")
        h.crash()
        turn_module._MODEL_TYPES.clear()  # as in a fresh process: found by import
        reply = h.invoke(Go(tag="two words"), idempotency_key="k")
        assert reply == Drafted(kinds=["Draft", "Inner"], text="two words")
        assert calls == ["draft", "raw"]
        assert h.state().recorded("k") is not None


class Bad(BaseModel):
    what: str


class BadResults(Agent[Notes]):
    """A step whose result is not JSON (what it returns is chosen by the request)."""

    def handle(self, req: Bad, ctx: Notes, turn: Turn) -> Went:
        values: dict[str, Any] = {"set": {1, 2}, "nan": float("nan"), "object": object()}
        ctx.count += 1
        turn.step("bad", lambda: values[req.what])
        return Went(results=[], keys=[], count=ctx.count)


@pytest.mark.parametrize("what", ["set", "nan", "object"])
def test_non_json_step_result_is_refused_and_nothing_committed(what: str) -> None:
    """A step result that is not JSON nor a model raises InvalidArgumentError naming the step;
    the turn commits nothing and no result is recorded for the step."""
    with AgentHarness(BadResults) as h:
        with pytest.raises(InvalidArgumentError, match="result of step 'bad' must be JSON"):
            h.invoke(Bad(what=what), idempotency_key="k")
        state = h.state()
        assert state.recorded("k") is None and h.context().count == 0
        progress = state.journal.turns["k"]
        assert progress.steps == {} and progress.intents == ["bad"]


class Twice(Agent[Notes]):
    def handle(self, req: Go, ctx: Notes, turn: Turn) -> Went:
        ctx.count += 1
        turn.step("same", work, "same")
        turn.step("same", work, "same")
        return Went(results=[], keys=[], count=ctx.count)


def test_repeated_step_name_in_a_turn_is_an_error() -> None:
    """A second step of the same name in one turn raises InvalidArgumentError before its
    function runs; nothing is committed."""
    with AgentHarness(Twice) as h:
        with pytest.raises(InvalidArgumentError, match="step 'same' already ran in this turn"):
            h.invoke(Go(), idempotency_key="k")
        assert calls == ["same"]
        assert h.state().recorded("k") is None and h.context().count == 0


class Pay(BaseModel):
    amount: int


class Paid(BaseModel):
    result: Any
    key: str


def charge(key: str, amount: int) -> dict[str, Any]:
    """An external effect: the ledger gets the step key; dies once after or before it."""
    calls.append("charge")
    die_once("charge-before-effect")
    ledger.append(key)
    die_once("charge-after-effect")
    return {"charged": amount, "key": key}


def was_charged(key: str) -> dict[str, Any] | None:
    reconciled.append(key)
    return {"charged": "reconciled", "key": key} if key in ledger else None


class Charger(Agent[Notes]):
    def handle(self, req: Pay, ctx: Notes, turn: Turn) -> Paid:
        key = turn.key("charge")
        result = turn.step("charge", charge, key, req.amount, reconcile=was_charged)
        ctx.done.append(json.dumps(result, sort_keys=True))
        return Paid(result=result, key=key)


def test_reconcile_answers_a_step_that_died_after_its_effect() -> None:
    """A re-run finding a step's intent without a result calls reconcile(turn.key(name)); its
    non-None result is recorded and returned, and the function does not run again."""
    with AgentHarness(Charger) as h:
        die_points.add("charge-after-effect")
        with pytest.raises(Die):
            h.invoke(Pay(amount=5), idempotency_key="k")
        h.crash()
        assert reconciled == []
        reply = h.invoke(Pay(amount=5), idempotency_key="k")
        assert reconciled == [reply.key] and ledger == [reply.key]
        assert reply.result == {"charged": "reconciled", "key": reply.key}
        assert calls == ["charge"]
        assert h.context().done.tolist() == [json.dumps(reply.result, sort_keys=True)]
        h.crash()
        assert h.invoke(Pay(amount=5), idempotency_key="k") == reply
        assert reconciled == [reply.key], "a committed turn does not reconcile again"


def test_reconcile_none_runs_the_step_again() -> None:
    """reconcile returning None (the effect did not happen) runs the function again, once."""
    with AgentHarness(Charger) as h:
        die_points.add("charge-before-effect")
        with pytest.raises(Die):
            h.invoke(Pay(amount=7), idempotency_key="k")
        h.crash()
        reply = h.invoke(Pay(amount=7), idempotency_key="k")
        assert reconciled == [reply.key] and ledger == [reply.key]
        assert reply.result == {"charged": 7, "key": reply.key}
        assert calls == ["charge", "charge"]


def test_reconcile_is_not_called_for_a_step_that_did_not_start() -> None:
    """A first run, and a re-run after a death before the step, never call reconcile."""
    with AgentHarness(Charger) as h:
        assert h.invoke(Pay(amount=1)).result["charged"] == 1
        assert reconciled == [] and calls == ["charge"]


class Approval(BaseModel):
    question: str


class Publish(BaseModel):
    text: str
    asks: int = 1
    """How many interrupts the turn raises (each must be answered yes to publish)."""


class Published(BaseModel):
    text: str
    answers: list[Any]
    published: bool


class Publisher(Agent[Notes]):
    """Drafts (a step), asks for approval ``asks`` times, then publishes (a step)."""

    def handle(self, req: Publish, ctx: Notes, turn: Turn) -> Published:
        draft = turn.step("draft", work, "draft", req.text)
        die_once("after-draft")
        answers = [
            turn.interrupt(Approval(question=f"{i}: publish {draft}?")) for i in range(req.asks)
        ]
        published = all(isinstance(a, dict) and a.get("yes") for a in answers)
        if published:
            turn.step("publish", work, "publish", req.text)
            ctx.done.append(req.text)
        ctx.count += 1
        return Published(text=req.text, answers=answers, published=published)


def test_interrupt_then_resume_on_a_fresh_instance() -> None:
    """interrupt() pauses the turn durably: the client gets Interrupted with the payload, the
    context is unchanged; resume(answer) on a fresh instance replays the draft step, returns
    the answer from interrupt() and commits the turn once."""
    with AgentHarness(Publisher) as h:
        with pytest.raises(Interrupted) as paused:
            h.invoke(Publish(text="hello"), idempotency_key="turn-1")
        assert paused.value.payload == {"question": "0: publish draft:hello?"}
        assert paused.value.idempotency_key == "turn-1"
        assert h.pending_interrupt() == {
            "idempotency_key": "turn-1",
            "index": 0,
            "payload": {"question": "0: publish draft:hello?"},
        }
        assert h.context().count == 0 and h.state().recorded("turn-1") is None
        h.crash()
        reply = h.resume({"yes": True})
        assert reply == Published(text="hello", answers=[{"yes": True}], published=True)
        assert calls == ["draft", "publish"]
        assert h.pending_interrupt() is None
        assert h.context().done.tolist() == ["hello"] and h.context().count == 1
        assert h.invoke(Publish(text="hello"), idempotency_key="turn-1") == reply  # replayed
        with pytest.raises(InvalidStateError, match="no turn waiting for an answer"):
            h.resume({"yes": True})


def test_view_of_the_state_shows_the_pending_interrupt() -> None:
    """describe_agent_state (``flame-agents view -s``) reports open turns and the pending
    interrupt with its payload, read without the agent's classes."""
    from flame_agents.agent.cli_support import describe_agent_state
    from flame_agents.cache import ObjectRef

    with AgentHarness(Publisher) as h:
        ref = ObjectRef("memory://", h.key, 0).encode()
        view = describe_agent_state(ref, store=h.store)
        assert view is not None and view["pending_interrupt"] is None and view["open_turns"] == 0
        with pytest.raises(Interrupted):
            h.invoke(Publish(text="v"), idempotency_key="k")
        view = describe_agent_state(ref, store=h.store)
        assert view is not None and view["open_turns"] == 1
        assert view["pending_interrupt"] == {
            "idempotency_key": "k",
            "index": 0,
            "payload": {"question": "0: publish draft:v?"},
        }


def test_two_interrupts_in_one_turn_are_answered_in_order() -> None:
    """A turn that interrupts twice raises Interrupted again on the first resume (with the
    second payload) and completes on the second; each answer reaches its interrupt."""
    with AgentHarness(Publisher) as h:
        with pytest.raises(Interrupted):
            h.invoke(Publish(text="x", asks=2), idempotency_key="k")
        with pytest.raises(Interrupted) as second:
            h.resume({"yes": True})
        assert second.value.payload == {"question": "1: publish draft:x?"}
        assert h.pending_interrupt() == {
            "idempotency_key": "k",
            "index": 1,
            "payload": {"question": "1: publish draft:x?"},
        }
        reply = h.resume(Approval(question="yes"))  # a model answer arrives as its dict
        assert reply.answers == [{"yes": True}, {"question": "yes"}] and not reply.published
        assert calls == ["draft"]


def test_a_repeated_resume_of_an_answered_interrupt_runs_the_turn_once() -> None:
    """The same resume delivered twice (a retry after the first one's instance died) records
    the answer once and commits the turn once."""
    from flame_agents.agent.testing_support import encode_resume

    with AgentHarness(Publisher) as h:
        die_points.add("publish")
        with pytest.raises(Interrupted):
            h.invoke(Publish(text="r"), idempotency_key="k")
        data = encode_resume("k", 0, {"yes": True})
        with pytest.raises(Die):
            h.handler.invoke(data)
        h.crash()
        assert h.pending_interrupt() is None, "the answer was recorded before the turn ran on"
        envelope = h.handler.invoke(data)
        assert envelope.reply["published"] is True and not envelope.replayed
        assert h.handler.invoke(data).replayed
        assert calls == ["draft", "publish", "publish"]
        assert h.context().done.tolist() == ["r"]


def test_pending_interrupt_refuses_a_new_invoke_and_repeats_for_its_own_key() -> None:
    """While a turn waits: a new invocation raises InvalidStateError naming resume and cancel;
    a retry of the paused key raises Interrupted again with its payload; neither writes."""
    with AgentHarness(Publisher) as h:
        with pytest.raises(Interrupted):
            h.invoke(Publish(text="p"), idempotency_key="paused")
        version = h.state().version
        with pytest.raises(InvalidStateError, match=r"resume\(answer\).*cancel\(\)") as refused:
            h.invoke(Publish(text="q"), idempotency_key="new")
        assert refused.value.idempotency_key == "paused"
        with pytest.raises(Interrupted) as again:
            h.invoke(Publish(text="p"), idempotency_key="paused")
        assert again.value.payload == {"question": "0: publish draft:p?"}
        assert h.state().version == version and calls == ["draft"]


def test_cancel_drops_the_pending_interrupt_and_the_session_serves_again() -> None:
    """cancel() drops the paused turn (its interrupt and its steps): nothing of it is
    committed, the next invoke runs, and the dropped key runs from the top if sent again."""
    with AgentHarness(Publisher) as h:
        with pytest.raises(Interrupted):
            h.invoke(Publish(text="dropped"), idempotency_key="k")
        h.cancel()
        assert h.pending_interrupt() is None and "k" not in h.state().journal.turns
        h.cancel()  # nothing pending: a no-op
        assert h.invoke(Publish(text="next", asks=0)).published
        assert h.context().done.tolist() == ["next"]
        with pytest.raises(Interrupted):
            h.invoke(Publish(text="dropped"), idempotency_key="k")
        assert calls == ["draft", "draft", "publish", "draft"]


def test_interrupt_payload_must_be_json() -> None:
    """An interrupt payload that is not JSON is refused (InvalidArgumentError), not recorded."""

    class Odd(Agent[Notes]):
        def handle(self, req: Go, ctx: Notes, turn: Turn) -> Went:
            turn.interrupt({"when": object()})
            return Went(results=[], keys=[], count=0)

    with AgentHarness(Odd) as h:
        with pytest.raises(InvalidArgumentError, match="interrupt payload must be JSON"):
            h.invoke(Go())
        assert h.pending_interrupt() is None


def test_compaction_keeps_an_open_turn_and_a_pending_interrupt_in_the_base() -> None:
    """Compactions (every 2 patches) between a turn's death and its re-run, and while a turn
    waits for an answer, keep their progress in the new base: the re-run replays its steps and
    the resume replays the draft."""
    with AgentHarness(Publisher, compact_every=2) as h:
        die_points.add("after-draft")
        with pytest.raises(Die):
            h.invoke(Publish(text="open", asks=0), idempotency_key="open")
        h.crash()
        for i in range(4):  # committed turns, compacting
            h.invoke(Publish(text=f"c{i}", asks=0))
        store = h.store
        assert isinstance(store, MemoryStore)
        base = decode_base(store.read(h.key), version=0)
        assert "open" in base.turns and base.turns["open"].steps
        assert store.patch_count(h.key) < 2

        with pytest.raises(Interrupted):
            h.invoke(Publish(text="wait"), idempotency_key="wait")
        assert h.state().compact()  # e.g. another instance's compaction, while the turn waits
        base = decode_base(store.read(h.key), version=0)
        assert base.turns["wait"].pending() == (0, {"question": "0: publish draft:wait?"})
        h.crash()
        draft_calls = calls.count("draft")
        assert h.resume({"yes": True}).published
        assert calls.count("draft") == draft_calls, "the resumed turn replayed its draft"
        assert h.invoke(Publish(text="open", asks=0), idempotency_key="open").published
        assert calls.count("draft") == draft_calls, "the re-run turn replayed its draft"
        assert h.context().done.tolist() == ["c0", "c1", "c2", "c3", "wait", "open"]
        h.invoke(Publish(text="last", asks=0))  # compacts again: no open turn left in the base
        assert h.state().compact()
        assert "turns" not in json.loads(store.read(h.key))


class NotesV2(ContextModel):
    schema_version = 2
    done: History[str] = Field(default_factory=History)
    count: int = 0
    migrated: bool = False


@NotesV2.migration(from_version=1)
def _mark(state: dict[str, Any]) -> dict[str, Any]:
    return {**state, "migrated": True}


class PublisherV2(Agent[NotesV2]):
    """Publisher over the next schema of its context (same steps, same interrupt)."""

    def handle(self, req: Publish, ctx: NotesV2, turn: Turn) -> Published:
        draft = turn.step("draft", work, "draft", req.text)
        answers = [
            turn.interrupt(Approval(question=f"{i}: publish {draft}?")) for i in range(req.asks)
        ]
        published = all(isinstance(a, dict) and a.get("yes") for a in answers)
        if published:
            turn.step("publish", work, "publish", req.text)
            ctx.done.append(req.text)
        ctx.count += 1
        return Published(text=req.text, answers=answers, published=published)


def test_upgrade_keeps_an_open_turn_and_a_pending_interrupt() -> None:
    """A newer agent version taking over the session rewrites its state at the new schema and
    keeps the turns in progress: the pending interrupt is still there and resumes with the
    draft replayed; the open turn re-runs without its completed step."""
    store = MemoryStore()
    with AgentHarness(Publisher, store=store, compact_every=1000) as old:
        die_points.add("after-draft")
        with pytest.raises(Die):
            old.invoke(Publish(text="open", asks=0), idempotency_key="open")
        old.crash()
        with pytest.raises(Interrupted):
            old.invoke(Publish(text="wait"), idempotency_key="wait")
        pending = old.pending_interrupt()
        old.crash()
        key = old.key
    new = AgentHarness(PublisherV2, store=store, state_key=key)
    with new:
        new.handler  # noqa: B018  (enters: upgrades the state)
        state = new.state()
        assert state.journal.schema == 2 and state.journal.gen == 1
        assert new.pending_interrupt() == pending
        assert new.resume({"yes": True}).published
        assert new.invoke(Publish(text="open", asks=0), idempotency_key="open").published
        assert calls == ["draft", "draft", "publish", "publish"]
        ctx = new.context()
        assert ctx.migrated and ctx.done.tolist() == ["wait", "open"]


def test_a_base_keeps_at_most_max_open_turns_besides_a_waiting_one() -> None:
    """Turns abandoned by their clients are bounded in a base (the newest MAX_OPEN_TURNS are
    kept; an older one re-runs from the top), while a turn waiting for an answer is always
    kept."""
    extra = 3
    with AgentHarness(Publisher, compact_every=1000) as h:
        keys = [f"open-{i:02d}" for i in range(MAX_OPEN_TURNS + extra)]
        for key in keys:
            die_points.add("after-draft")
            with pytest.raises(Die):
                h.invoke(Publish(text=key, asks=0), idempotency_key=key)
        with pytest.raises(Interrupted):
            h.invoke(Publish(text="wait"), idempotency_key="wait")
        h.crash()
        assert h.state().compact()
        base = decode_base(h.store.read(h.key), version=0)
        assert list(base.turns) == [*keys[extra:], "wait"]
        h.resume({"yes": True})
        drafts = calls.count("draft")
        h.invoke(Publish(text=keys[-1], asks=0), idempotency_key=keys[-1])
        assert calls.count("draft") == drafts, "a kept turn replays its step"
        h.invoke(Publish(text=keys[0], asks=0), idempotency_key=keys[0])
        assert calls.count("draft") == drafts + 1, "a forgotten turn runs from the top"


class Sized(BaseModel):
    steps: int
    size: int


class Big(Agent[Notes]):
    """Takes ``steps`` steps, each returning ``size`` characters."""

    def handle(self, req: Sized, ctx: Notes, turn: Turn) -> Went:
        for i in range(req.steps):
            turn.step(f"s{i:03d}", lambda: "x" * req.size)
        ctx.count += 1
        return Went(results=[], keys=[], count=ctx.count)


def _step_patches(history: int, *, steps: int, size: int) -> tuple[list[int], int]:
    """Sizes of the progress patches of one turn on a session with ``history`` items, and the
    bytes the whole turn wrote besides its final commit."""
    store = MemoryStore()
    ctx = Notes(done=History([f"message {i}" for i in range(history)]))
    with AgentHarness(Big, ctx, store=store, compact_every=10_000) as h:
        h.handler  # noqa: B018  (entered)
        before, patches = store.bytes_written, len(store.patch_sizes)
        h.invoke(Sized(steps=steps, size=size), idempotency_key="the-turn")
        sizes = store.patch_sizes[patches:]
        assert len(sizes) == 2 * steps + 1  # intent and result per step, then the commit
        return sizes[:-1], store.bytes_written - before - sizes[-1]


def test_step_commit_cost_is_independent_of_history_and_of_steps_so_far() -> None:
    """A step writes two small patches (intent, result) whatever the session's history holds
    (10 or 50,000 messages) and however many steps the turn took before; nothing else."""
    small, small_total = _step_patches(10, steps=40, size=100)
    large, large_total = _step_patches(50_000, steps=40, size=100)
    assert small == large, "the history's size shows in the step patches"
    assert small_total == sum(small) and large_total == sum(large), "a base was rewritten"
    intents, results = small[0::2], small[1::2]
    # the only growth allowed is the digits of the version numbers in a patch
    assert max(intents) - min(intents) <= 4 and max(results) - min(results) <= 4
    assert max(small) < 300


def test_step_commit_cost_follows_its_result() -> None:
    """A step's result patch costs its result's size plus a constant."""
    (_, small_result), _ = _step_patches(10, steps=1, size=10)
    (_, big_result), _ = _step_patches(10, steps=1, size=10_010)
    assert big_result - small_result == 10_000


class Starter(Agent[Notes]):
    """Takes two steps in on_session_start (the second dies once when armed)."""

    def on_session_start(self, ctx: Notes, turn: Turn) -> None:
        a = turn.step("boot-a", work, "boot-a")
        b = turn.step("boot-b", work, "boot-b")
        ctx.done.append(f"{a}+{b}")

    def handle(self, req: Go, ctx: Notes) -> Went:
        ctx.count += 1
        return Went(results=ctx.done.tolist(), keys=[], count=ctx.count)


def test_steps_in_on_session_start_replay_on_the_next_instance() -> None:
    """on_session_start takes durable steps: an instance dying inside its second step leaves
    the first recorded; the next instance replays it, runs the second again, commits once."""
    with AgentHarness(Starter) as h:
        die_points.add("boot-b")
        with pytest.raises(Die):
            h.invoke(Go())
        h.crash()
        reply = h.invoke(Go())
        assert reply.results == ["boot-a+boot-b"] and reply.count == 1
        assert calls == ["boot-a", "boot-b", "boot-b"]
        h.crash()
        assert h.invoke(Go()).results == ["boot-a+boot-b"]
        assert len(calls) == 3, "on_session_start runs once per session"


class AskingStarter(Agent[Notes]):
    def on_session_start(self, ctx: Notes, turn: Turn) -> None:
        turn.interrupt("may I?")

    def handle(self, req: Go, ctx: Notes) -> Went:
        return Went(results=[], keys=[], count=0)


def test_interrupt_in_on_session_start_is_refused() -> None:
    """A session hook cannot pause for a human: interrupt() there raises InvalidStateError."""
    with AgentHarness(AskingStarter) as h, pytest.raises(InvalidStateError, match="handle"):
        h.invoke(Go())


async def async_work(name: str) -> str:
    calls.append(name)
    return name.upper()


class AsyncPublisher(Agent[Notes]):
    """The async flavour: awaited steps (async and sync functions) and an awaited interrupt."""

    async def handle(self, req: Publish, ctx: Notes, turn: AsyncTurn) -> Published:
        draft = await turn.step("draft", async_work, "draft")
        answer = await turn.interrupt(Approval(question=f"publish {draft}?"))
        if answer.get("yes"):
            await turn.step("publish", work, "publish", req.text)
            ctx.done.append(req.text)
        return Published(text=draft, answers=[answer], published=bool(answer.get("yes")))


def test_async_turn_steps_and_interrupt_in_process() -> None:
    """An async handler awaits its steps and interrupt; the resume replays the awaited step."""
    with AgentHarness(AsyncPublisher) as h:
        with pytest.raises(Interrupted) as paused:
            h.invoke(Publish(text="a"))
        assert paused.value.payload == {"question": "publish DRAFT?"}
        h.crash()
        reply = h.resume({"yes": True})
        assert reply == Published(text="DRAFT", answers=[{"yes": True}], published=True)
        assert calls == ["draft", "publish"]
        assert h.context().done.tolist() == ["a"]


def _client_error(h: AgentHarness[Any], req: BaseModel, key: str) -> FlameAgentsError:
    """The error a client gets for ``req`` under ``key`` (through the task's failure)."""
    data = encode_request(key, req.model_dump(mode="json"))
    with pytest.raises(TaskFailedError) as failed:
        h.handler.on_task_invoke("1", h.session_id, data)
    return error_from_message(failed.value.message, **failed.value.fields)


def test_unknown_outcome_of_a_step_record_reaches_the_client_as_retryable() -> None:
    """A step's record whose write outcome stays unknown (the re-read fails too) fails the
    task with a retryable error, although it surfaced inside the handler; the retry with the
    same key finds the record and goes on."""
    store = FaultyStore(MemoryStore())
    with AgentHarness(Steps, store=store) as h:
        h.handler  # noqa: B018  (entered: the faults count the turn's own operations)
        store.inject(Fault("append", "after", "error", CacheError))  # s1's intent landed
        store.inject(Fault("fetch", "before", "error", CacheError, skip=1))  # the re-read
        error = _client_error(h, Go(tag="u"), "k")
        assert isinstance(error, RetryableError) and error.retryable, error
        assert h.invoke(Go(tag="u"), idempotency_key="k").results == ["s1:u", "s2:u", "s3:u"]
        assert calls == ["s1", "s2", "s3"], "s1 did not run before its intent's write failed"


def test_a_duplicate_delivery_that_committed_first_is_answered_by_a_retry() -> None:
    """Another instance runs the same key (a duplicate delivery) and commits between this
    instance's read and its first step record: this delivery fails retryable, and its retry
    answers the other's recorded reply; the turn took effect once."""
    store = FaultyStore(MemoryStore())
    with AgentHarness(Steps, store=store) as h:
        h.handler  # noqa: B018
        other = AgentHarness(Steps, store=store.inner, state_key=h.key)
        first: list[Any] = []
        store.before_next(
            "append", lambda: first.append(other.invoke(Go(tag="d"), idempotency_key="k"))
        )
        error = _client_error(h, Go(tag="d"), "k")
        assert isinstance(error, RetryableError), error
        assert h.invoke(Go(tag="d"), idempotency_key="k") == first[0]
        assert h.context().done.tolist() == ["d"] and calls == ["s1", "s2", "s3"]
        other.crash()


def test_a_duplicate_delivery_that_died_mid_turn_is_taken_over() -> None:
    """A duplicate delivery that recorded steps and died (before this one's first record): this
    delivery fails retryable and its retry replays the other's steps and commits once."""
    store = FaultyStore(MemoryStore())
    with AgentHarness(Steps, store=store) as h:
        h.handler  # noqa: B018
        other = AgentHarness(Steps, store=store.inner, state_key=h.key)

        def duplicate_dies_in_s2() -> None:
            die_points.add("s2")
            with pytest.raises(Die):
                other.invoke(Go(tag="x"), idempotency_key="k")

        store.before_next("append", duplicate_dies_in_s2)
        error = _client_error(h, Go(tag="x"), "k")
        assert isinstance(error, RetryableError), error
        assert h.invoke(Go(tag="x"), idempotency_key="k").count == 1
        assert calls == ["s1", "s2", "s2", "s3"], "s2 died in the duplicate: it runs again"
        assert h.context().done.tolist() == ["x"]
        other.crash()
