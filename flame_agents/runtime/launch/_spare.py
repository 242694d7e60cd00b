"""The program of a prestarted interpreter: preload, wait for a launch, become that service.

Started by :mod:`flame_agents.runtime.launch._prestart` as
``python -c BOOT <fd> <default sys.path>`` (through the same exec shim as any instance), a
spare imports the modules services spend their start-up on, writes ``W`` to the pipe ``<fd>``
and blocks reading one launch request (JSON) on stdin. It then turns itself into the process a
fresh ``python -m module`` / ``python script.py`` would have been: working directory, environment,
``sys.argv``/``sys.orig_argv``/``sys.executable``, ``sys.path``, stdin on /dev/null,
stdout/stderr on the instance's log files, and a new ``__main__`` run the way the interpreter
runs it. Before changing anything it checks that no module it preloaded would have been found
elsewhere on the launch's ``sys.path``; if one would, it answers ``D<reason>`` and exits so the
runtime launches a fresh process. Otherwise it answers ``A`` and runs the service, which later
writes the readiness byte to the same pipe.

Only the standard library is imported before the preload, and nothing here starts a thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import importlib.machinery
import json
import os
import select
import sys
import types
from typing import Any

__all__ = ["BOOT", "PRELOAD", "SPARE_NAME", "WARMING_NAME", "main"]

PRELOAD = (  # most needed first: a launch that arrives while a spare imports cuts this short
    "setproctitle",  # tiny; the spare titles itself with it when it takes a launch
    "grpc",
    "flame_agents._wire.flame_v1.shim_pb2_grpc",
    "flame_agents.service",
    "flame_agents.service.instance",
    "cloudpickle",
    "structlog",
    "flame_agents.cache",
    "flame_agents.agent",
)
"""What a spare imports before it is needed: what services spend their start-up importing.
A module that fails to import is skipped (the service would fail on it the same way). A launch
handed to a spare still importing stops the preload there."""

SPARE_NAME = b"flame-spare"
"""Process name (``/proc/<pid>/comm``) of a warm spare waiting for a launch."""

WARMING_NAME = b"flame-spare-imp"
"""Process name of a spare still importing."""

_PR_SET_NAME = 15


def _set_name(name: bytes) -> None:
    # Only a display name: never worth failing over.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(_PR_SET_NAME, ctypes.c_char_p(name[:15]), 0, 0, 0)


def _read_request() -> dict[str, Any] | None:
    chunks = []
    while chunk := os.read(0, 65536):
        chunks.append(chunk)
    data = b"".join(chunks)
    return json.loads(data) if data else None


def _pythonpath(env: dict[str, str], cwd: str) -> list[str]:
    """The PYTHONPATH entries of ``env`` as the interpreter puts them on sys.path."""
    value = env.get("PYTHONPATH", "")
    # site.py makes them absolute with getcwd(), which has no symbolic links.
    real = os.path.realpath(cwd)
    return (
        [os.path.normpath(os.path.join(real, p)) for p in value.split(os.pathsep)] if value else []
    )


def _launch_path(req: dict[str, Any], default: list[str]) -> list[str]:
    """``sys.path`` of a fresh interpreter for this launch.

    ``default``: the interpreter's own ``sys.path`` without PYTHONPATH and path0.
    """
    cwd = os.path.realpath(req["cwd"])
    if req["module"] is not None:
        path0 = cwd
    else:
        path0 = os.path.dirname(os.path.realpath(os.path.join(cwd, req["script"])))
    # site.removeduppaths() keeps the first of duplicates; the interpreter then puts path0 first.
    seen: set[str] = set()
    rest = []
    for entry in (*_pythonpath(req["env"], cwd), *default):
        if entry not in seen:
            seen.add(entry)
            rest.append(entry)
    return [path0, *rest]


def _origin(spec: importlib.machinery.ModuleSpec | None) -> Any:
    if spec is None:
        return None
    if spec.origin and spec.origin not in ("built-in", "frozen"):
        return os.path.realpath(spec.origin)
    locations = spec.submodule_search_locations
    return (spec.origin, sorted(os.path.realpath(p) for p in locations or ()))


def _resolve(name: str, path: list[str]) -> importlib.machinery.ModuleSpec | None:
    """The spec a fresh import of top-level ``name`` would find with ``path`` as sys.path."""
    for finder in sys.meta_path:
        if finder is importlib.machinery.PathFinder:
            spec = importlib.machinery.PathFinder.find_spec(name, path)
        else:
            find = getattr(finder, "find_spec", None)
            spec = find(name, None) if find is not None else None
        if spec is not None:
            return spec
    return None


def _shadowed(preloaded: list[str], path: list[str]) -> str | None:
    """A preloaded module that the launch's sys.path would resolve to another file, if any."""
    for name in preloaded:
        module = sys.modules.get(name)
        spec = getattr(module, "__spec__", None)
        if spec is None:
            continue
        if _origin(_resolve(name, path)) != _origin(spec):
            return f"module {name!r} would load from elsewhere on this launch's sys.path"
    for name in ("sitecustomize", "usercustomize"):
        if name not in sys.modules and _resolve(name, path) is not None:
            return f"{name} on this launch's sys.path runs at interpreter start"
    return None


def _redirect(fd: int, path: str | None, flags: int) -> None:
    target = os.open(path or os.devnull, flags)
    if target != fd:
        os.dup2(target, fd)
        os.close(target)


def _become(req: dict[str, Any], path: list[str]) -> None:
    """Apply the launch's process state, exactly as a fresh interpreter would have it."""
    titles = sys.modules.get("setproctitle")
    if titles is not None:
        # setproctitle finds the memory it may rewrite by the environment the process started
        # with: it must look before that environment is replaced (else no title can be set).
        with contextlib.suppress(Exception):
            titles.getproctitle()
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    import time

    time.tzset()
    tempfile: Any = sys.modules.get("tempfile")
    if tempfile is not None:
        tempfile.tempdir = None  # re-read TMPDIR on next use
    sys.path[:] = path
    importlib.invalidate_caches()
    sys.executable = req["exe"]
    sys.orig_argv[:] = [req["exe"], *req["args"]]
    sys.stdout.flush()
    sys.stderr.flush()
    _redirect(0, None, os.O_RDONLY)
    _redirect(1, req["out"], os.O_WRONLY)
    _redirect(2, req["err"], os.O_WRONLY)
    _set_name(os.path.basename(req["exe"]).encode())


def _set_title() -> None:
    """Show the application and session this process now serves in ``ps``, instead of the
    spare's own command line (``python -c <boot program> ...``)."""
    # After _become: setproctitle (if the preload did not get to it) and our module then load
    # from the launch's sys.path, as a fresh interpreter would load them.
    with contextlib.suppress(Exception):
        from flame_agents._wire.proctitle import set_instance_title

        set_instance_title()


def _run_main(req: dict[str, Any]) -> None:
    """Run the target as ``__main__`` the way ``python -m`` / ``python script.py`` does."""
    import builtins

    main_module = types.ModuleType("__main__")
    main_module.__builtins__ = builtins  # type: ignore[attr-defined]
    sys.modules["__main__"] = main_module
    if req["module"] is not None:
        import runpy

        sys.argv[:] = ["-m", *req["argv"]]
        # What the interpreter calls for -m; it reads sys.modules["__main__"] set above.
        runpy._run_module_as_main(req["module"], alter_argv=True)  # type: ignore[attr-defined]
        return
    script = req["script"]
    sys.argv[:] = [script, *req["argv"]]
    filename = os.path.abspath(script)
    main_module.__file__ = filename
    main_module.__cached__ = None  # type: ignore[attr-defined]
    main_module.__loader__ = importlib.machinery.SourceFileLoader("__main__", filename)
    with open(filename, "rb") as source:
        code = compile(source.read(), filename, "exec", dont_inherit=True)
    exec(code, main_module.__dict__)


def _report_uncaught(exc: BaseException) -> None:
    """Print an exception the service did not catch as a fresh interpreter prints it: without
    the spare's own frames, which would only add noise to the log (and to the start-up error
    the runtime quotes from it)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == _OWN_FILE:
        tb = tb.tb_next
    # The default hook prints the exception's own traceback, whatever it is passed.
    sys.excepthook(type(exc), exc.with_traceback(tb), tb)


_OWN_FILE = _report_uncaught.__code__.co_filename


BOOT = (
    "import sys; b = set(sys.modules); from flame_agents.runtime.launch._spare import main; main(b)"
)
"""The ``-c`` program of a spare: it notes the modules of a bare interpreter first."""


def main(bare: set[str]) -> None:
    """Preload, report warm, wait for one launch request, then run it (or decline and exit).

    ``bare``: the modules the interpreter had before this program imported anything; every
    other module is checked against the launch's ``sys.path``.
    """
    _set_name(WARMING_NAME)
    ctl = int(sys.argv[1])
    default = json.loads(sys.argv[2])
    for name in PRELOAD:
        if select.select([0], [], [], 0)[0]:
            break  # a launch is waiting: it needs the CPU more than the rest of the preload
        try:
            importlib.import_module(name)
        except Exception:  # a broken module is the service's business, as in a fresh process
            continue
    preloaded = sorted({m.partition(".")[0] for m in set(sys.modules) - bare} - {"__main__"})
    _set_name(SPARE_NAME)
    os.write(ctl, b"W")
    req = _read_request()
    if req is None:  # the pool closed our stdin: stop quietly
        os._exit(0)
    try:
        path = _launch_path(req, default)
        problem = _shadowed(preloaded, path)
        if problem is None:
            _become(req, path)
    except Exception as exc:  # any failure here means: launch it fresh
        problem = f"cannot apply the launch: {exc}"
    if problem is not None:
        os.write(ctl, b"D" + problem.encode(errors="replace"))
        os._exit(0)
    os.write(ctl, b"A")
    _set_title()
    try:
        _run_main(req)
    except Exception as exc:
        _report_uncaught(exc)
        sys.exit(1)  # as the interpreter exits after an uncaught exception
