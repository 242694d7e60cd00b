"""The scenarios of issue 5 section 2, in the order the suite runs them."""

from __future__ import annotations

from flame_agents.bench.harness import Scenario

__all__ = ["all_scenarios"]


def all_scenarios() -> list[Scenario]:
    """Every scenario, cheapest first, so a quick look gets the headline figures early."""
    from flame_agents.bench.scenarios.agent_turn import AgentTurn
    from flame_agents.bench.scenarios.cache import CacheOps
    from flame_agents.bench.scenarios.cold_start import ColdStart
    from flame_agents.bench.scenarios.durable_step import DurableStep
    from flame_agents.bench.scenarios.invoke import NoopInvoke, WarmInvoke
    from flame_agents.bench.scenarios.memory import ResidentMemory
    from flame_agents.bench.scenarios.sessions import ManySessions
    from flame_agents.bench.scenarios.stream import TurnStreams
    from flame_agents.bench.scenarios.throughput import Throughput

    return [
        WarmInvoke(),
        NoopInvoke(),
        Throughput(),
        ManySessions(),
        ColdStart(),
        CacheOps(),
        AgentTurn(),
        TurnStreams(),
        DurableStep(),
        ResidentMemory(),
    ]
