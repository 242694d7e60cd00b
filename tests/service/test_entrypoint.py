"""Entrypoint signatures are checked when decorated, and sync/async entrypoints both run."""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from typing import Any

import cloudpickle
import pytest

from flame_agents.service.instance import FlameInstance


@dataclass
class Req:
    text: str


def test_zero_and_one_parameter_are_accepted() -> None:
    """A function with no parameter or one positional-or-keyword parameter registers unchanged."""

    def none() -> str:
        return "x"

    def one(req: Req) -> str:
        return req.text

    for func in (none, one):
        ins = FlameInstance()
        assert ins.entrypoint(func) is func


def test_one_parameter_with_default_is_accepted() -> None:
    """A single parameter may have a default value."""
    ins = FlameInstance()

    @ins.entrypoint
    def handle(req: Any = None) -> Any:
        return req

    assert ins.on_task_invoke("1", "s", None) is None


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("def bad(a, b): pass", "takes 2 parameters"),
        ("def bad(*args): pass", "*args"),
        ("def bad(**kw): pass", "**kwargs"),
        ("def bad(*, req): pass", "keyword-only"),
        ("def bad(req, /): pass", "positional-only"),
    ],
)
def test_wrong_signatures_raise_type_error_at_decoration(source: str, fragment: str) -> None:
    """Every signature other than zero/one positional-or-keyword parameter fails when decorated."""
    namespace: dict[str, Any] = {}
    exec(source, namespace)
    ins = FlameInstance()
    with pytest.raises(TypeError) as info:
        ins.entrypoint(namespace["bad"])
    message = str(info.value)
    assert "bad(" in message  # names the function
    assert fragment in message
    assert "zero parameters or exactly one positional-or-keyword parameter" in message


def test_generators_are_rejected() -> None:
    """A generator entrypoint cannot produce a single reply, so it is rejected when decorated."""
    ins = FlameInstance()

    def gen(req: Any) -> Any:
        yield req

    with pytest.raises(TypeError, match="generator"):
        ins.entrypoint(gen)


def test_second_entrypoint_is_rejected() -> None:
    """A FlameInstance has exactly one entrypoint; registering another names both."""
    ins = FlameInstance()

    @ins.entrypoint
    def first(req: Any) -> Any:
        return req

    def second(req: Any) -> Any:
        return req

    with pytest.raises(TypeError, match=r"'second'.*'first'"):
        ins.entrypoint(second)


def test_non_callable_is_rejected() -> None:
    """Decorating something that is not callable raises TypeError."""
    with pytest.raises(TypeError, match="must be a function"):
        FlameInstance().entrypoint(42)  # type: ignore[type-var]


def test_sync_entrypoint_round_trips_cloudpickle() -> None:
    """on_task_invoke unpickles the request and pickles the reply of a sync entrypoint."""
    ins = FlameInstance()

    @ins.entrypoint
    def upper(req: Req) -> str:
        return req.text.upper()

    out = ins.on_task_invoke("1", "s", cloudpickle.dumps(Req("hi")))
    assert out is not None and cloudpickle.loads(out) == "HI"


def test_none_reply_leaves_output_unset() -> None:
    """An entrypoint returning None produces no output bytes, as flamepy does."""
    ins = FlameInstance()

    @ins.entrypoint
    def nothing() -> None:
        return None

    assert ins.on_task_invoke("1", "s", cloudpickle.dumps("ignored")) is None


def test_async_entrypoints_share_one_event_loop() -> None:
    """Async entrypoints run to completion, every task on the same event loop."""
    ins = FlameInstance()
    loops: list[asyncio.AbstractEventLoop] = []

    @ins.entrypoint
    async def handle(req: int) -> int:
        loops.append(asyncio.get_running_loop())
        await asyncio.sleep(0)
        return req * 2

    try:
        outs = [ins.on_task_invoke(str(i), "s", cloudpickle.dumps(i)) for i in (1, 2, 3)]
        assert [cloudpickle.loads(o) for o in outs if o is not None] == [2, 4, 6]
        assert len(set(map(id, loops))) == 1
    finally:
        ins._loop.close()


def test_partial_of_coroutine_function_is_awaited() -> None:
    """A callable that returns an awaitable (a partial of an async function) is awaited."""

    async def scaled(factor: int, req: int) -> int:
        return req * factor

    ins = FlameInstance()
    ins.entrypoint(functools.partial(scaled, 10))
    try:
        out = ins.on_task_invoke("1", "s", cloudpickle.dumps(4))
        assert out is not None and cloudpickle.loads(out) == 40
    finally:
        ins._loop.close()


def test_entrypoint_exception_propagates_to_the_server() -> None:
    """on_task_invoke lets the entrypoint's exception through for the shim to report."""
    ins = FlameInstance()

    @ins.entrypoint
    def boom(req: Any) -> Any:
        raise ValueError("bad request: no text")

    with pytest.raises(ValueError, match="bad request: no text"):
        ins.on_task_invoke("1", "s", cloudpickle.dumps(None))


def test_context_without_session_is_local() -> None:
    """Outside a session (debug mode) the context lives in the process."""
    ins = FlameInstance()
    assert ins.context() is None
    ins.update_context({"messages": ["a"]})
    assert ins.context() == {"messages": ["a"]}


def test_non_bson_common_data_fails_session_enter_clearly() -> None:
    """common_data that is not an ObjectRef fails the bind with a message saying what to do."""
    ins = FlameInstance()
    with pytest.raises(ValueError, match="not a BSON ObjectRef"):
        ins.on_session_enter("app-abc123", "app", b"raw bytes")


def test_run_without_entrypoint_raises() -> None:
    """run() before any entrypoint is registered fails with a hint."""
    with pytest.raises(TypeError, match="no entrypoint registered"):
        FlameInstance().run()
