"""A state store that fails on request: store errors before or after a write lands, and crashes.

:class:`FaultyStore` wraps any agent state store and passes every operation through, except the
ones a test arms a :class:`Fault` for. A fault fires once, on the ``skip + 1``-th matching
operation, either *before* the operation (nothing happens in the store) or *after* it (the write
landed, and the caller still gets the failure: the ambiguous case a network error after the
server applied a write produces). A fault's failure is a store error (a :class:`CacheError`, or
a retryable class such as :class:`RuntimeUnavailableError`) or a :class:`SimulatedCrash`, which
stands in for the death of the process at that point: it derives from ``BaseException`` so no
``except Exception`` of the code under test can swallow it, and whoever catches it drops the
instance as ``kill -9`` would.

:meth:`FaultyStore.before_next` runs a callback before the next operation of a kind (a second
writer committing between another writer's read and its commit). Used by
:class:`~flame_agents.testing.agents.AgentStateMachine`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

from flame_agents.agent.testing_support import Fetched, StateStore
from flame_agents.errors import CacheError, FlameAgentsError

__all__ = ["OPS", "Fault", "FaultyStore", "SimulatedCrash"]

Op = Literal["create", "fetch", "append", "replace", "write", "read", "delete"]
OPS: tuple[Op, ...] = ("create", "fetch", "append", "replace", "write", "read", "delete")
"""Every store operation a fault can target (``write`` and ``replace`` happen in compactions)."""

R = TypeVar("R")


class SimulatedCrash(BaseException):
    """The process died at this point (raised by a :class:`FaultyStore` fault of kind crash)."""


@dataclass
class Fault:
    """One failure to inject into the ``skip + 1``-th ``op`` from now."""

    op: Op
    """The store operation that fails."""
    when: Literal["before", "after"] = "before"
    """``before``: the operation does not happen; ``after``: it happens, then the failure."""
    kind: Literal["error", "crash"] = "error"
    """``error``: the operation raises ``error``; ``crash``: it raises :class:`SimulatedCrash`."""
    error: type[FlameAgentsError] = CacheError
    """The class of the store error raised by an ``error`` fault."""
    skip: int = 0
    """Matching operations to let through before this one fires."""

    def describe(self) -> str:
        return f"{self.kind} {self.when} {self.op} (after {self.skip} more)"


class FaultyStore:
    """A state store passing everything to ``inner`` except the operations faults are armed for.

    Thread-safe; ``fired`` lists the faults that went off, in order.
    """

    def __init__(self, inner: StateStore) -> None:
        self.inner = inner
        self.fired: list[Fault] = []
        self._faults: list[Fault] = []
        self._hooks: dict[str, list[Callable[[], None]]] = {}
        self._lock = threading.Lock()

    # -- arming -----------------------------------------------------------------------------

    def inject(self, fault: Fault) -> Fault:
        """Arm ``fault``; it fires once, then is forgotten."""
        with self._lock:
            self._faults.append(fault)
        return fault

    def before_next(self, op: Op, callback: Callable[[], None]) -> None:
        """Run ``callback`` once, just before the next ``op`` (it may use ``inner`` freely)."""
        with self._lock:
            self._hooks.setdefault(op, []).append(callback)

    @property
    def pending(self) -> list[Fault]:
        """Faults armed that have not fired yet."""
        with self._lock:
            return list(self._faults)

    def disarm(self) -> None:
        """Forget every fault and callback that has not fired."""
        with self._lock:
            self._faults.clear()
            self._hooks.clear()

    # -- the store protocol -----------------------------------------------------------------

    def _take(self, op: Op) -> tuple[Fault | None, list[Callable[[], None]]]:
        with self._lock:
            hooks = self._hooks.pop(op, [])
            for fault in self._faults:
                if fault.op != op:
                    continue
                if fault.skip > 0:
                    fault.skip -= 1
                    return None, hooks
                self._faults.remove(fault)
                self.fired.append(fault)
                return fault, hooks
            return None, hooks

    def _run(self, op: Op, key: str, call: Callable[[], R]) -> R:
        fault, hooks = self._take(op)
        for hook in hooks:
            hook()
        if fault is not None and fault.when == "before":
            self._fail(fault, key)
        result = call()
        if fault is not None:
            self._fail(fault, key)
        return result

    @staticmethod
    def _fail(fault: Fault, key: str) -> None:
        what = f"injected fault: {fault.kind} {fault.when} {fault.op} on {key}"
        if fault.kind == "crash":
            raise SimulatedCrash(what)
        raise fault.error(what, key=key)

    def create(self, prefix: str, data: bytes) -> str:
        return self._run("create", prefix, lambda: self.inner.create(prefix, data))

    def fetch(self, key: str, *, since_version: int = 0) -> Fetched:
        return self._run("fetch", key, lambda: self.inner.fetch(key, since_version=since_version))

    def append(self, key: str, data: bytes, *, expected_version: int) -> int:
        return self._run(
            "append", key, lambda: self.inner.append(key, data, expected_version=expected_version)
        )

    def replace(self, key: str, data: bytes, *, expected_version: int) -> int:
        return self._run(
            "replace",
            key,
            lambda: self.inner.replace(key, data, expected_version=expected_version),
        )

    def write(self, key: str, data: bytes) -> None:
        self._run("write", key, lambda: self.inner.write(key, data))

    def read(self, key: str) -> bytes:
        return self._run("read", key, lambda: self.inner.read(key))

    def delete(self, key: str) -> None:
        self._run("delete", key, lambda: self.inner.delete(key))
