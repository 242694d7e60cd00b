"""Public test helpers: :class:`LocalRuntime`, a throw-away embedded runtime for tests."""

from flame_agents.testing.runtime import LocalRuntime

__all__ = ["LocalRuntime"]
