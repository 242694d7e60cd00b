"""Process entry of the embedded runtime: ``python -m flame_agents.runtime --home DIR``.

Runs in the foreground until SIGTERM/SIGINT (graceful stop). Exits 2 when another runtime
already serves the home, naming its pid.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import sys
from pathlib import Path
from typing import TextIO, cast

from flame_agents import _logging
from flame_agents.errors import ConfigError, FlameAgentsError
from flame_agents.runtime._auth import TOKEN_ENV
from flame_agents.runtime._server import RuntimeOptions, serve
from flame_agents.runtime.cache.server import DEFAULT_MAX_OBJECT_BYTES
from flame_agents.runtime.sessions._frontend import DEFAULT_MAX_ID_BYTES
from flame_agents.runtime.sessions._options import SchedulingLimits

__all__ = ["main"]


def _log_level(text: str) -> str:
    if _logging.parse_level(text) is None:
        raise argparse.ArgumentTypeError(
            f"unknown log level {text!r}; use debug, info, warning or error"
        )
    return text


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m flame_agents.runtime",
        description="Embedded flame-agents runtime: Flame Frontend + object cache on one machine.",
    )
    p.add_argument("--home", required=True, type=Path, help="runtime home folder")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=0, help="Frontend port (0 = pick a free one)")
    p.add_argument("--cache-port", type=int, default=0, help="cache port (0 = pick a free one)")
    p.add_argument(
        "--log-format",
        choices=("console", "json"),
        default="console",
        help="format of log lines on stderr (default: console)",
    )
    p.add_argument(
        "--log-level",
        type=_log_level,
        default=None,
        help="debug, info, warning or error (default: $FLAME_LOG_LEVEL, else info)",
    )
    _security_options(p)
    p.add_argument("--max-instances", type=int, default=64, help="cap on live instances")
    p.add_argument(
        "--bind-timeout", type=float, default=30.0, help="seconds for a service to bind its socket"
    )
    p.add_argument(
        "--max-concurrent-starts",
        type=int,
        default=None,
        help="instances starting at once (default: the number of CPUs, at least 2); "
        "more wait their turn, and their bind timeout starts when they do",
    )
    p.add_argument(
        "--prestart",
        type=int,
        default=2,
        metavar="N",
        help="spare Python processes kept ready (imports done) for new instances whose command "
        "is this Python; 0 turns them off",
    )
    p.add_argument(
        "--exit-with-pid",
        type=int,
        default=None,
        metavar="PID",
        help="stop gracefully when process PID exits (test runtimes follow their test process)",
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
    p.add_argument(
        "--task-timeout",
        type=float,
        default=None,
        help="default seconds a task may run before its instance is killed and the task failed "
        "(default: no limit; the application label flame-agents.task-timeout=<s> overrides it)",
    )
    p.add_argument(
        "--cancel-grace",
        type=float,
        default=10.0,
        help="seconds an instance has to stop a cancelled task before the runtime stops the "
        "instance (default 10)",
    )
    p.add_argument(
        "--fsync",
        action="store_true",
        help="flush every database commit and cache write to disk before acknowledging it, so "
        "acknowledged work survives power loss or an OS crash (slower); by default it survives "
        "a kill of any process",
    )
    return p


def _security_options(p: argparse.ArgumentParser) -> None:
    mib = 1024 * 1024
    p.add_argument(
        "--token",
        default=None,
        help=f"shared token clients must send (default ${TOKEN_ENV}); prefer the environment "
        "variable or --token-file: other users can read a process's arguments",
    )
    p.add_argument("--token-file", type=Path, default=None, help="read the token from this file")
    p.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback --host without a token (trusted networks only)",
    )
    p.add_argument("--tls-cert", type=Path, default=None, help="PEM certificate chain (TLS)")
    p.add_argument("--tls-key", type=Path, default=None, help="PEM private key (TLS)")
    p.add_argument(
        "--max-message-bytes",
        type=int,
        default=64 * mib,
        help=(
            "largest message on every hop, client <-> runtime <-> instance (task input/output, "
            "common data); default 64 MiB"
        ),
    )
    p.add_argument(
        "--max-id-bytes",
        type=int,
        default=DEFAULT_MAX_ID_BYTES,
        help=f"longest session id accepted (default {DEFAULT_MAX_ID_BYTES})",
    )
    p.add_argument(
        "--max-object-bytes",
        type=int,
        default=DEFAULT_MAX_OBJECT_BYTES,
        help="largest object or patch the cache accepts in one upload (default 1 GiB)",
    )


def _token(args: argparse.Namespace) -> str | None:
    """The token from --token, --token-file or the environment (first one set)."""
    if args.token:
        return str(args.token)
    if args.token_file is not None:
        try:
            return args.token_file.read_text().strip() or None
        except OSError as exc:
            raise ConfigError(f"cannot read --token-file {args.token_file}: {exc}") from exc
    return os.environ.get(TOKEN_ENV) or None


class _LossyStream(io.TextIOBase):
    """A text stream that drops what it cannot write.

    The runtime logs to stderr, which is ``<home>/logs/runtime.log``: on a full disk a log line
    must be lost, not raise inside the scheduler or the Frontend and take a task with it.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        with contextlib.suppress(OSError):
            return self._stream.write(text)
        return len(text)

    def flush(self) -> None:
        with contextlib.suppress(OSError):
            self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()


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
    # Everything the runtime and its instances create (database, cache files, logs, sockets)
    # is private to the user.
    os.umask(0o077)
    try:
        token = _token(args)
    except ConfigError as exc:
        print(f"flame-agents runtime: {exc}", file=sys.stderr)
        return 2
    _interpreter_first_on_path()
    sys.stderr = cast(TextIO, _LossyStream(sys.stderr))
    _logging.configure(fmt=args.log_format, level=args.log_level)
    opts = RuntimeOptions(
        home=args.home,
        host=args.host,
        port=args.port,
        cache_port=args.cache_port,
        scheduling=SchedulingLimits(
            max_instances=max(1, args.max_instances),
            bind_timeout=args.bind_timeout,
            max_concurrent_starts=(
                None if args.max_concurrent_starts is None else max(1, args.max_concurrent_starts)
            ),
            bind_retry_limit=max(1, args.bind_retry_limit),
            max_task_attempts=max(1, args.max_task_attempts),
            task_timeout=(
                args.task_timeout if args.task_timeout and args.task_timeout > 0 else None
            ),
            cancel_grace=max(0.0, args.cancel_grace),
        ),
        token=token,
        insecure=args.insecure,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        max_message_bytes=max(1024, args.max_message_bytes),
        max_id_bytes=max(1, args.max_id_bytes),
        max_object_bytes=max(1, args.max_object_bytes),
        prestart=max(0, args.prestart),
        exit_with_pid=args.exit_with_pid,
        fsync=args.fsync,
    )
    try:
        asyncio.run(serve(opts))
    except ConfigError as exc:
        print(f"flame-agents runtime: {exc}", file=sys.stderr)
        return 2
    except (OSError, FlameAgentsError) as exc:
        # A damaged database or cache file at start-up lands here: its message names the file.
        print(f"flame-agents runtime: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
