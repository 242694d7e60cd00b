"""Resident memory (RSS) of the runtime process and of one idle instance process.

The runtime is measured after the scenarios before it ran (it has served everything the suite
did); the idle instance after one invoke. Baselines for the instance: the bare gRPC echo server
process, a Ray actor's worker process, and the same no-op service written with flamepy.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import cloudpickle

from flame_agents.bench.baselines import flamepy_peer
from flame_agents.bench.harness import BenchContext
from flame_agents.bench.model import Profile, Row
from flame_agents.bench.scenarios._common import NOOP_APP, NOOP_MODULE, close_quietly

__all__ = ["ResidentMemory", "rss_mib"]

FLAMEPY_NOOP_APP = "bench-flamepy-noop"
FLAMEPY_NOOP_MODULE = "flame_agents.bench.services.flamepy_noop"


def rss_mib(pid: int) -> float:
    """Resident set size of ``pid`` in MiB (psutil when installed, else /proc on Linux)."""
    try:
        import psutil
    except ImportError:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
        raise
    return float(psutil.Process(pid).memory_info().rss) / (1024.0 * 1024.0)


def _idle_instance_rss(ctx: BenchContext, app: str, session: object) -> float:
    """RSS of the instance the runtime started for ``session`` (the newest instance pid)."""
    before = set(ctx.runtime().instance_pids())
    session.invoke(cloudpickle.dumps(b""))  # type: ignore[attr-defined]
    time.sleep(0.5)  # let start-up garbage settle; an idle instance is what is measured
    new = [pid for pid in ctx.runtime().instance_pids() if pid not in before]
    pids = new or ctx.runtime().instance_pids()
    return rss_mib(max(pids))


class ResidentMemory:
    """RSS of the runtime and of an idle instance."""

    name = "memory"
    description = "resident memory of the runtime and an idle instance"
    requires: tuple[str, ...] = (
        "flame_agents.testing",
        "flame_agents.core",
        "flame_agents.service",
    )

    def steps(self, profile: Profile) -> int:
        """Two steps: runtime, instance."""
        return 2

    def run(self, ctx: BenchContext) -> list[Row]:
        """Measure once (memory is not noisy the way latency is)."""
        from flame_agents import core

        rows = [Row.compare(self.name, "runtime RSS", rss_mib(ctx.runtime().pid), "MiB")]
        ctx.progress.advance()
        app = ctx.register_app(NOOP_APP, NOOP_MODULE)
        with contextlib.ExitStack() as stack:
            session = core.create_session(app)
            stack.callback(close_quietly, session)
            ours = _idle_instance_rss(ctx, app, session)
            baselines = {"grpc-process": rss_mib(ctx.floor().pids[0])}
            ray = ctx.ray()
            if ray is not None:
                actor = ray.actor()
                stack.callback(ray.kill, actor)
                baselines["ray-actor"] = rss_mib(ray.call(actor, "pid"))
            if flamepy_peer.load() is not None:
                fp_app = ctx.register_app(FLAMEPY_NOOP_APP, FLAMEPY_NOOP_MODULE)
                fp_session = core.create_session(fp_app)
                stack.callback(close_quietly, fp_session)
                baselines["flamepy"] = _idle_instance_rss(ctx, fp_app, fp_session)
        rows.extend(
            Row.compare(self.name, "idle instance RSS", ours, "MiB", name, value)
            for name, value in baselines.items()
        )
        ctx.progress.advance()
        return rows
