"""The benchmark suite behind ``flame-agents bench``: our figures next to same-run baselines.

Layout: :mod:`.model` (rows, profiles, statistics), :mod:`.measure` (interleaved rounds),
:mod:`.harness` (runs scenarios, owns shared processes), :mod:`.report` (table, JSON, plot),
:mod:`.baselines` (gRPC floor, Ray peer, flamepy), :mod:`.scenarios`, :mod:`.services` (the
service processes the scenarios register) and :mod:`.cli` (the ``bench`` verb).
"""

from typing import TYPE_CHECKING, Any

from flame_agents.bench.model import Profile, Row, Skip

if TYPE_CHECKING:
    from flame_agents.bench.harness import SuiteResult, run_suite


def __getattr__(name: str) -> Any:
    # The harness loads grpc and the baselines; the CLI imports this package for its parser only.
    if name in ("SuiteResult", "run_suite"):
        from flame_agents.bench import harness

        return getattr(harness, name)
    raise AttributeError(f"module 'flame_agents.bench' has no attribute {name!r}")


__all__ = ["Profile", "Row", "Skip", "SuiteResult", "run_suite"]
