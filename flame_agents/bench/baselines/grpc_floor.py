"""The floor: a bare Python gRPC unary echo, one hop and two hops (through a relay process).

No runtime can answer faster than a plain gRPC round trip to another Python process, so our
invoke latency is printed as a multiple of this. The servers are real processes on loopback,
started by :class:`GrpcFloor` and stopped when it closes (also on error).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from types import TracebackType

import grpc

from flame_agents.bench.baselines.grpc_server import METHOD, UNLIMITED
from flame_agents.bench.procs import ReadyProcess, spawn_ready, stop_process

__all__ = ["SERVER_MODULE", "GrpcFloor"]

SERVER_MODULE = "flame_agents.bench.baselines.grpc_server"


class GrpcFloor:
    """An echo server and a relay in front of it, with one client channel to each."""

    def __init__(self) -> None:
        self._procs: list[ReadyProcess] = []
        self._channels: list[grpc.Channel] = []
        self.one_hop: Callable[[bytes], bytes]
        self.two_hop: Callable[[bytes], bytes]

    def start(self) -> GrpcFloor:
        """Start both processes and connect; on failure whatever started is stopped."""
        try:
            echo = self._spawn("echo")
            relay = self._spawn("relay", "--upstream", f"127.0.0.1:{echo.port}")
            self.one_hop = self._stub(echo.port)
            self.two_hop = self._stub(relay.port)
            # The first call on a channel pays connection set-up: keep it out of the samples.
            self.one_hop(b"warm")
            self.two_hop(b"warm")
        except BaseException:
            self.close()
            raise
        return self

    def _spawn(self, *args: str) -> ReadyProcess:
        child = spawn_ready(SERVER_MODULE, args)
        self._procs.append(child)
        return child

    def _stub(self, port: int) -> Callable[[bytes], bytes]:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=UNLIMITED)
        self._channels.append(channel)
        call = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)

        def invoke(payload: bytes) -> bytes:
            reply: bytes = call(payload, timeout=30)
            return reply

        return invoke

    def new_client(self, *, two_hop: bool = True) -> tuple[grpc.Channel, Callable[[bytes], bytes]]:
        """A fresh channel (the caller closes it) and its echo call, as a new client would have."""
        port = self._procs[-1 if two_hop else 0].port
        channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=UNLIMITED)
        call = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)

        def invoke(payload: bytes) -> bytes:
            reply: bytes = call(payload, timeout=30)
            return reply

        return channel, invoke

    @property
    def pids(self) -> list[int]:
        """Pids of the echo server and the relay."""
        return [p.pid for p in self._procs]

    def close(self) -> None:
        """Close channels and stop both processes; idempotent."""
        for channel in self._channels:
            with contextlib.suppress(Exception):
                channel.close()
        self._channels.clear()
        for child in reversed(self._procs):
            stop_process(child.proc)
        self._procs.clear()

    def __enter__(self) -> GrpcFloor:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def cold_echo_process(payload: bytes) -> float:
    """Seconds from spawning a fresh echo server process to its first reply (the cold floor)."""
    start = time.perf_counter()
    child = spawn_ready(SERVER_MODULE, ("echo",))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{child.port}") as channel:
            channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)(
                payload, timeout=30
            )
        return time.perf_counter() - start
    finally:
        stop_process(child.proc)
