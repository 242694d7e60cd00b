"""What :mod:`flame_agents.testing` builds on: an agent's commit path without a runtime.

The test helpers (``AgentHarness``, ``AgentStateMachine``, ``FaultyStore``) run an agent
through the same handler, state journal and envelopes its service process uses, against a state
store of their choosing. This module is their seam into the agent layer, so they import no
private module of it; the names are not part of the curated API of :mod:`flame_agents.agent`.
"""

from flame_agents.agent._envelope import (
    ReplyEnvelope,
    encode_drop,
    encode_request,
    encode_resume,
    error_from_message,
)
from flame_agents.agent._journal import DEFAULT_CHUNK
from flame_agents.agent._server import AgentHandler
from flame_agents.agent._state import DEFAULT_COMPACT_EVERY, StateHandle
from flame_agents.agent._state_objects import create_state
from flame_agents.agent._store import Fetched, MemoryStore, StateStore

__all__ = [
    "DEFAULT_CHUNK",
    "DEFAULT_COMPACT_EVERY",
    "AgentHandler",
    "Fetched",
    "MemoryStore",
    "ReplyEnvelope",
    "StateHandle",
    "StateStore",
    "create_state",
    "encode_drop",
    "encode_request",
    "encode_resume",
    "error_from_message",
]
