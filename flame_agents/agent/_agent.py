"""``Agent[Ctx]``: the base class of agent services, checked when a subclass is defined.

A subclass implements ``handle(self, req, ctx) -> Reply`` (sync or ``async``) with one pydantic
request type, a pydantic reply type and ``ctx`` typed as the agent's :class:`ContextModel`. A
wrong signature fails at import with a :class:`TypeError` saying what to change, not at the
first call inside a service process.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel

from flame_agents.agent._context import ContextModel

__all__ = ["Agent"]

C = TypeVar("C", bound=ContextModel)


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _context_param(cls: type) -> Any:
    """The ``C`` of ``Agent[C]`` for ``cls``, resolving type variables of generic bases."""
    for base in getattr(cls, "__orig_bases__", ()):
        origin = typing.get_origin(base)
        args = typing.get_args(base)
        if origin is Agent:
            return args[0] if args else None
        if isinstance(origin, type) and issubclass(origin, Agent):
            found = _context_param(origin)
            params = getattr(origin, "__parameters__", ())
            if isinstance(found, TypeVar) and found in params:
                return args[params.index(found)]
            return found
    for base in cls.__bases__:
        if issubclass(base, Agent) and base is not Agent:
            return _context_param(base)
    return None


def _check_turn_hint(where: str, name: str, hint: Any, is_async: bool) -> None:
    from flame_agents.agent._turn import AsyncTurn, Turn

    expected = AsyncTurn if is_async else Turn
    if hint is None or hint is expected:
        return
    kind = "an async" if is_async else "a sync"
    raise TypeError(
        f"{where}.handle: {kind} handle gets a {expected.__name__}: annotate `{name}` as "
        f"{expected.__name__} (or leave it unannotated), got {hint!r}"
    )


def takes_turn(hook: Any) -> bool:
    """Whether a hook (bound method) declares a parameter for the turn after ``ctx``."""
    params = [
        p
        for p in inspect.signature(hook).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    return len(params) >= 2


class Agent(Generic[C]):
    """Base class of agents: a typed entrypoint over a durable, journaled context.

    ::

        class ChatAgent(Agent[ChatContext]):
            def handle(self, req: Ask, ctx: ChatContext) -> Answer:
                ctx.messages.append(Message(role="user", text=req.text))
                return Answer(text=req.text.upper(), turns=len(ctx.messages))

        if __name__ == "__main__":
            ChatAgent.run()

    ``handle`` runs on a copy of the context; its changes are committed atomically with the
    reply, exactly once per idempotency key. If it raises, or leaves the context invalid, the
    invocation fails and the stored context is unchanged.
    """

    context_type: ClassVar[type[ContextModel]]
    """The context model (the ``Ctx`` of ``Agent[Ctx]``)."""
    request_type: ClassVar[type[BaseModel]]
    """The pydantic type of ``handle``'s request."""
    reply_type: ClassVar[type[BaseModel]]
    """The pydantic type ``handle`` returns."""
    is_async: ClassVar[bool] = False
    takes_turn: ClassVar[bool] = False
    """``handle`` declares a fourth parameter: it gets the :class:`Turn` (or AsyncTurn)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        ctx_type = _context_param(cls)
        if "handle" not in cls.__dict__ or isinstance(ctx_type, TypeVar):
            # An intermediate base (context still a type variable), or a subclass reusing an
            # already checked handle: nothing new to check.
            return
        where = f"{cls.__module__}.{cls.__qualname__}"
        if not (isinstance(ctx_type, type) and issubclass(ctx_type, ContextModel)):
            raise TypeError(
                f"{where}: declare the context model as the type argument, e.g. "
                f"`class {cls.__name__}(Agent[MyContext])` with MyContext(ContextModel)"
            )
        handle = cls.__dict__["handle"]
        params = list(inspect.signature(handle).parameters.values())
        if len(params) not in (3, 4) or any(
            p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params
        ):
            got = ", ".join(p.name for p in params)
            raise TypeError(
                f"{where}.handle must take (self, req, ctx) or (self, req, ctx, turn), got ({got})"
            )
        try:
            hints = typing.get_type_hints(handle)
        except Exception as exc:  # NameError for unresolvable forward references, and others
            raise TypeError(f"{where}.handle: cannot resolve its type hints: {exc}") from exc
        req_name, ctx_name = params[1].name, params[2].name
        req_type, ctx_hint, reply = hints.get(req_name), hints.get(ctx_name), hints.get("return")
        if not _is_model(req_type):
            raise TypeError(
                f"{where}.handle: annotate `{req_name}` with one pydantic BaseModel request "
                f"type, got {req_type!r}"
            )
        if ctx_hint is not ctx_type:
            raise TypeError(
                f"{where}.handle: annotate `{ctx_name}` as {ctx_type.__name__} (the agent's "
                f"context model), got {ctx_hint!r}"
            )
        if not _is_model(reply):
            raise TypeError(
                f"{where}.handle: annotate the return type with a pydantic BaseModel reply "
                f"type, got {reply!r}"
            )
        is_async = inspect.iscoroutinefunction(handle)
        if len(params) == 4:
            _check_turn_hint(where, params[3].name, hints.get(params[3].name), is_async)
        cls.takes_turn = len(params) == 4
        cls.context_type = typing.cast(type[ContextModel], ctx_type)
        cls.request_type = typing.cast(type[BaseModel], req_type)
        cls.reply_type = typing.cast(type[BaseModel], reply)
        cls.is_async = is_async

    if TYPE_CHECKING:
        # Declared as callables for type checkers: a subclass's handle takes (req, ctx) or
        # (req, ctx, turn), and either must type-check as an override.
        handle: Callable[..., Any]
        on_session_start: Callable[..., Any]
    else:

        def handle(self, req: Any, ctx: C) -> Any:
            """Answer one request; mutate ``ctx`` to change the session's state.

            Declare a fourth parameter (``turn: Turn``, or ``AsyncTurn`` when async) for
            durable steps, streamed items, interrupts and cancellation.
            """
            raise NotImplementedError

        def on_session_start(self, ctx: C) -> Any:
            """Called once per session before its first invocation; changes to ``ctx`` are kept.

            May be ``async``. Runs effectively once: its commit is keyed like an invocation. It
            may declare a ``turn`` parameter after ``ctx`` for durable steps (``turn.step``).
            """

    def on_session_end(self, ctx: C) -> Any:
        """Called when an instance leaves the session (closed or released); may be ``async``.

        Changes to ``ctx`` are committed like an invocation's.
        """

    @classmethod
    def run(cls) -> None:
        """Serve this agent on ``FLAME_INSTANCE_ENDPOINT`` until SIGTERM (like FlameInstance.run).

        Launched by the embedded runtime or by a Flame cluster from the application's command.
        Logs go to stderr at ``$FLAME_LOG_LEVEL`` (default info), or to your handlers once you
        configure Python logging (see the ``flame_agents`` logger).
        """
        from flame_agents._logging import follow_env_level
        from flame_agents.agent._server import AgentHandler
        from flame_agents.service.shim import serve

        follow_env_level()
        serve(AgentHandler(cls))
