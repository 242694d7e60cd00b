"""``flame-agents bench [--quick] [--out DIR] [--only NAMES] [--[no-]ray] [--list]``: run the suite.

The table goes to stdout, progress and notes to stderr. Exit code 1 when a scenario failed (the
table still shows everything that completed), 2 for an unknown scenario name.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

__all__ = ["add_bench_parser", "run_bench"]


def add_bench_parser(subparsers: Any) -> None:
    """Add the ``bench`` verb to the CLI's sub-parsers (sets ``func=run_bench``)."""
    parser = subparsers.add_parser(
        "bench",
        help="run the benchmark suite against same-run baselines",
        description="Measure the embedded runtime (started in a temp home for the run) next to "
        "baselines measured in the same run: a bare gRPC echo (1 and 2 hops), a Ray actor "
        "(when ray is installed) and the flamepy 0.6.0 client. Prints a table of ratios.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes: the whole suite in under a minute"
    )
    parser.add_argument(
        "--out", metavar="DIR", type=Path, help="write results.json (and results.png) here"
    )
    parser.add_argument(
        "--only",
        metavar="NAMES",
        help="comma-separated scenario names or prefixes, e.g. invoke,cache (default: all)",
    )
    parser.add_argument(
        "--ray",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="measure the Ray actor baseline (default: on when ray is installed, off with "
        "--quick since starting Ray alone takes longer than the quick suite)",
    )
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.set_defaults(func=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    """Run the scenarios selected by ``args``; print the table; write outputs with ``--out``."""
    from flame_agents.bench.harness import run_suite
    from flame_agents.bench.model import Profile
    from flame_agents.bench.report import format_table, write_outputs
    from flame_agents.bench.scenarios import all_scenarios

    scenarios = all_scenarios()
    if getattr(args, "list", False):
        for s in scenarios:
            print(f"{s.name:<12} {s.description}")
        return 0
    only = getattr(args, "only", None)
    if only:
        wanted = [w.strip() for w in only.split(",") if w.strip()]
        unknown = [w for w in wanted if not any(s.name.startswith(w) for s in scenarios)]
        if unknown:
            names = ", ".join(s.name for s in scenarios)
            print(
                f"error: unknown scenario(s) {', '.join(unknown)}; known: {names}", file=sys.stderr
            )
            return 2
        scenarios = [s for s in scenarios if any(s.name.startswith(w) for w in wanted)]
    profile = Profile.quick() if getattr(args, "quick", False) else Profile.full()
    use_ray = getattr(args, "ray", None)
    if use_ray is None:
        use_ray = profile.name != "quick"
    with _sigterm_as_exit():
        result = run_suite(scenarios, profile, use_ray=use_ray)
    print(format_table(result))
    out = getattr(args, "out", None)
    if out is not None:
        for note in write_outputs(result, Path(out)):
            print(note, file=sys.stderr)
    return 1 if result.failures else 0


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """Turn SIGTERM into SystemExit for the run, so the suite's cleanup stops every process it
    started (runtime, instances, baselines, Ray) instead of the interpreter dying around them."""

    def _exit(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    previous = signal.signal(signal.SIGTERM, _exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``python -m flame_agents.bench``), same options as the CLI verb."""
    parser = argparse.ArgumentParser(prog="flame-agents")
    add_bench_parser(parser.add_subparsers(dest="verb", required=True))
    args = parser.parse_args(["bench", *(sys.argv[1:] if argv is None else argv)])
    code: int = args.func(args)
    return code
