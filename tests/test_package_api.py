"""The curated public API: what `flame_agents` and its public subpackages export, pinned."""

from __future__ import annotations

import importlib

import pytest

import flame_agents
from flame_agents import errors

PINNED = {
    "flame_agents": {
        *errors.__all__,
        "Agent",
        "AgentSession",
        "AsyncTurn",
        "ContextModel",
        "History",
        "ResourceRequirement",
        "RetryPolicy",
        "Turn",
        "__version__",
    },
    "flame_agents.service": {"FlameInstance", "Session"},
    "flame_agents.agent": {
        "Agent",
        "AgentSession",
        "AsyncTurn",
        "ContextModel",
        "History",
        "Migration",
        "RetryPolicy",
        "Turn",
        "TurnStream",
    },
    "flame_agents.runner": {"ObjectFuture", "Runner", "RunnerService"},
    "flame_agents.testing": {"AgentHarness", "AgentStateMachine", "LocalRuntime"},
}


@pytest.mark.parametrize("module", sorted(PINNED))
def test_all_is_pinned(module: str) -> None:
    """Each public module's __all__ is exactly the pinned set: additions are deliberate."""
    assert set(importlib.import_module(module).__all__) == PINNED[module]


@pytest.mark.parametrize("module", sorted(PINNED))
def test_every_exported_name_resolves(module: str) -> None:
    """Every name in __all__ (including lazily loaded ones) can be imported."""
    mod = importlib.import_module(module)
    for name in mod.__all__:
        assert getattr(mod, name) is not None, f"{module}.{name}"


def test_every_error_derives_from_the_one_base() -> None:
    """Every exported exception class belongs to the single FlameAgentsError tree."""
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.FlameAgentsError)


def test_seed_guide_import_forms() -> None:
    """The seed guide's imports work with flame_agents in place of flamepy."""
    from flame_agents import service
    from flame_agents.service import Session

    assert service.FlameInstance is not None and Session is service.Session
    req = flame_agents.ResourceRequirement.from_string("cpu=2,mem=4g")
    assert (req.cpu, req.memory) == (2, 4 * 1024**3)
