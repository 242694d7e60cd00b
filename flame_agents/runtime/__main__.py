"""Process entry of the embedded runtime: ``python -m flame_agents.runtime --home DIR``.

Runs in the foreground until SIGTERM/SIGINT (graceful stop). Exits 2 when another runtime
already serves the home, naming its pid.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from flame_agents import _logging
from flame_agents.errors import ConfigError
from flame_agents.runtime._server import RuntimeOptions, serve

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m flame_agents.runtime",
        description="Embedded flame-agents runtime: Flame Frontend + object cache on one machine.",
    )
    p.add_argument("--home", required=True, type=Path, help="runtime home folder")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=0, help="Frontend port (0 = pick a free one)")
    p.add_argument("--cache-port", type=int, default=0, help="cache port (0 = pick a free one)")
    p.add_argument("--log-format", choices=("console", "json"), default="console")
    p.add_argument("--log-level", default="info")
    p.add_argument("--max-instances", type=int, default=64, help="cap on live instances")
    p.add_argument(
        "--bind-timeout", type=float, default=30.0, help="seconds for a service to bind its socket"
    )
    p.add_argument(
        "--bind-retry-limit", type=int, default=5, help="bind failures before a session pauses"
    )
    p.add_argument(
        "--max-task-attempts",
        type=int,
        default=3,
        help="instance losses before a task is failed instead of re-dispatched",
    )
    return p


def _interpreter_first_on_path() -> None:
    """Put this Python's folder first on ``PATH``; instances inherit it.

    An application's ``command: python`` then finds the interpreter that has flame_agents
    installed, however the runtime was started (``up``, a client's embedded default, a test),
    even when its virtual environment is not activated.
    """
    bin_dir = str(Path(sys.executable).parent)
    parts = os.environ.get("PATH", "").split(os.pathsep)
    if parts[:1] != [bin_dir]:
        os.environ["PATH"] = os.pathsep.join([bin_dir, *parts])


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the runtime; returns the process exit code."""
    args = _parser().parse_args(argv)
    _interpreter_first_on_path()
    _logging.configure(fmt=args.log_format, level=args.log_level)
    opts = RuntimeOptions(
        home=args.home,
        host=args.host,
        port=args.port,
        cache_port=args.cache_port,
        max_instances=max(1, args.max_instances),
        bind_timeout=args.bind_timeout,
        bind_retry_limit=max(1, args.bind_retry_limit),
        max_task_attempts=max(1, args.max_task_attempts),
    )
    try:
        asyncio.run(serve(opts))
    except ConfigError as exc:
        print(f"flame-agents runtime: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"flame-agents runtime: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
