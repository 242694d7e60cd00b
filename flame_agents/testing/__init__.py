"""Public test helpers.

- :class:`LocalRuntime`: a throw-away embedded runtime (temp home, free ports) for tests.
- :class:`AgentHarness`: run an agent in-process, with no runtime, through the real commit path.
- :class:`AgentStateMachine`: a hypothesis state machine that drives an agent against a plain
  in-memory model of its context (needs hypothesis installed).
"""

from typing import TYPE_CHECKING, Any

from flame_agents.testing.runtime import LocalRuntime

if TYPE_CHECKING:
    from flame_agents.testing.agents import AgentHarness, AgentStateMachine

# The agent helpers load the agent layer (and, for the state machine, hypothesis); import them
# on first use so runtime-only tests stay light.
_AGENT_HELPERS = frozenset({"AgentHarness", "AgentStateMachine"})


def __getattr__(name: str) -> Any:
    if name in _AGENT_HELPERS:
        from flame_agents.testing import agents

        return getattr(agents, name)
    raise AttributeError(f"module 'flame_agents.testing' has no attribute {name!r}")


__all__ = ["AgentHarness", "AgentStateMachine", "LocalRuntime"]
