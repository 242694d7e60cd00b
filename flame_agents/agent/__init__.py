"""The agent layer: typed, durable, effectively-once sessions for agents and crawlers.

``Agent[Ctx]`` serves a typed ``handle(req, ctx) -> reply`` over a journaled context;
``AgentSession`` opens and invokes agent sessions from any process; ``ContextModel`` and
``History`` describe the context; ``RetryPolicy`` bounds client retries; ``Turn`` (``AsyncTurn``
in an async handler) gives a handler durable steps, streamed items, interrupts and cancellation;
``TurnStream`` is what ``AgentSession.stream`` returns (a turn's emitted items, then its reply).
"""

from flame_agents.agent._agent import Agent
from flame_agents.agent._context import ContextModel, Migration
from flame_agents.agent._history import History
from flame_agents.agent._retry import RetryPolicy
from flame_agents.agent._session import AgentSession
from flame_agents.agent._turn import AsyncTurn, Turn
from flame_agents.agent._turn_stream import TurnStream

__all__ = [
    "Agent",
    "AgentSession",
    "AsyncTurn",
    "ContextModel",
    "History",
    "Migration",
    "RetryPolicy",
    "Turn",
    "TurnStream",
]
