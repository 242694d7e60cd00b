"""Present a run: a fixed-width table for stdout, results.json, and a PNG of the ratios.

The plot needs matplotlib (the ``bench`` extra); without it the run still writes the JSON and
says in one line how to get the plot.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from flame_agents.bench.harness import SuiteResult
from flame_agents.bench.model import Row

__all__ = ["format_table", "write_outputs"]

_HEADERS = ("scenario", "metric", "ours", "unit", "baseline", "baseline value", "ratio")


def _num(x: float | None) -> str:
    if x is None:
        return "-"
    if x == 0 or abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.3g}" if abs(x) < 1 else f"{x:.2f}"


def _cells(row: Row) -> tuple[str, ...]:
    ratio = "-" if row.ratio is None else f"{row.ratio:.2f}x"
    return (
        row.scenario,
        row.metric,
        _num(row.value),
        row.unit,
        row.baseline_name or "-",
        _num(row.baseline_value),
        ratio,
    )


def format_table(result: SuiteResult, *, markdown: bool = False) -> str:
    """The rows as an aligned text table (or a Markdown table), then skips and failures."""
    body = [_cells(r) for r in result.rows]
    lines: list[str] = []
    if markdown:
        lines.append("| " + " | ".join(_HEADERS) + " |")
        lines.append("|" + "|".join("---" for _ in _HEADERS) + "|")
        lines.extend("| " + " | ".join(cells) + " |" for cells in body)
    else:
        widths = [max(len(h), *(len(c[i]) for c in body)) for i, h in enumerate(_HEADERS)]
        lines.append("  ".join(h.ljust(w) for h, w in zip(_HEADERS, widths, strict=True)))
        lines.append("  ".join("-" * w for w in widths))
        for cells in body:
            numeric = {2, 5, 6}  # right-align figures so magnitudes line up
            lines.append(
                "  ".join(
                    c.rjust(w) if i in numeric else c.ljust(w)
                    for i, (c, w) in enumerate(zip(cells, widths, strict=True))
                )
            )
    lines.append("")
    lines.append(
        f"ratio = times costlier than the baseline measured in the same run (>1 = slower); "
        f"profile {result.profile}, {result.meta.get('elapsed_s', '?')} s"
    )
    lines.extend(f"skipped: {s.what}: {s.reason}" for s in result.skips)
    for name, err in result.failures.items():
        first = err.splitlines()[0] if err else ""
        lines.append(f"FAILED: {name}: {first}")
    return "\n".join(lines)


def write_outputs(result: SuiteResult, out: Path) -> list[str]:
    """Write results.json (and results.png when matplotlib is there); returns notes to print."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    notes = [f"wrote {out / 'results.json'}"]
    try:
        mpl: Any = importlib.import_module("matplotlib")
        mpl.use("Agg")  # no display on servers and in CI; must precede importing pyplot
        plt: Any = importlib.import_module("matplotlib.pyplot")
    except ImportError:
        notes.append(
            "no plot: matplotlib is not installed (pip install 'flame-agents[bench]' to get "
            "results.png)"
        )
        return notes
    _plot(plt, result, out / "results.png")
    notes.append(f"wrote {out / 'results.png'}")
    return notes


def _plot(plt: Any, result: SuiteResult, path: Path) -> None:
    rows = [r for r in result.rows if r.ratio is not None]
    height = max(2.5, 0.28 * len(rows) + 1.2)
    fig, ax = plt.subplots(figsize=(10, height))
    try:
        labels = [f"{r.scenario} {r.metric} vs {r.baseline_name}" for r in rows]
        ratios = [r.ratio for r in rows]
        colors = ["tab:green" if (x or 0) <= 1.5 else "tab:red" for x in ratios]
        ax.barh(range(len(rows)), ratios, color=colors)
        ax.set_yticks(range(len(rows)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("times costlier than the same-run baseline (log; 1 = equal)")
        ax.set_title(f"flame-agents bench ({result.profile})")
        fig.tight_layout()
        fig.savefig(path, dpi=110, bbox_inches="tight")  # long labels stay inside
    finally:
        plt.close(fig)
