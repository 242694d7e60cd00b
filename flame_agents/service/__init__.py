"""The seed's service API: ``FlameInstance`` (service side) and ``Session`` (client side).

A drop-in for ``flamepy.service``: ``from flame_agents import service`` /
``from flame_agents.service import Session`` in place of flamepy, same behaviour and wire.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flame_agents.service.instance import FlameInstance

if TYPE_CHECKING:
    from flame_agents.service.session import Session

__all__ = ["FlameInstance", "Session"]


def __getattr__(name: str) -> Any:
    # Session needs the core client and the object cache (pyarrow). Loading it on first use
    # keeps a service process, which only needs FlameInstance, quick to start: Flame starts one
    # process per session binding.
    if name == "Session":
        from flame_agents.service.session import Session

        return Session
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
