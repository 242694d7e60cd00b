"""The ``python`` installer's steps: a project pip-installed into its application's venv.

The venv is one of the runtime's interpreter, and a ``.pth`` file makes every package the
runtime's own interpreter sees visible in it (``--system-site-packages`` would give the *base*
interpreter's packages when the runtime itself runs in a virtual environment), so pip counts
them as installed and needs no network when nothing is missing. The project is built without
build isolation when its build requirements are installed, which needs no network either.

Each step (venv, ensurepip, pip) is a child process in its own process group whose output is
appended to the application's install log; one that fails, or outlives :data:`STEP_TIMEOUT`,
raises :class:`StepError` quoting the log's last lines, and one whose launch is cancelled is
killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.metadata
import importlib.util
import os
import re
import signal
import sys
import sysconfig
from pathlib import Path

__all__ = [
    "PROJECT_METADATA",
    "STEP_TIMEOUT",
    "StepError",
    "output_tail",
    "pip_install",
    "site_dirs",
]

STEP_TIMEOUT = 1800.0
"""Seconds one installer step (venv, pip) may take: generous for large wheels, but a pip stuck
on a dead index must not hold the application's install lock forever."""

PROJECT_METADATA = ("pyproject.toml", "setup.py", "setup.cfg")
"""Files that make a folder a project pip can install."""

_DEFAULT_BUILD_REQUIRES = ("setuptools>=40.8.0", "wheel")  # PEP 517's fallback, as pip's
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_TAIL_LINES = 15
_TAIL_CHARS = 2000
"""The quote travels in events and gRPC error trailers, which are small: keep it bounded."""


class StepError(Exception):
    """An installer step failed or took too long; the message names the step and quotes the
    last lines of its output."""


async def pip_install(root: Path, venv: Path, log_path: Path) -> None:
    """Create ``venv`` (seeing the runtime's packages) and pip-install the project at ``root``
    into it with its dependencies; raises StepError."""
    await _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], log_path)
    python = str(venv / "bin" / "python")
    # The runtime's own packages stay visible (and count as installed for pip).
    shown = [p for p in sys.path[1:] if p and os.path.isdir(p)]
    for site in site_dirs(venv):
        Path(site).mkdir(parents=True, exist_ok=True)
        Path(site, "_flame_agents_runtime.pth").write_text("".join(f"{p}\n" for p in shown))
    if importlib.util.find_spec("pip") is None:
        await _run([python, "-m", "ensurepip", "--default-pip"], log_path)
    args = [python, "-m", "pip", "install", "--no-input", "--disable-pip-version-check"]
    if _build_requirements_installed(root):
        args.append("--no-build-isolation")
    args.append(str(root))
    await _run(args, log_path, cwd=root)


def site_dirs(venv: Path) -> list[str]:
    """The site-packages folders of ``venv`` (purelib, then platlib when it differs)."""
    paths = sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})
    return list(dict.fromkeys([paths["purelib"], paths["platlib"]]))


def _build_requirements_installed(root: Path) -> bool:
    """Whether every build requirement of the project is installed where the runtime runs (so
    pip can build it without downloading a build environment)."""
    requires: list[str] = list(_DEFAULT_BUILD_REQUIRES)
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        try:
            tomllib = importlib.import_module("tomllib")
        except ImportError:  # Python 3.10: let pip build in isolation
            return False
        try:
            build = tomllib.loads(pyproject.read_text()).get("build-system", {})
        except (OSError, ValueError):
            return False  # pip reports the malformed file
        if "requires" in build:
            requires = [str(r) for r in build["requires"]]
    names = {m.group(1) for r in requires if (m := _NAME.match(r))}
    installed = {name: _version(name) for name in names}
    if "wheel" in names and installed["wheel"] is None:
        # setuptools builds wheels itself since 70.1: "wheel" is listed only for older ones.
        setuptools = _version("setuptools")
        if setuptools is not None and setuptools >= (70, 1):
            installed["wheel"] = setuptools
    return all(v is not None for v in installed.values())


def _version(dist: str) -> tuple[int, ...] | None:
    try:
        text = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None
    return tuple(int(p) for p in re.findall(r"\d+", text)[:2])


async def _run(argv: list[str], log_path: Path, *, cwd: Path | None = None) -> None:
    """Run one installer step, its output appended to the log; StepError if it fails."""
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONUNBUFFERED": "1"}
    with open(log_path, "ab") as log:
        log.write(f"$ {' '.join(argv)}\n".encode())
        log.flush()
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=str(cwd) if cwd else None,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        code = await asyncio.wait_for(proc.wait(), STEP_TIMEOUT)
    except BaseException as exc:  # cancelled (the launch is no longer wanted) or timed out
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            await asyncio.shield(proc.wait())
        if isinstance(exc, asyncio.TimeoutError):
            raise StepError(
                f"{_step(argv)} took longer than {STEP_TIMEOUT:g}s{output_tail(log_path)}"
            ) from exc
        raise
    if code != 0:
        raise StepError(f"{_step(argv)} exited with code {code}{output_tail(log_path)}")


def _step(argv: list[str]) -> str:
    """``pip install`` for ``python -m pip install ...``."""
    return " ".join(argv[2:4]) if argv[1:2] == ["-m"] else argv[0]


def output_tail(path: Path, *, lines: int = _TAIL_LINES) -> str:
    """``; last lines of the installer's output (<log>): ...`` for an install failure's text."""
    try:
        text = path.read_bytes()[-16384:].decode("utf-8", errors="replace")
    except OSError:
        return f"; see {path}"
    text = "".join(c if c.isprintable() or c == "\n" else " " for c in text)
    this = text.rpartition("\n== ")[2].partition("\n")[2]  # this install's lines only
    tail = [ln.rstrip()[:300] for ln in this.splitlines() if ln.strip()][-lines:]
    while len(tail) > 1 and sum(len(ln) + 5 for ln in tail) > _TAIL_CHARS:
        tail.pop(0)
    body = "".join(f"\n  | {ln}" for ln in tail)
    return f"; last lines of the installer's output ({path}):{body}"
