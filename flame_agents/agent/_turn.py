"""``Turn`` and ``AsyncTurn``: durable steps, streamed items, interrupts and cancellation inside
one agent invocation.

A handler that declares a fourth parameter gets the turn it runs in::

    def handle(self, req: Ask, ctx: DocCtx, turn: Turn) -> Answer:
        outline = turn.step("outline", plan_with_model, req.text)
        turn.emit(Token(text="..."))
        answer = turn.interrupt(Approval(question="publish?"))

Every step records its *intent* in the session's journal before its function runs and its
*result* after, each as one small patch (:mod:`flame_agents.agent._progress`). A turn that runs
again with the same idempotency key (its instance died, the runtime restarted, the client
retried, a human answered its interrupt) returns recorded results without calling the function;
a step with an intent and no result (the process died inside it) asks its ``reconcile(key)``
hook, when given, whether the effect happened, and otherwise runs again (at least once).

The turn's context changes are still committed only with its reply: a turn that is
interrupted, cancelled or fails commits nothing but its progress records.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel

from flame_agents.agent._progress import TurnProgress
from flame_agents.agent._state import StateHandle
from flame_agents.agent._typenames import main_module_name, type_name
from flame_agents.errors import InvalidArgumentError, InvalidStateError

__all__ = ["AsyncTurn", "Turn", "TurnCancelled", "TurnInterrupted", "TurnRun"]

# Step result types recorded by this process, so a replay returns the same class even for a
# model defined in a script run as ``__main__`` (recorded under the script's module name).
_MODEL_TYPES: dict[str, type[BaseModel]] = {}


class TurnInterrupted(BaseException):
    """Unwinds a handler from ``interrupt()`` (a BaseException, like asyncio's CancelledError,
    so that ``except Exception`` in the handler cannot swallow the pause)."""

    def __init__(self, index: int, payload: Any) -> None:
        super().__init__(f"turn interrupted (interrupt {index})")
        self.index = index
        self.payload = payload


class TurnCancelled(BaseException):
    """Unwinds a sync handler at its next step/emit/interrupt after the turn was cancelled."""


def to_json_value(value: Any, *, what: str) -> Any:
    """``value`` as JSON (a model as its JSON dump); raises InvalidArgumentError otherwise."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(
            f"{what} must be JSON (dict, list, str, int, float, bool, None) or a pydantic "
            f"model, got {type(value).__name__}: {exc}"
        ) from exc


def _encode_result(value: Any, *, name: str) -> dict[str, Any]:
    if isinstance(value, BaseModel):
        tp = type(value)
        recorded = type_name(tp)
        _MODEL_TYPES[recorded] = tp
        return {"m": recorded, "v": value.model_dump(mode="json")}
    return {"v": to_json_value(value, what=f"the result of step {name!r}")}


def _decode_result(recorded: dict[str, Any], *, name: str) -> Any:
    model = recorded.get("m")
    if model is None:
        return recorded.get("v")
    tp = _MODEL_TYPES.get(model) or _import_model(model)
    if tp is None:
        raise InvalidStateError(
            f"step {name!r} recorded a {model} result and this process cannot import that "
            "class; keep step result models importable (define them in a module)",
            step=name,
        )
    return tp.model_validate(recorded.get("v"))


def _import_model(name: str) -> type[BaseModel] | None:
    module, _, qualname = name.partition(":")
    candidates = [module]
    if module == main_module_name():
        candidates.insert(0, "__main__")
    for candidate in candidates:
        try:
            obj: Any = sys.modules.get(candidate) or importlib.import_module(candidate)
            for part in qualname.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError):
            continue
        if isinstance(obj, type) and issubclass(obj, BaseModel):
            _MODEL_TYPES[name] = obj
            return obj
    return None


class TurnRun:
    """One run of one turn: its progress so far and where new records go (internal).

    Shared by :class:`Turn` and :class:`AsyncTurn`, which differ only in how they call the
    step's function. ``sink`` receives emitted items (None: nobody streams this turn), and
    ``replayed_items(n)`` hears of the ``n`` items a replayed step emitted in the run that
    recorded it (they are in the stream already; see ``StreamWriter.replayed``);
    ``cancel_event`` is set from another thread when the turn is cancelled.
    """

    def __init__(
        self,
        state: StateHandle[Any],
        idempotency_key: str,
        *,
        session_id: str,
        request: Any = None,
        digest: str | None = None,
        sink: Callable[[Any], None] | None = None,
        replayed_items: Callable[[int], None] | None = None,
        cancel_event: threading.Event | None = None,
        interrupts_allowed: bool = True,
    ) -> None:
        self.state = state
        self.idempotency_key = idempotency_key
        self.session_id = session_id
        self.request = request
        self.digest = digest
        self.sink = sink
        self.replayed_items = replayed_items
        self.emitted = 0
        """Items emitted by this run (recorded per step, so a replayed step accounts for them)."""
        self._step_emitted = 0
        self.cancel_event = cancel_event or threading.Event()
        self.interrupts_allowed = interrupts_allowed
        self._names: set[str] = set()
        self._interrupts = 0
        #: The error recording progress raised (the agent layer's, not the handler's own).
        self.failure: BaseException | None = None
        self.steps_run = 0
        self.steps_replayed = 0

    @property
    def progress(self) -> TurnProgress:
        return self.state.journal.turns.get(self.idempotency_key) or TurnProgress()

    def check_cancelled(self) -> None:
        if self.cancel_event.is_set():
            raise TurnCancelled("turn cancelled")

    def step_key(self, name: str) -> str:
        """A stable idempotency key for step ``name`` of this turn (same on every re-run)."""
        seed = f"{self.session_id}\0{self.idempotency_key}\0{name}".encode()
        return "step-" + hashlib.sha256(seed).hexdigest()[:32]

    def begin_step(self, name: str) -> tuple[bool, Any, bool]:
        """``(replayed, result, in_doubt)``: the recorded result, or whether the function must
        run, and whether an earlier run died inside it (intent without a result)."""
        self.check_cancelled()
        if not isinstance(name, str) or not name:
            raise InvalidArgumentError(f"a step name must be a non-empty str, got {name!r}")
        if name in self._names:
            raise InvalidArgumentError(
                f"step {name!r} already ran in this turn; give each step of a turn its own "
                f"name (e.g. f'fetch:{{url}}')",
                step=name,
            )
        self._names.add(name)
        progress = self.progress
        if name in progress.steps:
            self.steps_replayed += 1
            recorded = progress.steps[name]
            if self.replayed_items is not None and recorded.get("e"):
                self.replayed_items(int(recorded["e"]))
            return True, _decode_result(recorded, name=name), False
        self._step_emitted = self.emitted
        return False, None, name in progress.intents

    def record(self, record: dict[str, Any]) -> None:
        """Write one progress record; remember its failure as the agent layer's (so a retryable
        one reaches the client as retryable although it surfaced through the handler)."""
        try:
            self.state.record_progress(record)
        except BaseException as exc:
            self.failure = exc
            raise

    def record_intent(self, name: str) -> None:
        self.record({"k": self.idempotency_key, "op": "intent", "name": name})

    def finish_step(self, name: str, result: Any) -> Any:
        """Record ``result`` and return it as a replay would (JSON round trip)."""
        encoded = _encode_result(result, name=name)
        if self.emitted > self._step_emitted:  # items the step emitted (replays account them)
            encoded["e"] = self.emitted - self._step_emitted
        self.record({"k": self.idempotency_key, "op": "result", "name": name, "value": encoded})
        self.steps_run += 1
        return _decode_result(encoded, name=name)

    def emit(self, item: Any) -> None:
        self.check_cancelled()
        self.emitted += 1
        if self.sink is not None:
            self.sink(item)

    def interrupt(self, payload: Any) -> Any:
        self.check_cancelled()
        if not self.interrupts_allowed:
            raise InvalidStateError(
                "interrupt() is only available in handle(), not in session hooks"
            )
        index = self._interrupts
        self._interrupts += 1
        progress = self.progress
        if index < len(progress.answers):
            return progress.answers[index]
        payload_json = to_json_value(payload, what="an interrupt payload")
        if index >= len(progress.interrupts):
            self.record(
                {
                    "k": self.idempotency_key,
                    "op": "interrupt",
                    "index": index,
                    "value": payload_json,
                    "request": self.request,
                    "req": self.digest,
                }
            )
        raise TurnInterrupted(index, payload_json)


class _TurnView:
    """What :class:`Turn` and :class:`AsyncTurn` share: the turn's identity and state."""

    def __init__(self, run: TurnRun) -> None:
        self._run = run

    @property
    def idempotency_key(self) -> str:
        """The turn's idempotency key (the invocation's)."""
        return self._run.idempotency_key

    @property
    def cancelled(self) -> bool:
        """True once the turn was cancelled: a sync handler stops at its next step, emit or
        interrupt; an async one also gets ``asyncio.CancelledError``."""
        return self._run.cancel_event.is_set()

    def key(self, name: str) -> str:
        """A stable idempotency key for step ``name``, to hand to external APIs."""
        return self._run.step_key(name)


class Turn(_TurnView):
    """The running turn of a sync ``handle`` (see the module docstring)."""

    def step(
        self,
        name: str,
        fn: Callable[..., Any],
        /,
        *args: Any,
        reconcile: Callable[[str], Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run ``fn(*args, **kwargs)`` once per turn and return its (recorded) result.

        The result must be JSON or a pydantic model; it is committed to the session's journal
        before this returns, and a re-run of the turn returns it without calling ``fn``. Names
        are unique within a turn (a repeated name raises ``InvalidArgumentError``).

        ``reconcile(key)``, for a function with an external effect: when an earlier run died
        inside ``fn`` (its intent is recorded, its result is not), it is called with
        :meth:`key` of the step and returns the result if the effect happened, or None to run
        ``fn`` again. Without it such a step runs again (at least once).
        """
        run = self._run
        replayed, result, in_doubt = run.begin_step(name)
        if replayed:
            return result
        if in_doubt and reconcile is not None:
            found = _sync_call(reconcile, run.step_key(name), what=f"reconcile of step {name!r}")
            if found is not None:
                return run.finish_step(name, found)
        if not in_doubt:
            run.record_intent(name)
        return run.finish_step(name, _sync_call(fn, *args, what=f"step {name!r}", **kwargs))

    def emit(self, item: Any) -> None:
        """Send ``item`` (a model or JSON) to clients streaming this turn, in order, now."""
        self._run.emit(item)

    def interrupt(self, payload: Any) -> Any:
        """Pause the turn durably for a human; returns the answer once resumed.

        Records the payload and ends the task: the client's ``invoke``/``stream`` raises
        ``Interrupted`` with it. ``AgentSession.resume(answer)`` runs the turn again: its steps
        replay and this call returns ``answer`` (as JSON).
        """
        return self._run.interrupt(payload)


class AsyncTurn(_TurnView):
    """The running turn of an ``async def handle``: the same operations, awaited."""

    async def step(
        self,
        name: str,
        fn: Callable[..., Any],
        /,
        *args: Any,
        reconcile: Callable[[str], Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """:meth:`Turn.step`, awaited; ``fn`` and ``reconcile`` may be sync or async."""
        run = self._run
        replayed, result, in_doubt = run.begin_step(name)
        if replayed:
            return result
        if in_doubt and reconcile is not None:
            found = await _maybe_await(reconcile(run.step_key(name)))
            if found is not None:
                return run.finish_step(name, found)
        if not in_doubt:
            run.record_intent(name)
        return run.finish_step(name, await _maybe_await(fn(*args, **kwargs)))

    async def emit(self, item: Any) -> None:
        """:meth:`Turn.emit`, awaited."""
        self._run.emit(item)

    async def interrupt(self, payload: Any) -> Any:
        """:meth:`Turn.interrupt`, awaited."""
        return self._run.interrupt(payload)


def _sync_call(fn: Callable[..., Any], *args: Any, what: str, **kwargs: Any) -> Any:
    result = fn(*args, **kwargs)
    if inspect.isawaitable(result):
        if inspect.iscoroutine(result):
            result.close()
        raise InvalidArgumentError(
            f"{what} returned an awaitable in a sync handler; make handle `async def` and "
            "`await turn.step(...)`, or pass a sync function"
        )
    return result


async def _maybe_await(value: Any | Awaitable[Any]) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value
