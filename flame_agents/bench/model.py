"""The data of a benchmark run: result rows, profiles (sizes), and the statistics used on samples.

A :class:`Row` compares one figure of ours with one baseline measured in the same run. Its
``ratio`` is always "how many times costlier than the baseline": ``value / baseline`` for
lower-is-better units (ms, bytes) and ``baseline / value`` for higher-is-better units (per
second), so ``> 1`` always means slower (or bigger) than the baseline, whatever the unit.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "HIGHER_IS_BETTER_UNITS",
    "Profile",
    "Row",
    "Skip",
    "cost_ratio",
    "median",
    "percentile",
]

HIGHER_IS_BETTER_UNITS = frozenset({"tasks/s", "invokes/s", "ops/s", "MB/s", "calls/s", "items/s"})
"""Units whose bigger values are better; every other unit is a cost (time, bytes)."""


def cost_ratio(value: float, baseline: float | None, unit: str) -> float | None:
    """How many times costlier ``value`` is than ``baseline`` (``> 1`` = worse), or None."""
    if baseline is None or baseline <= 0 or value <= 0:
        return None
    return baseline / value if unit in HIGHER_IS_BETTER_UNITS else value / baseline


@dataclass(frozen=True)
class Row:
    """One figure of ours next to one baseline of the same run (baseline fields None if none)."""

    scenario: str
    """Scenario name, e.g. ``invoke.warm``."""
    metric: str
    """What was measured, e.g. ``p50`` or ``put 64KiB p50``."""
    value: float
    """Our figure."""
    unit: str
    """Unit of ``value`` and ``baseline_value``."""
    baseline_name: str | None = None
    """Which baseline, e.g. ``grpc-2hop``, ``ray-actor``, ``flamepy``."""
    baseline_value: float | None = None
    """The baseline's figure for the same work, measured interleaved with ours."""
    ratio: float | None = None
    """Times costlier than the baseline (see module docstring); None without a baseline."""

    @classmethod
    def compare(
        cls,
        scenario: str,
        metric: str,
        value: float,
        unit: str,
        baseline_name: str | None = None,
        baseline_value: float | None = None,
    ) -> Row:
        """Build a row and compute its cost ratio."""
        return cls(
            scenario=scenario,
            metric=metric,
            value=value,
            unit=unit,
            baseline_name=baseline_name,
            baseline_value=baseline_value,
            ratio=cost_ratio(value, baseline_value, unit),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: exactly the seven documented keys."""
        return asdict(self)


@dataclass(frozen=True)
class Skip:
    """Something the run did not measure, and why (printed under the table, kept in the JSON)."""

    what: str
    reason: str


@dataclass(frozen=True)
class Profile:
    """Sizes of one run. ``quick`` keeps the whole suite under a minute on a 2-core machine."""

    name: str
    rounds: int
    """Interleaved rounds per comparison: each round runs every arm once, in rotated order."""
    invokes_per_round: int
    """Warm invocations (or gRPC calls) per arm and round."""
    throughput_tasks: int
    """No-op tasks per throughput trial."""
    throughput_instances: int
    """Instances (max_instances) of the throughput session."""
    throughput_concurrency: int
    """Client threads submitting at once."""
    sessions: int
    """Sessions open at once in the many-sessions scenario."""
    invokes_per_session: int
    heavy_rounds: int
    """Interleaved rounds of the heavy many-sessions comparison."""
    cold_starts: int
    """Cold-start trials per arm."""
    history_sizes: tuple[int, ...]
    """Agent history lengths (messages) at which turn latency is measured."""
    agent_turns: int
    """Turns measured per history size."""
    step_history_sizes: tuple[int, ...] = (10, 50_000)
    """History lengths (messages) at which the cost of one durable step is measured."""
    steps_per_turn: int = 20
    """No-op durable steps per measured turn (compared with the same turn without steps)."""
    cache_sizes: tuple[int, ...] = field(default=(100, 64 * 1024, 4 * 1024 * 1024))
    cache_ops: int = 20
    """Operations per arm, size and round in the cache scenario."""
    stream_items: int = 20_000
    """Small items of the one stream whose rate the agent-stream scenario measures."""

    @classmethod
    def quick(cls) -> Profile:
        """Tiny sizes: every scenario completes, figures are indicative only."""
        return cls(
            name="quick",
            rounds=2,
            invokes_per_round=10,
            throughput_tasks=60,
            throughput_instances=2,
            throughput_concurrency=8,
            sessions=5,
            invokes_per_session=5,
            heavy_rounds=1,
            cold_starts=1,
            history_sizes=(10, 200),
            agent_turns=3,
            step_history_sizes=(10, 200),
            steps_per_turn=10,
            cache_sizes=(100, 64 * 1024, 1024 * 1024),
            cache_ops=3,
            stream_items=2_000,
        )

    @classmethod
    def full(cls) -> Profile:
        """The sizes of issue 5: 100 sessions x 20 invokes, 50,000-message histories."""
        return cls(
            name="full",
            rounds=5,
            invokes_per_round=200,
            throughput_tasks=2000,
            throughput_instances=2,
            throughput_concurrency=32,
            sessions=100,
            invokes_per_session=20,
            heavy_rounds=2,
            cold_starts=5,
            history_sizes=(10, 1_000, 50_000),
            agent_turns=20,
            step_history_sizes=(10, 50_000),
            steps_per_turn=20,
            cache_ops=20,
        )


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by linear interpolation between closest ranks."""
    if not samples:
        raise ValueError("percentile of no samples")
    ordered = sorted(samples)
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def median(samples: Sequence[float]) -> float:
    """The median; raises ValueError on no samples."""
    if not samples:
        raise ValueError("median of no samples")
    return float(statistics.median(samples))
