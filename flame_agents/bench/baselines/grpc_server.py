"""Process entry of the gRPC floor: a bare unary echo server, or a relay in front of one.

``python -m flame_agents.bench.baselines.grpc_server echo`` serves ``/bench.Echo/Echo`` (bytes
in, same bytes out) on a free loopback port; ``... relay --upstream HOST:PORT`` serves the same
method by calling the upstream echo, so a client sees two hops, like our client -> runtime ->
instance path. Each prints ``READY <port>`` once serving and exits on SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc

METHOD = "/bench.Echo/Echo"
"""The one method of the floor: raw bytes, no protobuf, so only transport cost is measured."""

UNLIMITED = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
"""gRPC's 4 MiB default would reject the 4 MiB cache payloads; the object cache has no cap."""


def _echo(request: bytes, context: Any) -> bytes:
    return request


def _relay_handler(upstream: str) -> Callable[[bytes, Any], bytes]:
    channel = grpc.insecure_channel(upstream, options=UNLIMITED)
    call = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)

    def relay(request: bytes, context: Any) -> bytes:
        reply: bytes = call(request)
        return reply

    return relay


def serve(handler: Callable[[bytes, Any], bytes], *, workers: int = 16) -> None:
    """Serve ``handler`` as the echo method on 127.0.0.1:<free port> until SIGTERM."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=UNLIMITED)
    rpc = grpc.unary_unary_rpc_method_handler(handler)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("bench.Echo", {"Echo": rpc}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"READY {port}", flush=True)
    stop.wait()
    server.stop(grace=0.5).wait()


def main(argv: list[str] | None = None) -> int:
    """Parse ``echo`` / ``relay --upstream`` and serve."""
    parser = argparse.ArgumentParser(prog="grpc_server")
    parser.add_argument("mode", choices=["echo", "relay"])
    parser.add_argument("--upstream", help="HOST:PORT of the echo server (relay mode)")
    args = parser.parse_args(argv)
    if args.mode == "relay":
        if not args.upstream:
            parser.error("relay needs --upstream HOST:PORT")
        serve(_relay_handler(args.upstream))
    else:
        serve(_echo)
    return 0


if __name__ == "__main__":
    sys.exit(main())
