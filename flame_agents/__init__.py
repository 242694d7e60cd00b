"""flame-agents: stateful agent and crawler services on the Flame session model."""

from typing import TYPE_CHECKING, Any

from flame_agents.errors import *  # noqa: F403  (the curated API is pinned in tests/test_public_api.py)
from flame_agents.errors import __all__ as _errors_all

if TYPE_CHECKING:
    from flame_agents.agent import (
        Agent,
        AgentSession,
        AsyncTurn,
        ContextModel,
        History,
        RetryPolicy,
        Turn,
    )
    from flame_agents.types import ResourceRequirement

# The agent layer pulls in the core and cache clients (grpc, pyarrow); load it on first use so
# `import flame_agents` stays cheap for the runtime and for processes that only need errors.
_AGENT_NAMES = frozenset(
    {"Agent", "AgentSession", "AsyncTurn", "ContextModel", "History", "RetryPolicy", "Turn"}
)


def __getattr__(name: str) -> Any:
    if name in _AGENT_NAMES:
        from flame_agents import agent

        return getattr(agent, name)
    if name == "ResourceRequirement":
        # types builds many dataclasses; a service process never needs it to start serving.
        from flame_agents.types import ResourceRequirement

        return ResourceRequirement
    raise AttributeError(f"module 'flame_agents' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    *_errors_all,
    "Agent",
    "AgentSession",
    "AsyncTurn",
    "ContextModel",
    "History",
    "ResourceRequirement",
    "RetryPolicy",
    "Turn",
    "__version__",
]
