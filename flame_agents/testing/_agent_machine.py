"""``AgentStateMachine``: a hypothesis state machine checking an agent against a plain model.

Kept apart from :mod:`flame_agents.testing.agents` because it needs hypothesis, a test-time
dependency; ``flame_agents.testing.agents.AgentStateMachine`` imports it on first use.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from pydantic import BaseModel

from flame_agents.agent import Agent, ContextModel
from flame_agents.agent.testing_support import (
    AgentHandler,
    Fetched,
    MemoryStore,
    ReplyEnvelope,
    StateHandle,
    StateStore,
    encode_drop,
    encode_request,
    encode_resume,
    error_from_message,
)
from flame_agents.errors import (
    CacheError,
    CommitConflictError,
    FlameAgentsError,
    Interrupted,
    InvalidArgumentError,
    InvalidStateError,
    InvocationTimeoutError,
    RuntimeUnavailableError,
    TaskFailedError,
)
from flame_agents.testing._faults import Fault, FaultyStore, Op, SimulatedCrash
from flame_agents.testing.agents import AgentHarness

__all__ = ["AgentStateMachine"]

_STORE_ERRORS = st.sampled_from([CacheError, RuntimeUnavailableError, InvocationTimeoutError])
_WHEN = st.sampled_from(["before", "after"])


class ProgressTap:
    """A state store passing everything to ``inner`` that keeps the turn progress records
    which landed (patches carrying ``"turn"``), in order, to check them against each other."""

    def __init__(self, inner: StateStore) -> None:
        self.inner = inner
        self.records: list[dict[str, Any]] = []

    def create(self, prefix: str, data: bytes) -> str:
        return self.inner.create(prefix, data)

    def fetch(self, key: str, *, since_version: int = 0) -> Fetched:
        return self.inner.fetch(key, since_version=since_version)

    def append(self, key: str, data: bytes, *, expected_version: int) -> int:
        version = self.inner.append(key, data, expected_version=expected_version)
        doc = json.loads(data)
        if isinstance(doc, dict) and isinstance(doc.get("turn"), dict):
            self.records.append(doc["turn"])
        return version

    def replace(self, key: str, data: bytes, *, expected_version: int) -> int:
        return self.inner.replace(key, data, expected_version=expected_version)

    def write(self, key: str, data: bytes) -> None:
        self.inner.write(key, data)

    def read(self, key: str) -> bytes:
        return self.inner.read(key)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def repeated(self) -> list[str]:
        """Records a turn wrote twice since it was last dropped: a step's intent or result (a
        completed step ran again), or an answer to the same interrupt."""
        seen: dict[str, Counter[tuple[str, str]]] = {}
        twice: list[str] = []
        for record in self.records:
            key, op = str(record["k"]), str(record["op"])
            if op == "drop":
                seen.pop(key, None)
                continue
            what = str(record.get("name", record.get("index", "")))
            counts = seen.setdefault(key, Counter())
            counts[(op, what)] += 1
            if counts[(op, what)] == 2:
                twice.append(f"turn {key}: {op} {what}")
        return twice


@dataclass
class Paused:
    """A turn of the machine waiting for an answer."""

    key: str
    request: BaseModel
    payload: Any
    answers: list[Any] = field(default_factory=list)


class AgentStateMachine(RuleBasedStateMachine):
    """Check an agent against a plain model of its context, under crashes, faults and races.

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

            def requests(self) -> st.SearchStrategy[Add]:  # optional
                return st.builds(Add, n=st.integers())

            @rule(n=st.integers())
            def add(self, n: int) -> None:
                self.step(Add(n=n))

        TestCounter = CounterMachine.TestCase

    Every invocation travels as a client's does: through the instance's task handler and back
    through the client's error mapping, retried with the same idempotency key when the error is
    retryable, and re-delivered to a fresh instance when the instance died (as the runtime
    re-dispatches the task of a dead instance). The built-in rules:

    * crash the instance, or leave the session gracefully (a new instance resumes);
    * replay an earlier key with its request: the recorded reply, and nothing changes;
    * replay an earlier key with a *different* request: ``InvalidArgumentError``, nothing
      changes (a key names one invocation; as with Stripe's and the IETF draft's idempotency
      keys, reusing one for another request is refused, not answered with the old reply);
    * send a request the handler fails on (:meth:`failing_requests`): the state is unchanged;
    * fail the store before an operation, or after a write landed (the ambiguous case), on
      commits, compactions and reads: the turn takes effect exactly once, or fails without
      effect;
    * crash the process at a store operation inside a commit or a compaction: the fresh
      instance recovers the turn;
    * a second writer commits between this instance's read and its commit, with another key or
      with the same one (a duplicate delivery): the first writer gets ``CommitConflictError``
      or the second writer's recorded reply; history never forks.

    For an agent whose turns take durable steps (``turn.step``; set :attr:`max_steps`):

    * crash the process at the k-th progress write of a turn, before or after it lands (before
      a step's intent, inside its function, before or after its result): the fresh instance
      replays the completed steps and runs the rest; the turn takes effect once.

    For an agent whose turns may pause (``turn.interrupt``; implement
    :meth:`interrupting_requests`, and :meth:`apply_resumed` when the answers matter):

    * send a request that interrupts: ``Interrupted``, nothing of the turn takes effect;
    * while it waits: a new invocation is refused (``InvalidStateError``, nothing written), and
      the paused key sent again raises ``Interrupted`` with the same payload;
    * resume it with an answer drawn from :meth:`answers` (crashing the process at one of the
      resumed turn's writes, sometimes): the plain model applies the turn only now, once;
    * drop it (``cancel()``): the model never applies it, the session serves again.

    Invariants after every step: :meth:`check` holds between the stored context and the model,
    and the journal's idempotency keys are exactly the keys of the turns that took effect, each
    once and in order. No turn records a step's intent or result twice (a completed step never
    runs again) or answers an interrupt twice, and the session's pending interrupt is the
    machine's paused turn. A failure reported for a turn that took effect fails the machine.
    While a turn waits for an answer, :meth:`step` checks that the session refuses the
    invocation and returns None, and the fault rules wait until it is resumed or dropped.

    The fault rules send requests drawn from :meth:`requests`, or earlier requests of
    :meth:`step` when it is not overridden. Small chunks and a short compaction interval make
    every run cross sealing and compaction. ``on_session_start`` runs once per session, and
    ``on_session_end`` on leaves the machine does not model: keep :meth:`check` to what
    ``handle`` does, or to what hooks do once (``on_session_start``).
    """

    agent: ClassVar[type[Agent[Any]]]
    chunk: ClassVar[int] = 3
    compact_every: ClassVar[int] = 4
    #: Deliveries of one invocation (retries and re-dispatches) before the machine gives up.
    max_deliveries: ClassVar[int] = 10
    #: Durable steps a turn of :attr:`agent` takes at most (0: none; the step rules are off).
    max_steps: ClassVar[int] = 0

    def __init__(self, store: StateStore | None = None) -> None:
        super().__init__()
        #: The store the state lives in; the instance reaches it through :attr:`faults`.
        self.store: StateStore = store if store is not None else self.make_store()
        #: The turn progress records that landed (every writer's), checked by an invariant.
        self.progress = ProgressTap(self.store)
        self.faults = FaultyStore(self.progress)
        self.harness: AgentHarness[Any] = AgentHarness(
            self.agent,
            self.initial_context(),
            store=self.faults,
            chunk=self.chunk,
            compact_every=self.compact_every,
        )
        self.model = self.initial_model()
        #: ``(key, request, reply)`` of every turn that took effect, in order.
        self.history: list[tuple[str, BaseModel, Any]] = []
        #: The turn waiting for an answer, if any.
        self.paused: Paused | None = None

    # -- to implement -----------------------------------------------------------------------

    def make_store(self) -> StateStore:
        """The store the session lives in (default: in memory); see also ``__init__(store=)``."""
        return MemoryStore()

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

    def requests(self) -> st.SearchStrategy[BaseModel] | None:
        """Requests the built-in rules send (default None: earlier requests of :meth:`step`)."""
        return None

    def failing_requests(self) -> st.SearchStrategy[BaseModel] | None:
        """Requests whose handler raises (default None: that rule is skipped)."""
        return None

    def interrupting_requests(self) -> st.SearchStrategy[BaseModel] | None:
        """Requests whose turn calls ``turn.interrupt`` (default None: no interrupt rules)."""
        return None

    def answers(self) -> st.SearchStrategy[Any]:
        """Answers the resume rule gives to interrupts (JSON values; default booleans)."""
        return st.booleans()

    def apply_resumed(self, model: Any, req: BaseModel, answers: list[Any]) -> Any:
        """Apply an interrupting ``req`` whose turn completed with ``answers`` (one per interrupt
        it raised, in order) to ``model``; return the expected reply or None to skip. Default:
        :meth:`apply_model`, the answers ignored."""
        return self.apply_model(model, req)

    # -- helpers ----------------------------------------------------------------------------

    def step(self, req: BaseModel) -> Any:
        """Invoke the agent with a fresh key and check its reply against the model.

        Raises the error the client would get (rebuilt from the task's failure) when the turn
        fails; the machine then checks that it took no effect. While a turn waits for an
        answer, checks that the invocation is refused without effect and returns None.
        """
        key = uuid.uuid4().hex
        if self.paused is not None:
            self._assert_refused_while_paused(req, key)
            return None
        try:
            reply = self.deliver(req, key)
        except FlameAgentsError:
            self._assert_not_committed(key)
            raise
        return self._took_effect(key, req, reply)

    def deliver(self, req: BaseModel, key: str) -> Any:
        """Send ``req`` under ``key`` as a client does; returns the validated reply.

        A retryable error is retried with the same key (as ``RetryPolicy`` does); a dead
        instance, or one that failed to enter the session, is replaced and the task delivered
        again (as the runtime re-dispatches it). Other errors are raised as the client sees them.
        """
        data = encode_request(key, req.model_dump(mode="json"))
        return self.agent.reply_type.model_validate(self.deliver_data(data, key).reply)

    def deliver_data(self, data: bytes, key: str) -> ReplyEnvelope:
        """:meth:`deliver` of a task input envelope (a request, a resume, a drop); returns the
        reply envelope."""
        errors: list[str] = []
        for attempt in range(self.max_deliveries):
            try:
                handler = self.harness.handler
            except (FlameAgentsError, SimulatedCrash) as exc:
                errors.append(f"enter: {exc!r}")
                self.harness.crash()
                continue
            try:
                output = handler.on_task_invoke(str(attempt), self.harness.session_id, data)
            except SimulatedCrash as exc:
                errors.append(repr(exc))
                self.harness.crash()
                continue
            except TaskFailedError as exc:
                error = error_from_message(exc.message, **exc.fields)
                if not error.retryable:
                    raise error from exc
                errors.append(repr(error))
                continue
            return ReplyEnvelope.decode(output)
        raise AssertionError(
            f"key {key} was not answered in {self.max_deliveries} deliveries: {errors}"
        )

    def stored(self) -> StateHandle[Any]:
        """A fresh reader of the stored state (its reads bypass the injected faults)."""
        return StateHandle(self.store, self.harness.key, self.harness.context_type)

    def _took_effect(self, key: str, req: BaseModel, reply: Any) -> Any:
        expected = self.apply_model(self.model, req)
        if expected is not None:
            assert reply == expected, f"reply {reply!r} != model {expected!r}"
        self.history.append((key, req, reply))
        return reply

    def _assert_not_committed(self, key: str) -> None:
        assert self.stored().recorded(key) is None, f"a failure was reported for {key}, committed"

    def _request(self, data: st.DataObject) -> BaseModel:
        strategy = self.requests()
        if strategy is None:
            strategy = st.sampled_from([req for _, req, _ in self.history])
        return data.draw(strategy, label="request")

    def _can_send(self) -> bool:
        return self.paused is None and (self.requests() is not None or bool(self.history))

    def _assert_refused_while_paused(self, req: BaseModel, key: str) -> None:
        assert self.paused is not None
        self._enter()
        version = self.stored().version
        try:
            self.deliver(req, key)
        except InvalidStateError as exc:
            assert "resume(answer)" in exc.message, exc.message
        else:
            raise AssertionError(f"{req!r} was answered while turn {self.paused.key} waits")
        assert self.stored().version == version, "a refused invocation wrote"

    def _send(self, req: BaseModel) -> None:
        """One turn that may fail: it takes effect exactly once, or fails without effect."""
        key = uuid.uuid4().hex
        try:
            reply = self.deliver(req, key)
        except FlameAgentsError:
            self._assert_not_committed(key)
            return
        self._took_effect(key, req, reply)

    def _enter(self) -> None:
        """Have an instance in the session (its on_session_start committed once per session)."""
        if self.harness.handler is None:  # the property enters the session when there is none
            raise AssertionError("the harness has no instance")

    def _send_until_fired(self, data: st.DataObject, *faults: Fault) -> None:
        """Send turns until ``faults`` went off (a compaction fault needs a compaction)."""
        self._enter()  # first, so that the faults count only the turn's own operations
        for fault in faults:
            self.faults.inject(fault)
        for _ in range(self.compact_every + 2):
            self._send(self._request(data))
            if not self.faults.pending:
                break
        self.faults.disarm()

    # -- built-in rules ---------------------------------------------------------------------

    @rule()
    def crash_instance(self) -> None:
        """A new instance must resume from the stored state alone."""
        self.harness.crash()

    @rule()
    def leave_session(self) -> None:
        """Leaving runs ``on_session_end``; the next instance resumes from the store."""
        self.harness.leave()

    @precondition(lambda self: bool(self.history))
    @rule(pick=st.integers(min_value=0))
    def replay_earlier_key(self, pick: int) -> None:
        """A repeated key returns the recorded reply and changes nothing."""
        key, req, reply = self.history[pick % len(self.history)]
        self._enter()
        version = self.stored().version
        assert self.deliver(req, key) == reply
        assert self.stored().version == version

    @precondition(lambda self: bool(self.history))
    @rule(pick=st.integers(min_value=0), data=st.data())
    def replay_key_with_another_request(self, pick: int, data: st.DataObject) -> None:
        """A key reused for a different request is refused and changes nothing."""
        key, req, _ = self.history[pick % len(self.history)]
        other = self._request(data)
        if other.model_dump(mode="json") == req.model_dump(mode="json"):
            return
        self._enter()
        version = self.stored().version
        try:
            self.deliver(other, key)
        except InvalidArgumentError as exc:
            assert "already used by a different request" in exc.message
        else:
            raise AssertionError(f"key {key} reused for {other!r} was answered")
        assert self.stored().version == version

    @precondition(lambda self: self.failing_requests() is not None)
    @rule(data=st.data())
    def invoke_failing_request(self, data: st.DataObject) -> None:
        """A request whose handler raises fails (not retried) and commits nothing."""
        strategy = self.failing_requests()
        assert strategy is not None
        req = data.draw(strategy, label="failing request")
        key = uuid.uuid4().hex
        self._enter()
        version = self.stored().version
        try:
            self.deliver(req, key)
        except FlameAgentsError as exc:
            assert not exc.retryable
        else:
            raise AssertionError(f"{req!r} was expected to fail")
        self._assert_not_committed(key)
        assert self.stored().version == version

    @precondition(lambda self: self._can_send())
    @rule(
        data=st.data(),
        op=st.sampled_from(["append", "fetch", "read", "write", "replace"]),
        error=_STORE_ERRORS,
        skip=st.integers(0, 2),
    )
    def store_fails_before_an_operation(
        self, data: st.DataObject, op: Op, error: type[FlameAgentsError], skip: int
    ) -> None:
        """A store error before an operation (nothing written) never loses or doubles a turn."""
        self._send_until_fired(data, Fault(op, "before", "error", error, skip))

    @precondition(lambda self: self._can_send())
    @rule(
        data=st.data(),
        op=st.sampled_from(["append", "write", "replace"]),
        error=_STORE_ERRORS,
        reread_fails=st.booleans(),
    )
    def store_fails_after_a_write_landed(
        self, data: st.DataObject, op: Op, error: type[FlameAgentsError], reread_fails: bool
    ) -> None:
        """A store error after the write landed: the turn succeeds once, never reports failure.

        With ``reread_fails``, the re-read that resolves a commit fails too: the client gets a
        retryable error and its retry with the same key finds the turn committed.
        """
        faults = [Fault(op, "after", "error", error)]
        if reread_fails and op == "append":
            faults.append(Fault("fetch", "before", "error", error, skip=1))  # 1: the refresh
        self._send_until_fired(data, *faults)

    @precondition(lambda self: self._can_send())
    @rule(data=st.data(), when=_WHEN)
    def crash_inside_commit(self, data: st.DataObject, when: Literal["before", "after"]) -> None:
        """The process dies at the commit's write (before or after it landed): a fresh instance
        re-entering the session runs the turn, or finds it committed; once either way."""
        self._send_until_fired(data, Fault("append", when, "crash"))

    @precondition(lambda self: self._can_send())
    @rule(
        data=st.data(),
        op=st.sampled_from(["write", "replace"]),
        when=_WHEN,
        skip=st.integers(0, 2),
    )
    def crash_inside_compaction(
        self, data: st.DataObject, op: Op, when: Literal["before", "after"], skip: int
    ) -> None:
        """The process dies while compacting (between chunk writes, or at the new base): the
        turn that triggered it is committed and the fresh instance answers it from the journal."""
        self._send_until_fired(data, Fault(op, when, "crash", skip=skip))

    @precondition(lambda self: self._can_send())
    @rule(data=st.data(), same_key=st.booleans())
    def second_writer_commits_first(self, data: st.DataObject, same_key: bool) -> None:
        """Another instance commits between this one's read and its commit: never a fork.

        With another key, this commit is rejected (``CommitConflictError``, no effect) and an
        invoke again runs it on the new state. With the same key and request (a duplicate
        delivery served twice), both answer the second writer's recorded reply. For an agent
        taking steps the race is with the turn's first write (a step's intent). When the second
        writer's process dies in its turn (a step function raising ``SimulatedCrash``), its
        turn takes no effect; with the same key, this delivery runs the turn on from what the
        other recorded (retrying with the key) and it takes effect once.
        """
        req, key = self._request(data), uuid.uuid4().hex
        other_req, other_key = (req, key) if same_key else (self._request(data), uuid.uuid4().hex)
        outcome: dict[str, Any] = {}

        def second_writer() -> None:
            other = AgentHandler(
                self.agent,
                store_factory=lambda _endpoint: self.progress,
                compact_every=self.compact_every,
            )
            try:
                other.enter(self.harness.session_id, self.harness.app, "second", self.harness.key)
                data = encode_request(other_key, other_req.model_dump(mode="json"))
                envelope = other.invoke(data, task_id="second")
                outcome["reply"] = self.agent.reply_type.model_validate(envelope.reply)
            except Exception as exc:  # reported below, outside the store call it runs in
                outcome["error"] = exc
            except SimulatedCrash:
                outcome["died"] = True
            finally:
                other.close()

        self._enter()  # first: the race is with the turn's commit, not on_session_start's
        self.faults.before_next("append", second_writer)
        try:
            reply = self.deliver(req, key)
        except CommitConflictError:
            reply = None
        self.faults.disarm()
        assert "error" not in outcome, f"the second writer failed: {outcome['error']!r}"
        if outcome.get("died"):
            if not same_key:
                self._assert_not_committed(other_key)
                if reply is None:  # the other's progress records moved the state first
                    self._assert_not_committed(key)
                    reply = self.deliver(req, key)
            assert reply is not None, "the turn of a dead duplicate was not taken over"
            self._took_effect(key, req, reply)
            return
        assert "reply" in outcome, "the second writer did not run"
        self._took_effect(other_key, other_req, outcome["reply"])
        if same_key:
            assert reply == outcome["reply"], "a duplicate delivery answered differently"
            return
        assert reply is None, "a commit on a moved state was accepted"
        self._assert_not_committed(key)
        self._took_effect(key, req, self.deliver(req, key))  # invoked again: runs on the new state

    @precondition(lambda self: self.max_steps > 0 and self._can_send())
    @rule(data=st.data(), when=_WHEN)
    def crash_between_steps(self, data: st.DataObject, when: Literal["before", "after"]) -> None:
        """The process dies at a progress write of a turn (the k-th: a step's intent or result,
        before or after it landed): a fresh instance replays the steps whose result landed and
        runs the others; the turn takes effect once (checked by the invariants)."""
        writes = data.draw(st.integers(0, 2 * self.max_steps), label="writes before the crash")
        self._send_until_fired(data, Fault("append", when, "crash", skip=writes))

    @precondition(lambda self: self.paused is None and self.interrupting_requests() is not None)
    @rule(data=st.data())
    def invoke_interrupting_request(self, data: st.DataObject) -> None:
        """A turn that interrupts raises Interrupted and takes no effect until resumed."""
        strategy = self.interrupting_requests()
        assert strategy is not None
        req = data.draw(strategy, label="interrupting request")
        key = uuid.uuid4().hex
        self._enter()
        try:
            reply = self.deliver(req, key)
        except Interrupted as exc:
            self.paused = Paused(key, req, exc.payload)
            self._assert_not_committed(key)
            return
        self._resumed_took_effect(key, req, [], reply)  # it chose not to interrupt

    @precondition(lambda self: self.paused is not None)
    @rule(data=st.data(), when=_WHEN)
    def resume_paused_turn(self, data: st.DataObject, when: Literal["before", "after"]) -> None:
        """The paused turn resumed with an answer (its process dying at one of the resumed
        turn's writes, sometimes): it completes once, or pauses at its next interrupt."""
        paused = self.paused
        assert paused is not None
        answer = data.draw(self.answers(), label="answer")
        crash_at = data.draw(
            st.none() | st.integers(0, 2 * self.max_steps + 1), label="writes before a crash"
        )
        self._enter()
        pending = self.stored().pending_interrupt_json()
        assert pending is not None and pending["idempotency_key"] == paused.key
        if crash_at is not None:
            self.faults.inject(Fault("append", when, "crash", skip=crash_at))
        try:
            envelope = self.deliver_data(
                encode_resume(paused.key, int(pending["index"]), answer), paused.key
            )
        except Interrupted as exc:
            paused.answers.append(answer)
            paused.payload = exc.payload
            self._assert_not_committed(paused.key)
            return
        finally:
            self.faults.disarm()
        reply = self.agent.reply_type.model_validate(envelope.reply)
        self.paused = None
        self._resumed_took_effect(paused.key, paused.request, [*paused.answers, answer], reply)

    @precondition(lambda self: self.paused is not None)
    @rule()
    def drop_paused_turn(self) -> None:
        """cancel() drops the paused turn: it never takes effect; the session serves again."""
        paused = self.paused
        assert paused is not None
        self._enter()
        self.deliver_data(encode_drop(paused.key), paused.key)
        self.paused = None
        self._assert_not_committed(paused.key)
        assert paused.key not in self.stored().journal.turns

    @precondition(lambda self: self.paused is not None)
    @rule()
    def retry_paused_key(self) -> None:
        """The paused key sent again raises Interrupted with its payload and writes nothing."""
        paused = self.paused
        assert paused is not None
        self._enter()
        version = self.stored().version
        try:
            self.deliver(paused.request, paused.key)
        except Interrupted as exc:
            assert exc.payload == paused.payload
        else:
            raise AssertionError(f"the paused key {paused.key} was answered")
        assert self.stored().version == version

    @precondition(
        lambda self: self.paused is not None and (self.requests() is not None or self.history)
    )
    @rule(data=st.data())
    def invoke_while_paused(self, data: st.DataObject) -> None:
        """A new invocation while a turn waits is refused (InvalidStateError), writing nothing."""
        strategy = self.requests()
        if strategy is None:
            strategy = st.sampled_from([req for _, req, _ in self.history])
        self._assert_refused_while_paused(data.draw(strategy, label="request"), uuid.uuid4().hex)

    def _resumed_took_effect(
        self, key: str, req: BaseModel, answers: list[Any], reply: Any
    ) -> None:
        expected = self.apply_resumed(self.model, req, answers)
        if expected is not None:
            assert reply == expected, f"reply {reply!r} != model {expected!r}"
        self.history.append((key, req, reply))

    # -- invariants -------------------------------------------------------------------------

    @invariant()
    def context_matches_model(self) -> None:
        """The stored context is the model's."""
        self.check(self.stored().context(), self.model)

    @invariant()
    def every_turn_committed_once_in_order(self) -> None:
        """The journal's keys are the turns that took effect, each once, in order: no fork."""
        keys = [k for k in self.stored().committed_keys() if not k.startswith("~")]
        assert keys == [key for key, _, _ in self.history]

    @invariant()
    def no_step_ran_again(self) -> None:
        """No turn recorded a step's intent or result twice, nor answered an interrupt twice."""
        assert not self.progress.repeated()

    @invariant()
    def pending_interrupt_is_the_paused_turn(self) -> None:
        """The session's pending interrupt is the machine's paused turn (or none)."""
        pending = self.stored().pending_interrupt_json()
        if self.paused is None:
            assert pending is None, f"an interrupt is pending: {pending}"
        else:
            assert pending is not None and pending["idempotency_key"] == self.paused.key
            assert pending["payload"] == self.paused.payload

    def teardown(self) -> None:
        self.faults.disarm()
        self.harness.close()
