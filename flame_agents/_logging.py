"""structlog set-up: library modules get loggers here; only process entry points configure output.

Library code calls :func:`get_logger` and binds ``session_id``, ``task_id``, ``app``. The CLI and
the runtime's process entry call :func:`configure` once (console for people, JSON with
``--log-format json``).
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal

import structlog

__all__ = ["configure", "get_logger"]

LogFormat = Literal["console", "json"]


def get_logger(name: str, **bound: Any) -> Any:
    """A structlog logger for module ``name`` with ``bound`` key/values attached."""
    return structlog.get_logger(name).bind(**bound) if bound else structlog.get_logger(name)


def configure(*, fmt: LogFormat = "console", level: str = "info") -> None:
    """Configure structlog output for a process: human console lines or JSON, to stderr."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelName(level.upper()) if isinstance(level, str) else level
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
