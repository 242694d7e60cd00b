"""``up``, ``down`` and ``status``: start, stop and inspect the embedded runtime of a home folder.

The runtime itself is ``python -m flame_agents.runtime``; these verbs only start it (in the
foreground, or detached through :mod:`flame_agents.embedded`), stop it, and report what it
published in ``<home>/runtime.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import signal
import subprocess
from pathlib import Path
from types import FrameType
from typing import Any

from flame_agents import embedded
from flame_agents.cli.output import print_json, print_kv
from flame_agents.config import RuntimeInfo, agents_home, read_runtime_info
from flame_agents.errors import InvalidStateError, NotFoundError

__all__ = ["add_parsers", "runtime_log", "status_dict"]

# Also the latency of noticing Ctrl-C / the ready file in the foreground loop.
_READY_POLL_SECONDS = 0.1


def _home(args: argparse.Namespace) -> Path:
    return Path(args.home).expanduser().resolve() if args.home else agents_home()


def runtime_log(home: Path) -> Path:
    """The runtime's own log file under ``home``."""
    return home / "logs" / "runtime.log"


def status_dict(info: RuntimeInfo) -> dict[str, Any]:
    """What ``status -o json`` prints for a running runtime."""
    home = Path(info.home)
    return {
        "endpoint": info.endpoint,
        "cache_endpoint": info.cache_endpoint,
        "home": info.home,
        "pid": info.pid,
        "log": str(runtime_log(home)),
    }


def _print_endpoints(info: RuntimeInfo) -> None:
    print_kv([(k, v) for k, v in status_dict(info).items()])


def _refuse_if_running(home: Path) -> None:
    info = read_runtime_info(home)
    if info is not None:
        raise InvalidStateError(
            f"a runtime is already running for {home} (pid {info.pid}, {info.endpoint}); "
            "stop it with `flame-agents down` or pick another --home",
            home=str(home),
            pid=info.pid,
        )


def _cmd_up(args: argparse.Namespace) -> int:
    home = _home(args)
    _refuse_if_running(home)
    if args.detach:
        _, info = embedded.start_runtime(
            home,
            host=args.host,
            port=args.port,
            cache_port=args.cache_port,
            extra_args=_runtime_options(args),
        )
        _print_endpoints(info)
        print(f"stop it with: flame-agents down --home {home}")
        return 0
    return _run_foreground(home, args)


def _runtime_options(args: argparse.Namespace) -> list[str]:
    """Options for the runtime process: the log format, then whatever followed ``--``."""
    extra = list(args.runtime_options)
    if extra[:1] == ["--"]:
        extra = extra[1:]
    return ["--log-format", args.log_format, *extra]


def _run_foreground(home: Path, args: argparse.Namespace) -> int:
    """Run the runtime as a child in this terminal until it exits or we are told to stop."""
    cmd = embedded.runtime_command(
        home,
        host=args.host,
        port=args.port,
        cache_port=args.cache_port,
        extra_args=_runtime_options(args),
    )
    proc = subprocess.Popen(cmd)

    def forward(signum: int, _frame: FrameType | None) -> None:
        # A supervisor's SIGTERM reaches only us; pass it on so the runtime stops gracefully.
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    announced = False
    try:
        while True:
            try:
                return proc.wait(timeout=_READY_POLL_SECONDS)
            except subprocess.TimeoutExpired:
                pass
            if not announced:
                info = read_runtime_info(home)
                if info is not None and info.pid == proc.pid:
                    _print_endpoints(info)
                    print("press Ctrl-C to stop", flush=True)
                    announced = True
    except KeyboardInterrupt:
        # In a terminal the runtime got the same SIGINT; send it anyway in case it did not
        # (e.g. we were interrupted programmatically), then wait for its graceful stop.
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)
        return proc.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
        if proc.poll() is None:
            proc.terminate()
            proc.wait()


def _cmd_down(args: argparse.Namespace) -> int:
    home = _home(args)
    info = read_runtime_info(home)
    if info is None:
        print(f"no runtime is running for {home}")
        return 0
    # stop_runtime kills a runtime that has not stopped gracefully within the timeout.
    if embedded.stop_runtime(home, timeout=args.timeout, kill=args.kill):
        print(f"stopped the runtime (pid {info.pid}) of {home}")
    else:  # it exited between our look and the signal
        print(f"no runtime is running for {home}")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    home = _home(args)
    info = read_runtime_info(home)
    if info is None:
        raise NotFoundError(
            f"no runtime is running for {home}; start one with `flame-agents up --detach`",
            home=str(home),
        )
    if args.output == "json":
        print_json(status_dict(info))
    elif args.output == "env":
        print(f"export FLAME_ENDPOINT={shlex.quote(info.endpoint)}")
        print(f"export FLAME_CACHE_ENDPOINT={shlex.quote(info.cache_endpoint)}")
    else:
        _print_endpoints(info)
    return 0


def _add_home(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--home",
        metavar="DIR",
        help="runtime home folder (default: FLAME_AGENTS_HOME, else ~/.flame-agents)",
    )


def add_parsers(verbs: Any) -> None:
    """Add ``up``, ``down`` and ``status`` to the sub-parsers ``verbs``."""
    up = verbs.add_parser(
        "up",
        help="start the embedded runtime",
        description="Start the embedded runtime (Frontend + object cache on 127.0.0.1) for a "
        "home folder. Runs in the foreground until Ctrl-C unless --detach is given.",
    )
    _add_home(up)
    up.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: loopback; any other needs a token or --insecure)",
    )
    up.add_argument("--port", type=int, default=0, help="Frontend port (default: a free port)")
    up.add_argument(
        "--cache-port", type=int, default=0, help="object cache port (default: a free port)"
    )
    up.add_argument(
        "--detach",
        action="store_true",
        help="start in the background, print the endpoints once ready, and return",
    )
    up.add_argument(
        "runtime_options",
        nargs=argparse.REMAINDER,
        metavar="-- RUNTIME_OPTIONS",
        help="options after -- go to the runtime process, e.g. -- --token-file F --tls-cert C "
        "--tls-key K --max-instances N --task-timeout S (see python -m flame_agents.runtime -h)",
    )
    up.set_defaults(func=_cmd_up)

    down = verbs.add_parser("down", help="stop the embedded runtime of a home folder")
    _add_home(down)
    down.add_argument(
        "--timeout",
        type=float,
        default=20.0,
        help="seconds to wait for a graceful stop before killing it",
    )
    down.add_argument(
        "--kill", action="store_true", help="kill the runtime instead of stopping it gracefully"
    )
    down.set_defaults(func=_cmd_down)

    status = verbs.add_parser(
        "status",
        help="show the endpoints of the running embedded runtime",
        description="Show the endpoints, home, pid and log of the embedded runtime. Exits 1 "
        "when none is running.",
    )
    _add_home(status)
    status.add_argument(
        "-o",
        "--output",
        choices=("table", "json", "env"),
        default="table",
        help="table for people, json for scripts, env for `eval` in a shell",
    )
    status.set_defaults(func=_cmd_status)
