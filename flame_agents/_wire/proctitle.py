"""Process titles: an instance names its application and session in ``ps``.

Our extension of the Flame launch protocol. The embedded runtime passes the application name in
``FLAME_AGENTS_APP`` and the session id in ``FLAME_AGENTS_SESSION``; a service process of ours
(or a prestarted interpreter taking a launch) sets its title to::

    flame-agents instance app=<app> session=<session> (<its original command line>)

so an operator can tell which process serves which session. A process cannot retitle another,
so the title is set from inside the service: when it binds its socket (from the variables), and
again on ``OnSessionEnter`` (from the request: Flame's launcher sets no such variables).
Other services (flamepy's, any other program) keep their own command line, unless a prestarted
interpreter ran them: it sets the title when it takes the launch.

Only the command line changes: the process name (``comm``, what ``top`` and ``pgrep`` show) stays
the program's. Setting the title rewrites the memory that holds the process's arguments, and,
for a title longer than those, the environment block after it (as PostgreSQL and nginx do):
``/proc/<pid>/environ`` of a titled instance no longer lists its environment. The process's own
``os.environ`` is kept.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
import threading

__all__ = ["APP_ENV", "SESSION_ENV", "instance_title", "set_instance_title"]

APP_ENV = "FLAME_AGENTS_APP"
"""Environment variable holding the application name of the instance."""

SESSION_ENV = "FLAME_AGENTS_SESSION"
"""Environment variable holding the id of the session the instance serves."""

_MAX_PART = 200
"""Longest application name or session id shown (ids are client-chosen and may be long)."""

_current: str | None = None


def _part(text: str) -> str:
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= _MAX_PART else text[: _MAX_PART - 3] + "..."


def instance_title(app: str, session: str, argv: list[str]) -> str:
    """The title of an instance of ``app`` serving ``session`` that was started as ``argv``."""
    command = shlex.join(argv) if argv else "?"
    return f"flame-agents instance app={_part(app)} session={_part(session)} ({command})"


def set_instance_title(app: str | None = None, session: str | None = None) -> bool:
    """Title this process for ``app``/``session`` (default: from the environment variables).

    Returns False (and changes nothing) without both names, or when titles cannot be set here.
    The original command line is ``sys.orig_argv``: what the process was started as (for a
    prestarted interpreter, the launch it took), not what ``ps`` shows now.
    """
    global _current
    app = app if app is not None else os.environ.get(APP_ENV)
    session = session if session is not None else os.environ.get(SESSION_ENV)
    if not app or not session:
        return False
    title = instance_title(app, session, list(getattr(sys, "orig_argv", sys.argv)))
    if title == _current:
        return True
    # Only a display name: never worth failing a service over.
    with contextlib.suppress(ImportError, OSError):
        import setproctitle

        name = _thread_name()
        setproctitle.setproctitle(title)
        if name:
            # setproctitle also renames the calling thread (the process's ``comm`` when it is
            # the main thread): keep the program's name there, for top, pgrep and killall.
            setproctitle.setthreadtitle(name)
        _current = title
        return True
    return False


def _thread_name() -> str | None:
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/comm", "rb") as comm:
            return comm.read().rstrip(b"\n").decode(errors="replace") or None
    except OSError:
        return None
