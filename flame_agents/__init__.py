"""flame-agents: stateful agent and crawler services on the Flame session model."""

from flame_agents.errors import *  # noqa: F403  (the curated API is pinned in tests/test_public_api.py)
from flame_agents.errors import __all__ as _errors_all

__version__ = "0.1.0"

__all__ = [*_errors_all, "__version__"]
