"""What a runner's client and its service instances exchange (both sides import this module).

* The session's ``common_data`` is the BSON :class:`~flame_agents.cache.ObjectRef` of a cache
  object at ``<app>/<session_id>`` holding ``cloudpickle.dumps(Target)``. For an instance
  (a stateful service) the service writes the object's state back there after every call.
* A task's input is ``cloudpickle.dumps(Call)``; its output is the BSON ObjectRef of the
  result, which the service stores at ``<app>/<session_id>`` in the object cache. A result is
  therefore passed on to another call by reference, never through the client.
* A call's top-level arguments that are refs (``ObjectRef``, or an ``ObjectFuture``'s result)
  travel as :class:`Slot` markers plus the list of refs: the service reads each object from the
  cache and passes it in place of its marker.
"""

from __future__ import annotations

import enum
import functools
import inspect
from dataclasses import dataclass
from typing import Any

from flame_agents.cache import ObjectRef

__all__ = [
    "SERVICE_MODULE",
    "Call",
    "Kind",
    "Slot",
    "Target",
    "kind_of",
    "public_methods",
]

SERVICE_MODULE = "flame_agents.runner"
"""The module a runner application runs (``python -m flame_agents.runner``)."""


class Kind(str, enum.Enum):
    """What a runner service exposes."""

    FUNCTION = "function"
    """A function: each call runs it; instances are interchangeable (stateless)."""
    CLASS = "class"
    """A class: each instance of the session makes its own object; calls go to its methods."""
    INSTANCE = "instance"
    """An object: one instance serves it, and its state is saved after every call."""


@dataclass(frozen=True)
class Target:
    """The object a session serves, as stored in the cache."""

    kind: Kind
    obj: Any


@dataclass(frozen=True)
class Slot:
    """Stands for the ``index``-th ref of a :class:`Call` among its pickled arguments."""

    index: int


@dataclass(frozen=True)
class Call:
    """One remote call: ``method`` (``None``: call the target itself) with pickled arguments."""

    method: str | None
    arguments: bytes
    """``cloudpickle.dumps((args, kwargs))``, with :class:`Slot` markers for refs."""
    refs: tuple[ObjectRef, ...] = ()
    """The objects to pass in place of the markers, in index order."""


def kind_of(obj: Any) -> Kind:
    """Classify ``obj``: a class, a function (or partial, builtin, bound method), or else an
    object whose methods are called."""
    if inspect.isclass(obj):
        return Kind.CLASS
    if inspect.isroutine(obj) or isinstance(obj, functools.partial):
        return Kind.FUNCTION
    return Kind.INSTANCE


def public_methods(obj: Any) -> tuple[str, ...]:
    """Names of ``obj``'s public methods (no leading ``_``; nested classes are not methods).

    Looked up statically, so reading the names runs no property of the object.
    """
    names = []
    for name in dir(obj):
        if name.startswith("_"):
            continue
        try:
            raw = inspect.getattr_static(obj, name)
        except AttributeError:
            continue
        if isinstance(raw, (staticmethod, classmethod)) or (
            callable(raw) and not inspect.isclass(raw)
        ):
            names.append(name)
    return tuple(names)
