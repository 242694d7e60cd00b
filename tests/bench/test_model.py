"""Pure parts of the benchmark suite: statistics, cost ratios, interleaving, the table."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from flame_agents.bench.harness import SuiteResult
from flame_agents.bench.measure import OURS, interleaved, latency_rows
from flame_agents.bench.model import Row, Skip, cost_ratio, percentile
from flame_agents.bench.report import format_table


def test_percentile_interpolates_between_closest_ranks() -> None:
    """p50 of an even sample is the mean of the middle two; p0/p100 are min and max."""
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == pytest.approx(2.5)
    assert percentile([5.0, 1.0], 0) == 1.0
    assert percentile([5.0, 1.0], 100) == 5.0


def test_cost_ratio_is_above_one_when_worse_for_costs_and_rates_alike() -> None:
    """Twice the latency and half the rate both read as 2x costlier."""
    assert cost_ratio(2.0, 1.0, "ms") == pytest.approx(2.0)
    assert cost_ratio(50.0, 100.0, "tasks/s") == pytest.approx(2.0)
    assert cost_ratio(1.0, None, "ms") is None


def test_interleaved_rotates_the_arm_order_each_round() -> None:
    """Each round starts with a different arm, so noise bursts spread over all arms."""
    order: list[str] = []

    def arm(name: str) -> Callable[[], list[float]]:
        def run() -> list[float]:
            order.append(name)
            return [1.0]

        return run

    pooled = interleaved({"a": arm("a"), "b": arm("b"), "c": arm("c")}, rounds=3)
    assert order == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert pooled == {"a": [1.0] * 3, "b": [1.0] * 3, "c": [1.0] * 3}


def test_latency_rows_compare_ours_with_each_baseline_in_ms() -> None:
    """One row per quantile and baseline, values in milliseconds."""
    rows = latency_rows("s", {OURS: [0.002, 0.004], "floor": [0.001, 0.001]})
    p50 = next(r for r in rows if r.metric == "p50")
    assert p50.value == pytest.approx(3.0)
    assert p50.baseline_name == "floor"
    assert p50.ratio == pytest.approx(3.0)


def test_table_lists_rows_skips_and_failures() -> None:
    """The text table carries every row plus the skipped and failed scenarios."""
    result = SuiteResult(
        profile="quick",
        rows=[Row.compare("invoke.warm", "p50", 2.0, "ms", "grpc-2hop", 1.0)],
        skips=[Skip("ray-actor baseline", "ray is not importable")],
        failures={"cache": "CacheError: boom\ntraceback"},
    )
    text = format_table(result)
    assert "invoke.warm" in text and "2.00x" in text
    assert "skipped: ray-actor baseline" in text
    assert "FAILED: cache: CacheError: boom" in text
    assert "| scenario |" in format_table(result, markdown=True)


def test_durable_step_reports_noise_as_not_measured_rather_than_a_negative_cost() -> None:
    """Per-step cost is the p50 difference over the step count; when noise makes it zero or
    negative the scenario records a skip instead of a row, and a baseline likewise."""
    import io

    from flame_agents.bench.harness import BenchContext
    from flame_agents.bench.model import Profile
    from flame_agents.bench.progress import Progress
    from flame_agents.bench.scenarios.durable_step import DurableStep, per_step

    assert per_step([0.030, 0.032], [0.010, 0.012], 10) == pytest.approx(0.002)
    ctx = BenchContext(Profile.quick(), Progress(1, stream=io.StringIO()), use_ray=False)
    scenario = DurableStep()
    fine = {"ours": [0.03], "ours-0": [0.01], "dbos": [0.05], "dbos-0": [0.01]}
    row = scenario._step_row(ctx, "step", fine, 10, "dbos-sqlite")
    assert row is not None and row.value == pytest.approx(2.0) and row.ratio == pytest.approx(0.5)
    noisy_dbos = {**fine, "dbos": [0.01], "dbos-0": [0.02]}
    row = scenario._step_row(ctx, "step", noisy_dbos, 10, "dbos-sqlite")
    assert row is not None and row.baseline_name is None
    assert scenario._step_row(ctx, "step", {"ours": [0.01], "ours-0": [0.02]}, 10, "x") is None
    assert [s.what for s in ctx.skips] == [
        "durable_step step dbos-sqlite",
        "durable_step step",
    ]
    ctx.close()
