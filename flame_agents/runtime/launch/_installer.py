"""The package installer: prepare an instance's environment from its application's package.

An application whose spec names an ``installer`` (Flame's ``python`` or ``binary``) and a
``url`` gets its package fetched and unpacked (:mod:`._package_fetch`) and installed before its
instance starts, as Flame's executor manager does; the instance then finds it through its
environment. Layout under the runtime home::

    apps/<app>/install.log                 every install's output, the latest last
    apps/<app>/releases/<sha256>/src/      the unpacked package
    apps/<app>/releases/<sha256>/venv/     python installer: the application's environment
    apps/<app>/releases/<sha256>/release.json   written last: the release is complete

A complete release is used as is, without fetching anything again (offline, and after a
restart). Its key hashes Flame's cache key -- application, installer, url, Python version --
plus the application's registration time: registering the application again (flamepy's Runner
does, reusing the same url for new code) installs the package again. Installing a new release
removes the application's older ones.

**python**: a project with metadata (``pyproject.toml``, ``setup.py`` or ``setup.cfg``) is
installed with its declared dependencies by pip into ``venv/``, a virtual environment of the
runtime's interpreter that also sees every package the runtime's own interpreter sees
(:mod:`._pip_install`). So a dependency the runtime already has (cloudpickle, flamepy,
numpy...) is not installed again, and installing needs no network when nothing is missing. The
instance gets ``PYTHONPATH=<venv site-packages>:<src>:...``, ``PATH=<venv>/bin:...`` and
``FLAME_PYTHON_VERSION``; a project without metadata just goes on ``PYTHONPATH``. Instances run
the runtime's interpreter, so ``FLAME_PYTHON_VERSION`` in the spec must name its version.

**binary**: ``FLAME_APP_DIR=<src>``, ``PATH=<src>/bin:<src>:...`` and ``LD_LIBRARY_PATH`` with
``<src>/libs`` and ``<src>/lib`` where they exist.

Installing runs off the event loop (a thread to fetch and unpack, child processes for venv and
pip, killed if the launch is cancelled) and one install at a time per application: a second
launch waits for the first and then uses its release.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import sys
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from flame_agents._logging import get_logger
from flame_agents._wire.cache.aliases import retarget_url
from flame_agents.runtime.launch._package_fetch import FetchError, fetch, unpack
from flame_agents.runtime.launch._pip_install import (
    PROJECT_METADATA,
    StepError,
    pip_install,
    site_dirs,
)

__all__ = [
    "BIND_INSTALL_FAILED",
    "INSTALLERS",
    "InstallError",
    "Installed",
    "PackageRequest",
    "install",
    "release_key",
]

BIND_INSTALL_FAILED = 10
"""Flame's bind return code for 'application install failed'."""

INSTALLERS = ("python", "binary")

FETCH_TIMEOUT = 300.0
"""Seconds one network read of a package may stall (flamepy uploads with the same bound)."""

MARKER = "release.json"

_T = TypeVar("_T")
_log = get_logger(__name__)
_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()


class InstallError(Exception):
    """Installing an application's package failed; the message says why, with the installer's
    last lines of output."""


@dataclass(frozen=True)
class PackageRequest:
    """What to install for one launch."""

    app_name: str
    installer: str
    url: str | None
    app_env: Mapping[str, str]
    """The application's environments, expanded (``FLAME_PYTHON_VERSION`` is read from it)."""
    registered: int
    """The application's registration time (ms): part of the release key."""
    apps_dir: Path
    """``<home>/apps``."""
    own_cache: str | None
    """The runtime's cache endpoint: the only one its token is sent to."""
    former_caches: tuple[str, ...] = ()
    """Endpoints the runtime's cache had in earlier runs: a url naming one is fetched from
    ``own_cache`` (the release key keeps the url as registered, so a complete install is reused)."""
    credentials: Mapping[str, str] = field(default_factory=dict)
    """The token and CA variables the runtime gives its instances (see ``_package_fetch``)."""


@dataclass(frozen=True)
class Installed:
    """What an installed package adds to its instances' environment."""

    prepend: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """Path-list variables whose entries go before the instance's own value."""
    defaults: tuple[tuple[str, str], ...] = ()
    """Variables set only when the instance's environment lacks them."""

    def apply(self, env: dict[str, str]) -> None:
        """Add the package to ``env`` (Flame's rule: paths prepended, the rest if absent)."""
        for name, entries in self.prepend:
            if entries:
                env[name] = os.pathsep.join([*entries, *filter(None, [env.get(name)])])
        for name, value in self.defaults:
            env.setdefault(name, value)


def release_key(req: PackageRequest) -> str:
    """The release folder's name: sha256 of what makes an install reusable."""
    ident = {
        "app": req.app_name,
        "installer": req.installer,
        "url": req.url,
        "python": sys.version,
        "interpreter": sys.executable,
        "registered": req.registered,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


async def install(req: PackageRequest) -> Installed:
    """Make the package of ``req`` ready (installing it unless a complete release exists) and
    say what it adds to the environment; raises InstallError."""
    if req.installer not in INSTALLERS:
        raise InstallError(
            f"application {req.app_name} names installer {req.installer!r}; the installers "
            f"are {' and '.join(INSTALLERS)}"
        )
    if req.installer == "python":
        _check_python_version(req)
    if not req.url:
        return _environment(req.installer, None, None, venv=False)
    app_dir = req.apps_dir / req.app_name
    release = app_dir / "releases" / release_key(req)
    lock = _locks.get(str(app_dir))
    if lock is None:
        lock = _locks[str(app_dir)] = asyncio.Lock()
    async with lock:
        if (done := _complete(release)) is not None:
            root, venv = done
            return _environment(req.installer, release, root, venv=venv)
        started = time.monotonic()
        log_path = app_dir / "install.log"
        try:
            root, venv = await _install(req, release, log_path)
        except BaseException:
            await _off_loop(shutil.rmtree, release, True)
            raise
        _log.info(
            "package installed",
            app=req.app_name,
            url=req.url,
            installer=req.installer,
            seconds=round(time.monotonic() - started, 3),
        )
        return _environment(req.installer, release, root, venv=venv)


async def _install(req: PackageRequest, release: Path, log_path: Path) -> tuple[Path, bool]:
    assert req.url is not None
    url = req.url

    def unpacked() -> Path:
        shutil.rmtree(release, ignore_errors=True)  # what a crash or cancelled install left
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a") as log:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"== {stamp} installing {url} into {release}\n")
        try:
            source = url
            if req.own_cache:
                source = retarget_url(url, req.former_caches, req.own_cache)
            got = fetch(
                source,
                release / "package",
                own_cache=req.own_cache,
                timeout=FETCH_TIMEOUT,
                credentials=req.credentials,
            )
            src = release / "src"
            unpack(got, src)
        except FetchError as exc:
            raise InstallError(f"{_failed(req)}: {exc}") from exc
        shutil.rmtree(release / "package", ignore_errors=True)
        return _project_root(src)

    root = await _off_loop(unpacked)
    venv = False
    if req.installer == "python" and any((root / name).is_file() for name in PROJECT_METADATA):
        try:
            await pip_install(root, release / "venv", log_path)
        except StepError as exc:
            raise InstallError(f"{_failed(req)}: {exc}") from exc
        venv = True

    def finish() -> None:
        record = {"url": url, "root": str(root.relative_to(release)), "venv": venv}
        tmp = release / f"{MARKER}.tmp"
        tmp.write_text(json.dumps(record))
        os.replace(tmp, release / MARKER)
        for other in release.parent.iterdir():  # older registrations of the application
            if other != release:
                shutil.rmtree(other, ignore_errors=True)

    await _off_loop(finish)
    return root, venv


def _complete(release: Path) -> tuple[Path, bool] | None:
    """The project root and whether it has a venv, if ``release`` is a complete release."""
    try:
        done = json.loads((release / MARKER).read_text())
        root = release / str(done["root"])
        venv = bool(done["venv"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # none yet, or left half-written: install again
    return (root, venv) if root.is_dir() else None


def _project_root(src: Path) -> Path:
    """``src``, or its only entry when that is a folder (an archive of one top folder)."""
    entries = list(src.iterdir())
    if (
        len(entries) == 1
        and entries[0].is_dir()
        and not entries[0].is_symlink()
        and not any((src / name).exists() for name in PROJECT_METADATA)
    ):
        return entries[0]
    return src


def _failed(req: PackageRequest) -> str:
    return f"installing the package of application {req.app_name} ({req.url}) failed"


def _check_python_version(req: PackageRequest) -> None:
    wanted = req.app_env.get("FLAME_PYTHON_VERSION", "").strip()
    if not wanted:
        return
    ours = [str(p) for p in sys.version_info[:3]]
    parts = wanted.removeprefix("python").split(".")
    if parts != ours[: len(parts)]:
        raise InstallError(
            f"application {req.app_name} asks for Python {wanted} (FLAME_PYTHON_VERSION) but "
            f"its instances run the runtime's interpreter, Python {'.'.join(ours)} "
            f"({sys.executable}): register it without a python version (flamepy's "
            f"Runner(python_version=None)), or run the runtime with Python {wanted}"
        )


def _environment(
    installer: str, release: Path | None, root: Path | None, *, venv: bool
) -> Installed:
    if installer == "binary":
        if root is None:
            return Installed()
        libs = tuple(str(root / d) for d in ("libs", "lib") if (root / d).is_dir())
        return Installed(
            prepend=(("PATH", (str(root / "bin"), str(root))), ("LD_LIBRARY_PATH", libs)),
            defaults=(("FLAME_APP_DIR", str(root)),),
        )
    version = (("FLAME_PYTHON_VERSION", "{}.{}".format(*sys.version_info[:2])),)
    if release is None or root is None:
        return Installed(defaults=version)
    env_dir = release / "venv"
    sites = tuple(site_dirs(env_dir)) if venv else ()
    return Installed(
        prepend=(
            ("PYTHONPATH", (*sites, str(root))),
            ("PATH", (str(env_dir / "bin"),) if venv else ()),
        ),
        defaults=version,
    )


async def _off_loop(fn: Callable[..., _T], *args: object) -> _T:
    """Run blocking ``fn`` in a thread; if cancelled meanwhile, wait for it before raising (the
    application's lock must not be released while the thread still writes its files)."""
    future = asyncio.get_running_loop().run_in_executor(None, fn, *args)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await future
        raise
