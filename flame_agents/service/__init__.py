"""The seed's service API: ``FlameInstance`` (service side) and ``Session`` (client side).

A drop-in for ``flamepy.service``: ``from flame_agents import service`` /
``from flame_agents.service import Session`` in place of flamepy, same behaviour and wire.
"""

from flame_agents.service.instance import FlameInstance
from flame_agents.service.session import Session

__all__ = ["FlameInstance", "Session"]
