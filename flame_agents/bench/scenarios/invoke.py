"""Warm invoke latency: one session, one warm instance, sequential invokes (p50/p99).

``invoke.warm`` is the seed's echo service through ``flame_agents.service.Session`` (what a user
of the guide sees, including the context read and write the echo does); ``invoke.noop`` is a
no-op service through the core client, i.e. the runtime path alone. Both are set against the
gRPC floor (1 and 2 hops, same request bytes), a Ray actor doing the same work, and flamepy
0.6.0 calling the same service on our runtime.
"""

from __future__ import annotations

import contextlib

import cloudpickle

from flame_agents.bench.baselines import flamepy_peer
from flame_agents.bench.harness import BenchContext
from flame_agents.bench.measure import OURS, Arm, interleaved, latency_rows, time_calls
from flame_agents.bench.model import Profile, Row
from flame_agents.bench.scenarios._common import (
    CALL_TIMEOUT,
    ECHO_APP,
    ECHO_MODULE,
    NOOP_APP,
    NOOP_MODULE,
    close_quietly,
    flamepy_invoke,
)

__all__ = ["NoopInvoke", "WarmInvoke"]


def _floor_arms(ctx: BenchContext, payload: bytes, n: int) -> dict[str, Arm]:
    floor = ctx.floor()
    return {
        "grpc-1hop": lambda: time_calls(lambda: floor.one_hop(payload), n),
        "grpc-2hop": lambda: time_calls(lambda: floor.two_hop(payload), n),
    }


class WarmInvoke:
    """Seed echo service, warm: ``Session.invoke(EchoRequest)`` latency."""

    name = "invoke.warm"
    description = "echo service (seed), warm instance, sequential Session.invoke"
    requires: tuple[str, ...] = (
        "flame_agents.testing",
        "flame_agents.core",
        "flame_agents.service",
    )

    def steps(self, profile: Profile) -> int:
        """One step per interleaved round."""
        return profile.rounds

    def run(self, ctx: BenchContext) -> list[Row]:
        """Interleave ours, the gRPC floor, Ray and flamepy; p50/p99 in ms."""
        from flame_agents.bench.services.echo import EchoRequest
        from flame_agents.service import Session

        app = ctx.register_app(ECHO_APP, ECHO_MODULE)
        n = ctx.profile.invokes_per_round
        req = EchoRequest("hello")
        with contextlib.ExitStack() as stack:
            session = stack.enter_context(Session(app, ctx=[]))
            session.invoke(
                req, timeout=CALL_TIMEOUT
            )  # start the instance: cold start is its own scenario
            arms: dict[str, Arm] = {
                OURS: lambda: time_calls(lambda: session.invoke(req, timeout=CALL_TIMEOUT), n)
            }
            arms.update(_floor_arms(ctx, cloudpickle.dumps(req), n))
            ray = ctx.ray()
            if ray is not None:
                actor = ray.actor()
                stack.callback(ray.kill, actor)
                arms["ray-actor"] = lambda: time_calls(lambda: ray.call(actor, "echo", "hello"), n)
            flamepy = flamepy_peer.load()
            if flamepy is None:
                ctx.skip("flamepy baseline", "flamepy 0.6.0 is not installed (dev extra)")
            else:
                fp_session = stack.enter_context(flamepy.service.Session(app, ctx=[]))
                fp_session.invoke(req)
                arms["flamepy"] = lambda: time_calls(lambda: fp_session.invoke(req), n)
            pooled = interleaved(arms, rounds=ctx.profile.rounds, progress=ctx.progress)
        return latency_rows(self.name, pooled)


class NoopInvoke:
    """No-op service through the core client: the runtime's own invoke path."""

    name = "invoke.noop"
    description = "no-op service, warm instance, sequential core Session.invoke(bytes)"
    requires: tuple[str, ...] = (
        "flame_agents.testing",
        "flame_agents.core",
        "flame_agents.service",
    )

    def steps(self, profile: Profile) -> int:
        """One step per interleaved round."""
        return profile.rounds

    def run(self, ctx: BenchContext) -> list[Row]:
        """Interleave ours, the gRPC floor, Ray and flamepy's core client; p50/p99 in ms."""
        from flame_agents import core

        app = ctx.register_app(NOOP_APP, NOOP_MODULE)
        n = ctx.profile.invokes_per_round
        # The service speaks cloudpickle (seed API): pickle once so the loop measures transport.
        payload = cloudpickle.dumps(b"x" * 100)
        with contextlib.ExitStack() as stack:
            session = core.create_session(app)
            stack.callback(close_quietly, session)
            session.invoke(payload, timeout=CALL_TIMEOUT)
            arms: dict[str, Arm] = {
                OURS: lambda: time_calls(lambda: session.invoke(payload, timeout=CALL_TIMEOUT), n)
            }
            arms.update(_floor_arms(ctx, payload, n))
            ray = ctx.ray()
            if ray is not None:
                actor = ray.actor()
                stack.callback(ray.kill, actor)
                arms["ray-actor"] = lambda: time_calls(lambda: ray.call(actor, "noop", payload), n)
            flamepy = flamepy_peer.load()
            if flamepy is not None:
                fp_session = flamepy.core.create_session(app)
                stack.callback(close_quietly, fp_session)
                flamepy_invoke(fp_session, payload)
                arms["flamepy"] = lambda: time_calls(lambda: flamepy_invoke(fp_session, payload), n)
            pooled = interleaved(arms, rounds=ctx.profile.rounds, progress=ctx.progress)
        return latency_rows(self.name, pooled)
