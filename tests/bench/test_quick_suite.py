"""The quick benchmark profile end to end: every scenario completes and the outputs are well-formed.

No timing is asserted: the figures depend on the machine; only the shape of the results is.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import psutil
import pytest

from flame_agents.bench.cli import run_bench
from flame_agents.bench.scenarios import all_scenarios

ROW_KEYS = {"scenario", "metric", "value", "unit", "baseline_name", "baseline_value", "ratio"}


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@pytest.mark.e2e
@pytest.mark.timeout(600)  # ~1 minute alone; shared CI machines can be several times slower
def test_quick_profile_completes_every_scenario_with_well_formed_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`bench --quick --out DIR` runs every scenario to completion and writes valid results.json."""
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    args = argparse.Namespace(quick=True, out=tmp_path, only=None, ray=False, list=False)
    code = run_bench(args)
    out = capsys.readouterr().out

    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["failures"] == {}, doc["failures"]
    assert code == 0
    names = [s.name for s in all_scenarios()]
    assert doc["completed"] == names, doc["skips"]
    assert doc["profile"] == "quick"
    assert set(doc["meta"]) >= {"version", "python", "cpus", "elapsed_s"}
    assert doc["rows"], "no rows"
    for row in doc["rows"]:
        assert set(row) == ROW_KEYS, row
        assert row["scenario"] in names
        assert isinstance(row["metric"], str) and isinstance(row["unit"], str)
        assert _is_number(row["value"]) and row["value"] >= 0, row
        if row["baseline_name"] is None:
            assert row["baseline_value"] is None and row["ratio"] is None, row
        else:
            assert _is_number(row["baseline_value"]), row
            assert row["ratio"] is None or _is_number(row["ratio"]), row
    assert {row["scenario"] for row in doc["rows"]} == set(names)
    for name in names:
        assert name in out  # the table printed every scenario
    # Every process the suite started (runtime, instances, baselines) is gone again.
    leftover = {p.pid for p in psutil.Process().children(recursive=True)} - before
    assert not [p for p in leftover if psutil.pid_exists(p)], leftover
