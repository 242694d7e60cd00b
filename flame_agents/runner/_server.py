"""The service side of a runner: what ``python -m flame_agents.runner`` serves on an instance.

On entering a session it reads the session's :class:`~flame_agents.runner._protocol.Target`
from the object cache (importing the user's modules from the installed package) and, for a
class, makes the object; each task is one :class:`~flame_agents.runner._protocol.Call`, whose
result it stores in the cache, answering with the result's ref. An object (a stateful target)
is written back to the cache after each call, so a later instance of the session resumes it.
"""

from __future__ import annotations

import asyncio
import inspect
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import cloudpickle

from flame_agents import cache
from flame_agents._logging import get_logger
from flame_agents.cache import ObjectRef
from flame_agents.errors import InvalidArgumentError, InvalidStateError
from flame_agents.runner._protocol import Call, Kind, Slot, Target, public_methods

__all__ = ["RunnerHandler", "main"]

_MAX_PARALLEL_READS = 8
_log = get_logger(__name__)


class RunnerHandler:
    """The instance handler of a runner application (one session at a time)."""

    def __init__(self) -> None:
        """Start unbound; the launcher calls :meth:`on_session_enter` first."""
        self._kind: Kind | None = None
        self._obj: Any = None
        self._methods: tuple[str, ...] = ()
        self._ref: ObjectRef | None = None
        self._prefix = ""
        self._loop: asyncio.AbstractEventLoop | None = None

    def on_session_enter(
        self, session_id: str, application_name: str, common_data: bytes | None
    ) -> None:
        """Load what the session serves; a class is instantiated here, once per instance."""
        if not common_data:
            raise InvalidArgumentError(
                f"session {session_id!r} has no common data, so it names nothing to serve; "
                "runner sessions are opened by flame_agents.runner.Runner.service()",
                session_id=session_id,
            )
        ref = ObjectRef.decode(common_data)
        stored = cache.get_object(ref)
        try:
            target = cloudpickle.loads(stored)
        except ModuleNotFoundError as exc:
            raise ModuleNotFoundError(
                f"{exc}: the instance cannot import the module of the object the runner "
                "serves; it must be in the runner's project folder (which is packaged), one "
                "of its dependencies, or the script that runs the runner",
                name=exc.name,
            ) from exc
        if not isinstance(target, Target):
            raise InvalidArgumentError(
                f"session {session_id!r}: its common data refers to a "
                f"{type(target).__name__}, not a runner target; runner sessions are opened "
                "by flame_agents.runner.Runner.service()",
                session_id=session_id,
            )
        obj = target.obj() if target.kind is Kind.CLASS else target.obj
        self._kind, self._obj, self._ref = target.kind, obj, ref
        self._methods = () if target.kind is Kind.FUNCTION else public_methods(obj)
        self._prefix = f"{application_name}/{session_id}"

    def on_task_invoke(self, task_id: str, session_id: str, input: bytes | None) -> bytes:
        """Run one call and answer with the BSON ref of its result in the object cache."""
        if self._kind is None or self._ref is None:
            raise InvalidStateError("a task arrived before the session was entered")
        call = cloudpickle.loads(input) if input is not None else None
        if not isinstance(call, Call):
            raise InvalidArgumentError(
                f"task {task_id}: the input is not a runner call; runner tasks are sent by "
                "flame_agents.runner services"
            )
        args, kwargs = cloudpickle.loads(call.arguments)
        values = _read_all(call.refs)
        args = tuple(values[a.index] if isinstance(a, Slot) else a for a in args)
        kwargs = {k: values[v.index] if isinstance(v, Slot) else v for k, v in kwargs.items()}
        result = self._function(call.method)(*args, **kwargs)
        if inspect.isawaitable(result):
            if self._loop is None:
                self._loop = asyncio.new_event_loop()  # one loop, kept across calls
            result = self._loop.run_until_complete(_awaited(result))
        if self._kind is Kind.INSTANCE:
            self._ref = cache.update_object(
                self._ref, cloudpickle.dumps(Target(Kind.INSTANCE, self._obj))
            )
        return cache.put_object(self._prefix, result).encode()

    def on_session_leave(self) -> None:
        """Drop the session's object."""
        self._kind = self._obj = self._ref = None
        self._methods = ()
        if self._loop is not None:
            self._loop.close()
            self._loop = None

    def _function(self, method: str | None) -> Any:
        if method is None:
            if not callable(self._obj):
                raise InvalidArgumentError(
                    f"the served {type(self._obj).__name__} object is not callable; call one "
                    "of its methods"
                )
            return self._obj
        if method not in self._methods:
            raise InvalidArgumentError(
                f"the served object has no public method {method!r}; its public methods: "
                f"{', '.join(self._methods) or 'none'}",
                method=method,
            )
        return getattr(self._obj, method)


async def _awaited(value: Any) -> Any:
    return await value


def _read_all(refs: tuple[ObjectRef, ...]) -> list[Any]:
    """The objects of ``refs``, read in parallel when there are several."""
    if len(refs) <= 1:
        return [cache.get_object(r) for r in refs]
    with ThreadPoolExecutor(max_workers=min(len(refs), _MAX_PARALLEL_READS)) as pool:
        return list(pool.map(cache.get_object, refs))


def main() -> None:
    """Serve a runner application on ``FLAME_INSTANCE_ENDPOINT`` until SIGTERM."""
    from flame_agents._logging import follow_env_level
    from flame_agents.service.shim import serve

    follow_env_level()
    serve(RunnerHandler())
