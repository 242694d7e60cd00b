"""Run scenarios against our runtime and the same-run baselines; collect rows, skips, failures.

A scenario is a small object with a ``name``, the modules it ``requires`` (a part not installed
yet makes it a skip, not a failure), a ``steps(profile)`` count for the progress bar and a
``run(ctx)`` that returns rows. Shared, expensive things (the gRPC floor processes, our
runtime, Ray) are started lazily by :class:`BenchContext` once per suite and stopped by its
exit stack, also when a scenario raises.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from flame_agents.bench.baselines.grpc_floor import GrpcFloor
from flame_agents.bench.model import Profile, Row, Skip
from flame_agents.bench.procs import rss_mib
from flame_agents.bench.progress import Progress

__all__ = ["BenchContext", "Scenario", "SuiteResult", "app_spec", "run_suite"]


class Scenario(Protocol):
    """One benchmark: what it needs, how many progress steps it takes, and how to run it."""

    name: str
    description: str
    requires: tuple[str, ...]

    def steps(self, profile: Profile) -> int:
        """Progress units this scenario reports through ``ctx.progress.advance``."""
        ...

    def run(self, ctx: BenchContext) -> list[Row]:
        """Measure; return rows (skips go to ``ctx.skip``)."""
        ...


@dataclass
class SuiteResult:
    """What one run produced."""

    profile: str
    rows: list[Row] = field(default_factory=list)
    skips: list[Skip] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    """Scenario name -> error text (with the traceback tail)."""
    completed: list[str] = field(default_factory=list)
    """Scenarios that ran to the end."""
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The results.json document."""
        return {
            "meta": self.meta,
            "profile": self.profile,
            "completed": self.completed,
            "failures": self.failures,
            "skips": [{"what": s.what, "reason": s.reason} for s in self.skips],
            "rows": [r.to_dict() for r in self.rows],
        }


class BenchContext:
    """Shared resources of one suite run, started on first use and stopped on :meth:`close`."""

    def __init__(self, profile: Profile, progress: Progress, *, use_ray: bool = True) -> None:
        self.profile = profile
        self.progress = progress
        self.use_ray = use_ray
        self.skips: list[Skip] = []
        self.stack = contextlib.ExitStack()
        self._floor: GrpcFloor | None = None
        self._runtime: Any = None
        self._ray: Any = None
        self._ray_checked = False
        self._apps: set[str] = set()
        self.runtime_rss_at_start = 0.0
        """RSS (MiB) of our runtime right after it started, for the memory scenario."""

    def skip(self, what: str, reason: str) -> None:
        """Record something not measured (shown under the table), once per ``what``."""
        if all(s.what != what for s in self.skips):
            self.skips.append(Skip(what, reason))

    def floor(self) -> GrpcFloor:
        """The gRPC echo + relay processes (started once)."""
        if self._floor is None:
            self._floor = self.stack.enter_context(GrpcFloor())
        return self._floor

    def runtime(self) -> Any:
        """Our embedded runtime in a temp home (a ``LocalRuntime``, started once).

        ``set_env`` points our clients (and flamepy) at it through FLAME_ENDPOINT and
        FLAME_CACHE_ENDPOINT for the rest of the run; the exit stack restores the environment.
        """
        if self._runtime is None:
            from flame_agents.testing import LocalRuntime

            self._runtime = self.stack.enter_context(LocalRuntime(set_env=True))
            self.runtime_rss_at_start = rss_mib(self._runtime.pid)
        return self._runtime

    def register_app(self, name: str, module: str, **spec: Any) -> str:
        """Register ``python -m module`` as application ``name`` on our runtime (once)."""
        if name not in self._apps:
            from flame_agents import core

            self.runtime()
            core.register_application(name, app_spec(module, **spec))
            self._apps.add(name)
        return name

    def ray(self) -> Any:
        """The Ray peer (a started ``RayPeer``), or None with a recorded skip."""
        if not self._ray_checked:
            self._ray_checked = True
            if not self.use_ray:
                self.skip("ray-actor baseline", "off (default with --quick; --ray turns it on)")
            else:
                from flame_agents.bench.baselines.ray_peer import RayPeer

                try:
                    peer = RayPeer.start_or_none()
                except Exception as exc:  # Ray's own start-up failed: measure the rest
                    self.skip("ray-actor baseline", f"Ray failed to start: {exc}")
                    return None
                if peer is None:
                    self.skip(
                        "ray-actor baseline",
                        "ray is not importable: pip install 'flame-agents[bench]' to add it",
                    )
                else:
                    self._ray = peer
                    self.stack.callback(peer.close)
        return self._ray

    def close(self) -> None:
        """Stop everything started for the run (runtime, instances, baselines, Ray)."""
        self.stack.close()


def app_spec(module: str, **spec: Any) -> dict[str, Any]:
    """The application attributes of ``python -m module`` run by this interpreter."""
    attrs: dict[str, Any] = {
        "command": sys.executable,
        "arguments": ["-m", module],
        # Children must import this very flame_agents, wherever the suite runs from.
        "environments": {"PYTHONPATH": os.pathsep.join(p for p in sys.path if os.path.isdir(p))},
    }
    attrs.update(spec)
    return attrs


def _missing(requires: Iterable[str]) -> str | None:
    for mod in requires:
        try:
            importlib.import_module(mod)
        except ImportError as exc:
            return f"{mod} is not available ({exc})"
    return None


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("flame-agents")
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


def _meta(profile: Profile) -> dict[str, Any]:
    return {
        "version": _version(),
        "profile": profile.name,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "ratio": "times costlier than the baseline (>1 = slower or bigger); "
        "value/baseline for costs, baseline/value for rates",
    }


def run_suite(
    scenarios: Sequence[Scenario],
    profile: Profile,
    *,
    use_ray: bool = True,
    progress_stream: Any = None,
    on_scenario: Callable[[str], None] | None = None,
) -> SuiteResult:
    """Run ``scenarios`` in order; a failing scenario is recorded and the rest still run."""
    result = SuiteResult(profile=profile.name, meta=_meta(profile))
    progress = Progress(sum(s.steps(profile) for s in scenarios), stream=progress_stream)
    ctx = BenchContext(profile, progress, use_ray=use_ray)
    started = time.monotonic()
    expected = 0
    try:
        for scenario in scenarios:
            expected += scenario.steps(profile)
            progress.begin(scenario.name)
            if on_scenario is not None:
                on_scenario(scenario.name)
            missing = _missing(scenario.requires)
            if missing is not None:
                ctx.skip(scenario.name, missing)
            else:
                try:
                    result.rows.extend(scenario.run(ctx))
                    result.completed.append(scenario.name)
                except Exception as exc:
                    tail = "".join(traceback.format_exception(exc)[-6:])
                    result.failures[scenario.name] = f"{type(exc).__name__}: {exc}\n{tail}"
            # Scenarios may report fewer steps than announced (early skips): resync the bar.
            progress.advance(expected - progress.done)
    finally:
        ctx.close()
        progress.close()
    result.skips = ctx.skips
    result.meta["elapsed_s"] = round(time.monotonic() - started, 2)
    return result
