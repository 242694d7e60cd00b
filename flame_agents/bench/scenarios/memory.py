"""Resident memory (RSS) of the runtime process and of one idle instance process.

The runtime is measured fresh (right after it started) and after the scenarios before this one
(it has served everything the suite did); the idle instance after one invoke. Baselines for the
instance: a bare gRPC echo server process, a Ray actor's worker process, and the same no-op
service written with flamepy.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import cloudpickle

from flame_agents.bench.baselines import flamepy_peer
from flame_agents.bench.harness import BenchContext
from flame_agents.bench.model import Profile, Row
from flame_agents.bench.procs import rss_mib
from flame_agents.bench.scenarios._common import NOOP_APP, NOOP_MODULE, close_quietly

__all__ = ["ResidentMemory"]

FLAMEPY_NOOP_APP = "bench-flamepy-noop"
FLAMEPY_NOOP_MODULE = "flame_agents.bench.services.flamepy_noop"


def _idle_instance_rss(ctx: BenchContext, session: object) -> float:
    """RSS of the instance the runtime started for ``session``, idle after one invoke."""
    before = set(ctx.runtime().instance_pids())
    session.invoke(cloudpickle.dumps(b""))  # type: ignore[attr-defined]
    time.sleep(0.5)  # let start-up garbage settle; an idle instance is what is measured
    new = [pid for pid in ctx.runtime().instance_pids() if pid not in before]
    # Instances of other sessions may still be starting or stopping (smaller, half-imported
    # processes): the one that just served the invoke is the biggest of the new ones.
    return max(rss_mib(pid) for pid in new or ctx.runtime().instance_pids())


def _idle_echo_process_rss() -> float:
    """RSS of a fresh bare gRPC echo process after one call (the floor's own process grew on
    the cache scenario's 4 MiB payloads, so it is not idle-after-one-call any more)."""
    from flame_agents.bench.baselines.grpc_floor import SERVER_MODULE
    from flame_agents.bench.procs import running

    with running(SERVER_MODULE, ("echo",)) as child:
        channel, call = _client(child.port)
        with channel:
            call(b"x")
        time.sleep(0.5)
        return rss_mib(child.pid)


def _client(port: int) -> tuple[Any, Any]:
    import grpc

    from flame_agents.bench.baselines.grpc_server import METHOD

    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    call = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
    return channel, call


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

        runtime_pid = ctx.runtime().pid  # first: starts the runtime when this runs alone
        rows = [
            Row.compare(self.name, "runtime RSS, fresh", ctx.runtime_rss_at_start, "MiB"),
            Row.compare(self.name, "runtime RSS after the suite", rss_mib(runtime_pid), "MiB"),
        ]
        ctx.progress.advance()
        app = ctx.register_app(NOOP_APP, NOOP_MODULE)
        with contextlib.ExitStack() as stack:
            session = core.create_session(app)
            stack.callback(close_quietly, session)
            ours = _idle_instance_rss(ctx, session)
            baselines = {"grpc-process": _idle_echo_process_rss()}
            ray = ctx.ray()
            if ray is not None:
                actor = ray.actor()
                stack.callback(ray.kill, actor)
                baselines["ray-actor"] = rss_mib(ray.call(actor, "pid"))
            if flamepy_peer.load() is not None:
                fp_app = ctx.register_app(FLAMEPY_NOOP_APP, FLAMEPY_NOOP_MODULE)
                fp_session = core.create_session(fp_app)
                stack.callback(close_quietly, fp_session)
                baselines["flamepy"] = _idle_instance_rss(ctx, fp_session)
        rows.extend(
            Row.compare(self.name, "idle instance RSS", ours, "MiB", name, value)
            for name, value in baselines.items()
        )
        ctx.progress.advance()
        return rows
