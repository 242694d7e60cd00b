"""Logging of library code: stdlib loggers under ``flame_agents``, rendered by structlog, on stderr.

Library modules call :func:`get_logger` and log structlog-style (an event plus key/values; they
bind ``session_id``, ``task_id``, ``app``). Every call goes to the stdlib logger of its module
(``logging.getLogger(__name__)``), so ``logging.getLogger("flame_agents").setLevel(...)`` and
Python's own logging configuration work as Python users expect, whatever the user's global
structlog configuration is. Nothing here ever writes to stdout.

Where lines go:

* By default (set up at import): a handler on the ``flame_agents`` logger writes to the current
  ``sys.stderr``, at ``$FLAME_LOG_LEVEL`` (Flame's variable), else INFO, unless a level was set
  already. Once the user configures logging (the root logger has handlers) it stays silent and
  records reach the user's handlers: the message is ``event key=value ...`` and the fields are
  in the record's ``flame_agents_event`` attribute.
* A process entry point that owns its output (the CLI, ``python -m flame_agents.runtime``) calls
  :func:`configure`: console or JSON lines on stderr at a level, always, and nothing propagates.

structlog renders the lines (``ProcessorFormatter``). Importing it costs a service process a
noticeable part of its start-up, so it is imported when the first line is written: a call below
the logger's level costs one ``isEnabledFor`` check.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Literal

__all__ = [
    "EVENT_ATTR",
    "LEVEL_ENV",
    "LOGGER_NAME",
    "BoundLogger",
    "configure",
    "env_level",
    "follow_env_level",
    "get_logger",
    "parse_level",
]

LogFormat = Literal["console", "json"]

LOGGER_NAME = "flame_agents"
"""The stdlib logger every library logger is a child of."""

LEVEL_ENV = "FLAME_LOG_LEVEL"
"""Flame's log level variable (``debug``, ``info``, ``warning``, ``error``; any case)."""

EVENT_ATTR = "flame_agents_event"
"""Attribute of our log records holding the event's fields (``event`` and the key/values)."""

_NAMES = {
    "trace": logging.DEBUG,  # Flame's (Rust) levels include trace
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}


def parse_level(text: str | int) -> int | None:
    """A level name (any case) or number as a stdlib level; None when it is neither."""
    if isinstance(text, int):
        return text
    name = text.strip().lower()
    if name.isdigit():
        return int(name)
    return _NAMES.get(name)


def env_level() -> int | None:
    """The level ``$FLAME_LOG_LEVEL`` asks for, or None when unset or not a level."""
    value = os.environ.get(LEVEL_ENV)
    return parse_level(value) if value else None


# -- loggers -------------------------------------------------------------------------------


def _text(event: Any, fields: dict[str, Any]) -> str:
    """``event key=value ...``: the message other handlers (the user's) show."""
    parts = [str(event)]
    for key, value in fields.items():
        shown = str(value)
        if not shown or any(c.isspace() for c in shown):
            shown = repr(value)
        parts.append(f"{key}={shown}")
    return " ".join(parts)


class BoundLogger:
    """A structlog-style logger over a stdlib logger: ``log.info("event", key=value)``, ``bind``.

    ``exc_info`` (True or an exception) and ``stack_info`` are passed to the stdlib record.
    """

    __slots__ = ("_bound", "_logger")

    def __init__(self, logger: logging.Logger, bound: dict[str, Any]) -> None:
        self._logger = logger
        self._bound = bound

    @property
    def name(self) -> str:
        """The stdlib logger's name."""
        return self._logger.name

    def bind(self, **new: Any) -> BoundLogger:
        """A logger with ``new`` key/values attached to every line."""
        return BoundLogger(self._logger, {**self._bound, **new})

    def unbind(self, *keys: str) -> BoundLogger:
        """A logger without ``keys``."""
        return BoundLogger(self._logger, {k: v for k, v in self._bound.items() if k not in keys})

    def is_enabled_for(self, level: int) -> bool:
        """Whether a line at ``level`` would be emitted."""
        return self._logger.isEnabledFor(level)

    def debug(self, event: Any, **kw: Any) -> None:
        """Log ``event`` at DEBUG."""
        if self._logger.isEnabledFor(logging.DEBUG):
            self._emit(logging.DEBUG, event, kw)

    def info(self, event: Any, **kw: Any) -> None:
        """Log ``event`` at INFO."""
        if self._logger.isEnabledFor(logging.INFO):
            self._emit(logging.INFO, event, kw)

    def warning(self, event: Any, **kw: Any) -> None:
        """Log ``event`` at WARNING."""
        if self._logger.isEnabledFor(logging.WARNING):
            self._emit(logging.WARNING, event, kw)

    warn = warning

    def error(self, event: Any, **kw: Any) -> None:
        """Log ``event`` at ERROR."""
        if self._logger.isEnabledFor(logging.ERROR):
            self._emit(logging.ERROR, event, kw)

    def exception(self, event: Any, **kw: Any) -> None:
        """Log ``event`` at ERROR with the exception being handled."""
        if self._logger.isEnabledFor(logging.ERROR):
            kw.setdefault("exc_info", True)
            self._emit(logging.ERROR, event, kw)

    def critical(self, event: Any, **kw: Any) -> None:
        """Log ``event`` at CRITICAL."""
        if self._logger.isEnabledFor(logging.CRITICAL):
            self._emit(logging.CRITICAL, event, kw)

    def log(self, level: int, event: Any, **kw: Any) -> None:
        """Log ``event`` at ``level``."""
        if self._logger.isEnabledFor(level):
            self._emit(level, event, kw)

    def _emit(self, level: int, event: Any, kw: dict[str, Any]) -> None:
        exc_info = kw.pop("exc_info", None)
        stack_info = bool(kw.pop("stack_info", False))
        fields = {**self._bound, **kw}
        # stacklevel 3: the record names the caller of info()/warning()/..., not this module.
        self._logger.log(
            level,
            _text(event, fields),
            exc_info=exc_info,
            stack_info=stack_info,
            stacklevel=3,
            extra={EVENT_ATTR: {"event": event, **fields}},
        )


def get_logger(name: str, **bound: Any) -> BoundLogger:
    """The logger of module ``name`` (a child of ``flame_agents``) with ``bound`` attached."""
    return BoundLogger(logging.getLogger(name), bound)


# -- output ----------------------------------------------------------------------------------


def _event_from_record(logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog pre-chain step: our records carry their fields; others keep their message."""
    record = event_dict.get("_record")
    fields = getattr(record, EVENT_ATTR, None)
    if not isinstance(fields, dict):
        return event_dict
    out = dict(fields)
    for key in ("_record", "_from_structlog", "exc_info", "stack_info"):
        if key in event_dict:
            out[key] = event_dict[key]
    return out


def _structlog_formatter(fmt: LogFormat) -> logging.Formatter:
    import structlog

    pre_chain: list[Any] = [
        _event_from_record,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if fmt == "json":
        pre_chain.append(structlog.stdlib.add_logger_name)
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    formatter: logging.Formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=pre_chain,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    return formatter


class _Formatter(logging.Formatter):
    """Console or JSON lines rendered by structlog, imported at the first line formatted."""

    def __init__(self, fmt: LogFormat) -> None:
        super().__init__()
        self.log_format: LogFormat = fmt
        self._inner: logging.Formatter | None = None

    def format(self, record: logging.LogRecord) -> str:
        if self._inner is None:
            self._inner = _structlog_formatter(self.log_format)
        return self._inner.format(record)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to ``sys.stderr`` as it is when a line is written (tests and the runtime swap it).

    Unless ``forced`` (a process entry point configured output), it is silent while the root
    logger has handlers: the user configured logging, and records propagate to their handlers.
    """

    def __init__(self, fmt: LogFormat, *, forced: bool = False) -> None:
        logging.Handler.__init__(self)
        self.forced = forced
        self.setFormatter(_Formatter(fmt))

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass  # always the current sys.stderr

    def emit(self, record: logging.LogRecord) -> None:
        if not self.forced and logging.getLogger().handlers:
            return
        super().emit(record)


_default_level: int | None = None
"""The level the import-time default set, while nobody (user or configure) changed it."""


def _install_default() -> None:
    """The import-time default: stderr, console lines, $FLAME_LOG_LEVEL or INFO."""
    global _default_level
    logger = logging.getLogger(LOGGER_NAME)
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler("console"))
    if logger.level == logging.NOTSET:  # a level the user set before importing us stays
        _default_level = env_level() or logging.INFO
        logger.setLevel(_default_level)


def follow_env_level() -> None:
    """Read ``$FLAME_LOG_LEVEL`` again for a default level nobody changed since import.

    For service entry points: a prestarted interpreter imported us before the launch gave it
    the application's environment.
    """
    global _default_level
    logger = logging.getLogger(LOGGER_NAME)
    if _default_level is not None and logger.level == _default_level:
        _default_level = env_level() or logging.INFO
        logger.setLevel(_default_level)


def configure(*, fmt: LogFormat = "console", level: str | int | None = None) -> None:
    """Own this process's log output: ``fmt`` lines on stderr at ``level``.

    For process entry points (the CLI, the runtime). ``level`` defaults to ``$FLAME_LOG_LEVEL``,
    else INFO. Lines are written even when the root logger has handlers, and do not propagate
    to them. Raises ValueError for a level that is not one.
    """
    global _default_level
    _default_level = None
    if level is None:
        value = env_level() or logging.INFO
    else:
        parsed = parse_level(level)
        if parsed is None:
            raise ValueError(
                f"unknown log level {level!r}; use debug, info, warning, error or critical"
            )
        value = parsed
    logger = logging.getLogger(LOGGER_NAME)
    for handler in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
        logger.removeHandler(handler)
    logger.addHandler(_StderrHandler(fmt, forced=True))
    logger.setLevel(value)
    logger.propagate = False


_install_default()
