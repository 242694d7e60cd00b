"""Measuring on a shared, noisy machine: interleaved rounds, pooled samples, median rows.

Every arm (ours and each baseline) runs once per round, in an order rotated each round, so a
burst of noise from a neighbour hits all arms alike instead of one arm's whole sample.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

from flame_agents.bench.model import Row, median, percentile
from flame_agents.bench.progress import Progress

__all__ = ["OURS", "concurrent_rate", "interleaved", "latency_rows", "time_calls", "value_rows"]

OURS = "ours"
"""The arm name of our own implementation in every comparison."""

Arm = Callable[[], Sequence[float]]
"""Runs one batch and returns its samples (seconds, or any per-trial figure)."""


def interleaved(
    arms: Mapping[str, Arm], *, rounds: int, progress: Progress | None = None
) -> dict[str, list[float]]:
    """Run each arm once per round (rotated order); return every arm's pooled samples."""
    names = list(arms)
    pooled: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            pooled[name].extend(arms[name]())
        if progress is not None:
            progress.advance()
    return pooled


def time_calls(call: Callable[[], object], n: int) -> list[float]:
    """Seconds taken by each of ``n`` sequential calls."""
    samples: list[float] = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return samples


def latency_rows(
    scenario: str,
    pooled: Mapping[str, Sequence[float]],
    *,
    quantiles: Sequence[tuple[str, float]] = (("p50", 50.0), ("p99", 99.0)),
    prefix: str = "",
) -> list[Row]:
    """p50/p99 (ms) of ours, one row per baseline arm (a bare row when there is none)."""
    rows: list[Row] = []
    ours = pooled[OURS]
    for label, q in quantiles:
        value = percentile(ours, q) * 1e3
        baselines = [(n, s) for n, s in pooled.items() if n != OURS and s]
        if not baselines:
            rows.append(Row.compare(scenario, prefix + label, value, "ms"))
        for name, samples in baselines:
            base = percentile(samples, q) * 1e3
            rows.append(Row.compare(scenario, prefix + label, value, "ms", name, base))
    return rows


def value_rows(
    scenario: str, metric: str, pooled: Mapping[str, Sequence[float]], unit: str
) -> list[Row]:
    """Median of per-trial figures of ours, one row per baseline arm (bare row if none)."""
    value = median(pooled[OURS])
    baselines = [(n, s) for n, s in pooled.items() if n != OURS and s]
    if not baselines:
        return [Row.compare(scenario, metric, value, unit)]
    return [Row.compare(scenario, metric, value, unit, n, median(s)) for n, s in baselines]


def concurrent_rate(call: Callable[[], object], *, total: int, concurrency: int) -> float:
    """Calls per second when ``concurrency`` threads share ``total`` calls of ``call``."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    lock = threading.Lock()
    remaining = [total]

    def worker() -> None:
        while True:
            with lock:
                if remaining[0] <= 0:
                    return
                remaining[0] -= 1
            call()

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for fut in [pool.submit(worker) for _ in range(concurrency)]:
            fut.result()  # re-raise the first failure instead of reporting a bogus rate
    return total / (time.perf_counter() - start)
