"""The ``flame-agents`` / ``flmctl`` entry point: global options, verb dispatch, error reporting.

Each verb lives in a small module that adds its sub-parser and a handler ``(args) -> int``.
Errors from :mod:`flame_agents.errors` become one ``error: ...`` line on stderr and exit code 1
(their messages already say how to fix them, so a traceback would only hide that line);
argparse errors exit with 2; Ctrl-C exits with 130. A reader that closes the output early
(``flmctl list -s | head -1``) ends the command quietly with 0, as it would a Unix tool.
Log lines go to stderr (``--log-format``, level ``$FLAME_LOG_LEVEL``), never to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from importlib import metadata

from flame_agents import _logging
from flame_agents.bench.cli import add_bench_parser
from flame_agents.cli import agent_support, app_cmds, demo, runtime_cmds
from flame_agents.errors import FlameAgentsError

__all__ = ["build_parser", "main"]


def _version() -> str:
    try:
        return metadata.version("flame-agents")
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


def build_parser(prog: str = "flame-agents") -> argparse.ArgumentParser:
    """The full argument parser (also used by the docs test to list the verbs)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run the embedded Flame-compatible runtime and manage applications, "
        "sessions and tasks on it (or on a Flame 0.6 cluster).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument(
        "--endpoint",
        metavar="URL",
        help="Frontend to talk to, e.g. http://127.0.0.1:8080 (default: FLAME_ENDPOINT, "
        "~/.flame/flame.yaml, else the embedded runtime of FLAME_AGENTS_HOME)",
    )
    parser.add_argument(
        "--log-format",
        choices=("console", "json"),
        default="console",
        help="format of log lines on stderr (default: console)",
    )
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    runtime_cmds.add_parsers(verbs)
    app_cmds.add_parsers(verbs)
    demo.add_parser(verbs)
    agent_support.add_parser(verbs)
    add_bench_parser(verbs)
    return parser


def _prog_name() -> str:
    name = sys.argv[0].rsplit("/", 1)[-1] if sys.argv and sys.argv[0] else ""
    return name if name in ("flame-agents", "flmctl") else "flame-agents"


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command line; returns the process exit code."""
    parser = build_parser(_prog_name())
    try:
        args = parser.parse_args(argv)
        validate = getattr(args, "validate_usage", None)
        if validate is not None:  # cross-option rules argparse cannot express (usage errors)
            validate(args)
    except SystemExit as exc:  # argparse exits 2 on usage errors and 0 for --help
        return exc.code if isinstance(exc.code, int) else 2
    _logging.configure(fmt=args.log_format)
    try:
        code: int = args.func(args)
        # Written out here, not at interpreter exit, so a closed pipe is seen below.
        sys.stdout.flush()
    except BrokenPipeError:
        _stdout_gone()
        return 0
    except FlameAgentsError as exc:
        _say(f"error: {exc.message}")
        return 1
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    return code


def _say(line: str) -> None:
    # stderr may be a closed pipe too (`2>&1 | head`): nothing is left to tell then.
    with contextlib.suppress(OSError, ValueError):
        print(line, file=sys.stderr)


def _stdout_gone() -> None:
    """The reader of stdout went away: drop what is still buffered, quietly.

    Pointing the descriptor at /dev/null keeps the interpreter's final flush of the buffer
    from failing again (and printing "Exception ignored ... BrokenPipeError").
    """
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
