"""The benchmark suite behind ``flame-agents bench``: our figures next to same-run baselines.

Layout: :mod:`.model` (rows, profiles, statistics), :mod:`.measure` (interleaved rounds),
:mod:`.harness` (runs scenarios, owns shared processes), :mod:`.report` (table, JSON, plot),
:mod:`.baselines` (gRPC floor, Ray peer, flamepy), :mod:`.scenarios`, :mod:`.services` (the
service processes the scenarios register) and :mod:`.cli` (the ``bench`` verb).
"""

from flame_agents.bench.harness import SuiteResult, run_suite
from flame_agents.bench.model import Profile, Row, Skip

__all__ = ["Profile", "Row", "Skip", "SuiteResult", "run_suite"]
