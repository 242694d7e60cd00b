"""structlog set-up: library modules get loggers here; only process entry points configure output.

Library code calls :func:`get_logger` and binds ``session_id``, ``task_id``, ``app``. The CLI and
the runtime's process entry call :func:`configure` once (console for people, JSON with
``--log-format json``). Importing structlog costs a service process a noticeable part of its
start-up, so loggers import it at their first log call, and a service configures it with
:func:`configure_on_first_use`, which waits until something imports structlog.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import logging
import sys
from types import ModuleType
from typing import Any, Literal

__all__ = ["configure", "configure_on_first_use", "get_logger"]

LogFormat = Literal["console", "json"]

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "warn": 30, "error": 40, "exception": 40}
_LEVELS.update({"critical": 50, "fatal": 50, "msg": 20})

_pending_level: str | None = None
"""Level of a configuration waiting for structlog to be imported (configure_on_first_use)."""


def _structlog() -> Any:
    """The structlog module, imported now (which applies a pending configuration)."""
    import structlog

    _apply_pending()
    return structlog


def _apply_pending() -> None:
    global _pending_level
    level, _pending_level = _pending_level, None
    if level is not None:
        import structlog

        if not structlog.is_configured():
            configure(level=level)


def _noop(*args: Any, **kwargs: Any) -> None:
    return None


class _LazyLogger:
    """Stands in for a structlog logger until a log call needs structlog.

    ``bind`` stays lazy. A call below the level of a pending configuration is dropped without
    importing structlog (nothing could have configured structlog without importing it).
    """

    __slots__ = ("_bound", "_logger", "_name")

    def __init__(self, name: str, bound: dict[str, Any]) -> None:
        self._name = name
        self._bound = bound
        self._logger: Any = None

    def _resolve(self) -> Any:
        if self._logger is None:
            logger = _structlog().get_logger(self._name)
            self._logger = logger.bind(**self._bound) if self._bound else logger
        return self._logger

    def bind(self, **new: Any) -> Any:
        """A logger with ``new`` key/values attached (lazy while structlog is not imported)."""
        if self._logger is None and "structlog" not in sys.modules:
            return _LazyLogger(self._name, {**self._bound, **new})
        return self._resolve().bind(**new)

    def __getattr__(self, name: str) -> Any:
        level = _LEVELS.get(name)
        if (
            level is not None
            and self._logger is None
            and _pending_level is not None
            and "structlog" not in sys.modules
            and level < logging.getLevelName(_pending_level.upper())
        ):
            return _noop
        return getattr(self._resolve(), name)


def get_logger(name: str, **bound: Any) -> Any:
    """A structlog logger for module ``name`` with ``bound`` key/values attached."""
    if "structlog" in sys.modules:
        import structlog

        return structlog.get_logger(name).bind(**bound) if bound else structlog.get_logger(name)
    return _LazyLogger(name, bound)


def configure(*, fmt: LogFormat = "console", level: str = "info") -> None:
    """Configure structlog output for a process: human console lines or JSON, to stderr."""
    import structlog

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


def configure_on_first_use(*, level: str = "info") -> None:
    """Console logs at ``level`` to stderr, unless structlog is configured by then.

    Applied at once when structlog is already imported; otherwise when the first of our loggers
    logs at ``level`` or above, or when any code imports structlog, whichever comes first.
    """
    global _pending_level
    if "structlog" in sys.modules:
        import structlog

        if not structlog.is_configured():
            configure(level=level)
        return
    if not isinstance(logging.getLevelName(level.upper()), int):
        level = "info"
    _pending_level = level
    if not any(isinstance(f, _ConfigureAfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _ConfigureAfterImport())


class _ConfigureAfterImport(importlib.abc.MetaPathFinder):
    """Applies a pending configuration right after structlog's own import finishes."""

    def find_spec(
        self, fullname: str, path: Any = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "structlog":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _ThenConfigure(spec.loader)
        return spec


class _ThenConfigure(importlib.abc.Loader):
    def __init__(self, real: importlib.abc.Loader) -> None:
        self._real = real

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._real.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        # The module keeps its real loader, as after a plain import.
        module.__loader__ = self._real
        if module.__spec__ is not None:
            module.__spec__.loader = self._real
        self._real.exec_module(module)
        _apply_pending()
