"""Warm invoke latency (p50/p99) and cold start of the seed's echo service, on the embedded runtime.

Run from the repository root::

    .venv/bin/python bench/invoke_latency.py [--invokes 500] [--cold 5]

It starts a private runtime (temp home, free ports), registers the echo service of the user
guide, measures cold starts (new session with a context to its first reply, which includes
launching a new instance process), then sequential warm invokes in one session, and stops
everything it started. The full suite with baselines is ``flame-agents bench``.
"""

from __future__ import annotations

import argparse
import sys
import time

from flame_agents import core
from flame_agents.bench.model import median, percentile
from flame_agents.bench.services.echo import EchoRequest
from flame_agents.service import Session
from flame_agents.testing import LocalRuntime

APP = "echo-app"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invokes", type=int, default=500, help="warm invokes (default 500)")
    parser.add_argument("--cold", type=int, default=5, help="cold starts (default 5)")
    args = parser.parse_args()
    req = EchoRequest("hello")
    with LocalRuntime():
        core.register_application(
            APP,
            {"command": sys.executable, "arguments": ["-m", "flame_agents.bench.services.echo"]},
        )
        cold_ms = []
        for _ in range(args.cold):
            start = time.perf_counter()
            session = Session(APP, ctx=[])
            session.invoke(req)
            cold_ms.append((time.perf_counter() - start) * 1e3)
            session.close()  # not timed: closing is not on the way to the first reply
        with Session(APP, ctx=[]) as session:
            for _ in range(20):  # warm-up: connections, caches, the instance's imports
                session.invoke(req)
            warm_ms = []
            for _ in range(args.invokes):
                start = time.perf_counter()
                reply = session.invoke(req)
                warm_ms.append((time.perf_counter() - start) * 1e3)
            assert reply.text == "HELLO", reply
    print(
        f"warm invoke  p50 {percentile(warm_ms, 50):7.2f} ms   "
        f"p99 {percentile(warm_ms, 99):7.2f} ms   ({args.invokes} invokes, echo service)"
    )
    print(
        f"cold start   median {median(cold_ms):7.1f} ms   "
        f"min {min(cold_ms):7.1f} ms   max {max(cold_ms):7.1f} ms   ({args.cold} sessions)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
