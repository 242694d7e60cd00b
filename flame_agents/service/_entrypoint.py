"""Check a user's entrypoint when it is decorated, and call it (sync or async) later.

Checking at decoration time means a wrong signature fails when the service module is imported,
with a message that says what is allowed, instead of failing every task at run time.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import typing
from collections.abc import Awaitable, Callable, Coroutine
from concurrent import futures
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

__all__ = ["CancelScope", "Entrypoint", "EventLoopThread", "check_entrypoint"]

_ALLOWED = (
    "an entrypoint takes zero parameters or exactly one positional-or-keyword parameter "
    "(the request), e.g. `def handle(req: MyRequest) -> MyReply`"
)


@dataclass(frozen=True)
class Entrypoint:
    """A checked entrypoint function and what the service layer needs to know to call it."""

    func: Callable[..., Any]
    """The user's function, unchanged."""
    name: str
    """Its ``__name__``: the debug server's route is ``POST /<name>``."""
    takes_input: bool
    """Whether it takes the request parameter."""
    is_async: bool
    """Whether calling it returns a coroutine."""
    input_type: Any
    """The parameter's annotation when it resolves to a class (used for JSON in debug mode)."""


def _describe(func: Callable[..., Any]) -> str:
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or repr(func)
    try:
        return f"{name}{inspect.signature(func)}"
    except (TypeError, ValueError):
        return str(name)


def check_entrypoint(func: Callable[..., Any]) -> Entrypoint:
    """Validate ``func`` as an entrypoint; raise ``TypeError`` naming it and what is allowed."""
    if not callable(func):
        raise TypeError(f"entrypoint must be a function, got {type(func).__name__}: {_ALLOWED}")
    if inspect.isasyncgenfunction(func) or inspect.isgeneratorfunction(func):
        raise TypeError(
            f"entrypoint {_describe(func)} is a generator; it must return its reply "
            "(streaming replies are not supported)"
        )
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"cannot read the signature of entrypoint {func!r}: {_ALLOWED}") from exc
    params = list(sig.parameters.values())
    if len(params) > 1:
        raise TypeError(
            f"entrypoint {_describe(func)} takes {len(params)} parameters: {_ALLOWED}; "
            "pass several values as one request object (a dataclass or a dict)"
        )
    param = params[0] if params else None
    if param is not None and param.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD:
        kinds = {
            inspect.Parameter.POSITIONAL_ONLY: "positional-only",
            inspect.Parameter.VAR_POSITIONAL: "*args",
            inspect.Parameter.KEYWORD_ONLY: "keyword-only",
            inspect.Parameter.VAR_KEYWORD: "**kwargs",
        }
        raise TypeError(
            f"entrypoint {_describe(func)} has a {kinds[param.kind]} parameter "
            f"{param.name!r}: {_ALLOWED}"
        )
    return Entrypoint(
        func=func,
        name=getattr(func, "__name__", type(func).__name__),
        takes_input=param is not None,
        is_async=inspect.iscoroutinefunction(func),
        input_type=_input_type(func, param),
    )


def _input_type(func: Callable[..., Any], param: inspect.Parameter | None) -> Any:
    if param is None:
        return None
    try:
        hints = typing.get_type_hints(func)
    except Exception:  # unresolvable forward refs only lose the JSON convenience
        return None
    hint = hints.get(param.name)
    return hint if isinstance(hint, type) else None


class CancelScope:
    """Lets another thread cancel the call of one task: the coroutine :meth:`EventLoopThread.run`
    runs in it gets ``asyncio.CancelledError`` (at once, or as it starts)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancelled = False
        self._task: asyncio.Task[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._cancelled

    def cancel(self) -> None:
        """Cancel the scope (from any thread); idempotent."""
        with self._lock:
            self._cancelled = True
            task, loop = self._task, self._loop
        if task is not None and loop is not None:
            loop.call_soon_threadsafe(task.cancel)

    def _enter(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any] | None) -> bool:
        """Bind the running coroutine's task; True when the scope was cancelled already."""
        with self._lock:
            self._task, self._loop = task, loop
            return self._cancelled


class EventLoopThread:
    """One asyncio event loop, run forever on a daemon thread, for async entrypoints.

    A single long-lived loop (rather than ``asyncio.run`` per task) lets an async service keep
    loop-bound resources such as HTTP client sessions across tasks.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=_run_loop, args=(loop,), name="flame-entrypoint-loop", daemon=True
                )
                self._thread.start()
                self._loop = loop
            return self._loop

    def run(self, awaitable: Awaitable[Any], *, scope: CancelScope | None = None) -> Any:
        """Run ``awaitable`` on the loop and block until it finishes; re-raise its exception.

        ``scope``: cancelling it cancels the coroutine (which then raises
        ``asyncio.CancelledError`` here, once it has finished handling it).
        """
        coro: Coroutine[Any, Any, Any] = (
            awaitable if inspect.iscoroutine(awaitable) else _await(awaitable)
        )
        if scope is not None:
            coro = _scoped(coro, scope)
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._ensure_loop())
        try:
            return future.result()
        except futures.CancelledError as exc:
            # The coroutine's task ended cancelled; say it as asyncio does.
            raise asyncio.CancelledError(*exc.args) from None

    def close(self, timeout: float = 5.0) -> None:
        """Stop and close the loop, waiting up to ``timeout`` s for its thread (idempotent)."""
        with self._lock:
            loop, self._loop = self._loop, None
            thread, self._thread = self._thread, None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        # Give async generators a chance to finalize, then release the loop's sockets.
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


async def _scoped(coro: Coroutine[Any, Any, Any], scope: CancelScope) -> Any:
    # Runs as the coroutine's own task, so cancelling this task cancels the user's coroutine.
    if scope._enter(asyncio.get_running_loop(), asyncio.current_task()):
        coro.close()
        raise asyncio.CancelledError
    return await coro
