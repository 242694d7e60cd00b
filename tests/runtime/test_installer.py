"""The package installer: an application whose spec names an ``installer`` and a ``url`` runs
from its package, fetched, unpacked and installed with its dependencies once per registration.

The unit tests call the installer in this process; the e2e tests register such applications on
a real runtime. Dependencies are local projects (``name @ file://...``), so nothing needs the
network.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight
import pytest

from flame_agents import core
from flame_agents.config import TOKEN_ENV
from flame_agents.errors import FlameAgentsError
from flame_agents.runtime.launch._installer import (
    Installed,
    InstallError,
    PackageRequest,
    install,
    release_key,
)
from flame_agents.runtime.launch._package_fetch import FetchError, fetch, is_own_cache
from flame_agents.testing import LocalRuntime

VERSION = "{}.{}".format(*sys.version_info[:2])

SERVICE = '''\
"""A service that reports where its modules come from."""
import json, os, sys
import helperdep
import cloudpickle
from flame_agents.service._instance_server import serve


class Where:
    def on_session_enter(self, session_id, application_name, common_data):
        pass

    def on_task_invoke(self, task_id, session_id, input):
        return json.dumps({
            "helperdep": helperdep.__file__,
            "value": helperdep.VALUE,
            "service": __file__,
            "cloudpickle": cloudpickle.__file__,
            "version": os.environ.get("FLAME_PYTHON_VERSION"),
        }).encode()

    def on_session_leave(self):
        pass


if __name__ == "__main__":
    serve(Where())
'''


def _dependency(folder: Path, name: str = "helperdep", *, setup_fails: str | None = None) -> str:
    """A local project ``name`` (one module, ``VALUE = 42``); its PEP 508 direct reference."""
    folder.mkdir(parents=True)
    (folder / f"{name}.py").write_text("VALUE = 42\n")
    (folder / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
        f'[project]\nname = "{name}"\nversion = "1.0"\n'
        f'[tool.setuptools]\npy-modules = ["{name}"]\n'
    )
    if setup_fails is not None:
        (folder / "setup.py").write_text(f"raise SystemExit({setup_fails!r})\n")
    return f"{name} @ {folder.as_uri()}"


def _project(folder: Path, dependency: str | None, *, files: dict[str, str] | None = None) -> Path:
    """A project folder as flamepy's Runner packages one: modules and a pyproject.toml."""
    folder.mkdir(parents=True)
    for name, text in (files or {"pkgsvc.py": SERVICE}).items():
        (folder / name).write_text(text)
    if dependency is not None:
        (folder / "pyproject.toml").write_text(
            '[build-system]\nrequires = ["setuptools>=61.0", "wheel"]\n'
            'build-backend = "setuptools.build_meta"\n'
            f'[project]\nname = "{folder.name}"\nversion = "0.1.0"\n'
            f"dependencies = [{json.dumps(dependency)}]\n"
            "[tool.setuptools]\npy-modules = []\n"
        )
    return folder


def _tarball(folder: Path, dest: Path, *, top: str | None = None) -> Path:
    with tarfile.open(dest, "w:gz") as tar:
        for item in sorted(folder.iterdir()):
            tar.add(item, arcname=f"{top}/{item.name}" if top else item.name)
    return dest


def _request(apps: Path, url: str | None, **extra: Any) -> PackageRequest:
    args: dict[str, Any] = {
        "app_name": "pkg-app",
        "installer": "python",
        "url": url,
        "app_env": {},
        "registered": 1,
        "apps_dir": apps,
        "own_cache": None,
    }
    args.update(extra)
    return PackageRequest(**args)


def _installs(apps: Path, app: str = "pkg-app") -> int:
    """How many installs the application's install.log records."""
    log = apps / app / "install.log"
    return log.read_text().count("\n== ") + log.read_text().startswith("== ") if log.exists() else 0


def _run_with(installed: Installed, code: str) -> dict[str, Any]:
    """Run ``code`` (printing JSON) in the runtime's interpreter with the package's environment."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    installed.apply(env)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


@pytest.fixture(scope="module")
def installed_project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A project with one declared dependency, installed once for the module's unit tests."""
    root = tmp_path_factory.mktemp("installer")
    dep = _dependency(root / "helperdep")
    package = _tarball(_project(root / "proj", dep), root / "proj.tar.gz")
    apps = root / "apps"
    req = _request(apps, package.as_uri())
    return {"apps": apps, "req": req, "package": package, "env": asyncio.run(install(req))}


def test_python_project_and_its_dependency_are_importable(
    installed_project: dict[str, Any],
) -> None:
    """The project's modules come from its unpacked source, its declared dependency from the
    application's venv, and the runtime's own packages (cloudpickle) stay importable."""
    apps: Path = installed_project["apps"]
    got = _run_with(
        installed_project["env"],
        "import json, os, helperdep, pkgsvc, cloudpickle; print(json.dumps({"
        "'dep': helperdep.__file__, 'svc': pkgsvc.__file__, 'cp': cloudpickle.__file__,"
        "'v': os.environ['FLAME_PYTHON_VERSION']}))",
    )
    release = apps / "pkg-app" / "releases" / release_key(installed_project["req"])
    assert got["dep"].startswith(str(release / "venv")), got
    assert got["svc"] == str(release / "src" / "pkgsvc.py")
    assert not got["cp"].startswith(str(apps))  # the runtime's, not installed again
    assert got["v"] == VERSION
    assert (release / "release.json").is_file()


def test_complete_release_is_reused_without_fetching(installed_project: dict[str, Any]) -> None:
    """A second install of the same registration fetches nothing (the package may be gone)
    and installs nothing: the complete release is used as is."""
    apps: Path = installed_project["apps"]
    package: Path = installed_project["package"]
    hidden = package.with_suffix(".hidden")
    package.rename(hidden)
    try:
        again = asyncio.run(install(installed_project["req"]))
    finally:
        hidden.rename(package)
    assert again == installed_project["env"]
    assert _installs(apps) == 1


def test_concurrent_launches_install_once(tmp_path: Path) -> None:
    """Two launches of one application at once: one install, and both get its environment."""
    package = _tarball(_project(tmp_path / "p", None), tmp_path / "p.tar.gz")
    req = _request(tmp_path / "apps", package.as_uri())

    async def both() -> list[Installed]:
        return list(await asyncio.gather(install(req), install(req)))

    first, second = asyncio.run(both())
    assert first == second
    assert _installs(tmp_path / "apps") == 1


def test_new_registration_installs_again_and_drops_the_old_release(tmp_path: Path) -> None:
    """Registering the application again (same url, new content) installs the new package and
    removes the previous registration's release."""
    src = _project(tmp_path / "p", None, files={"mod.py": "X = 1\n"})
    package = _tarball(src, tmp_path / "p.tar.gz")
    apps = tmp_path / "apps"
    old = _request(apps, package.as_uri(), registered=1)
    asyncio.run(install(old))
    (src / "mod.py").write_text("X = 2\n")
    _tarball(src, package)
    new = _request(apps, package.as_uri(), registered=2)
    env = asyncio.run(install(new))
    assert _run_with(env, "import json, mod; print(json.dumps({'x': mod.X}))") == {"x": 2}
    releases = sorted(p.name for p in (apps / "pkg-app" / "releases").iterdir())
    assert releases == [release_key(new)]


def test_project_without_metadata_goes_on_the_path(tmp_path: Path) -> None:
    """No pyproject.toml or setup.py: no venv and no pip, the source folder is on PYTHONPATH;
    an archive holding one top folder is entered."""
    src = _project(tmp_path / "p", None, files={"plain.py": "Y = 'plain'\n"})
    package = _tarball(src, tmp_path / "p.tar.gz", top="project-1.0")
    env = asyncio.run(install(_request(tmp_path / "apps", package.as_uri())))
    release = (
        tmp_path
        / "apps"
        / "pkg-app"
        / "releases"
        / release_key(_request(tmp_path / "apps", package.as_uri()))
    )
    assert dict(env.prepend)["PYTHONPATH"] == (str(release / "src" / "project-1.0"),)
    assert not (release / "venv").exists()
    assert _run_with(env, "import json, plain; print(json.dumps({'y': plain.Y}))") == {"y": "plain"}


def test_binary_installer_puts_the_package_on_path(tmp_path: Path) -> None:
    """installer binary: a zip's bin/ and root go on PATH (executable bits kept), libs/ on
    LD_LIBRARY_PATH, FLAME_APP_DIR names the folder; a single file becomes an executable."""
    archive = tmp_path / "tool.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("bin/hello")
        info.external_attr = 0o755 << 16
        zf.writestr(info, "#!/bin/sh\necho hello-from-zip\n")
        zf.writestr("libs/libx.so", "")
    env = asyncio.run(install(_request(tmp_path / "apps", archive.as_uri(), installer="binary")))
    shell = {"PATH": "/usr/bin:/bin"}
    env.apply(shell)
    root = Path(shell["FLAME_APP_DIR"])
    assert shell["PATH"] == f"{root / 'bin'}:{root}:/usr/bin:/bin"
    assert shell["LD_LIBRARY_PATH"] == str(root / "libs")
    out = subprocess.run(["hello"], env=shell, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "hello-from-zip"

    single = tmp_path / "solo.sh"
    single.write_text("#!/bin/sh\necho solo\n")
    env2 = asyncio.run(
        install(_request(tmp_path / "apps", single.as_uri(), installer="binary", app_name="solo"))
    )
    shell2 = {"PATH": "/usr/bin:/bin"}
    env2.apply(shell2)
    out = subprocess.run(["solo.sh"], env=shell2, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "solo"


def test_archive_member_outside_the_folder_is_refused(tmp_path: Path) -> None:
    """A tar member ``../escape`` fails the install naming it, and writes nothing outside."""
    bad = tmp_path / "bad.tar"
    with tarfile.open(bad, "w") as tar:
        data = b"x"
        member = tarfile.TarInfo("../escape")
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    apps = tmp_path / "apps"
    with pytest.raises(InstallError, match="escape") as info:
        asyncio.run(install(_request(apps, bad.as_uri())))
    assert "installing the package of application pkg-app" in str(info.value)
    assert not (apps / "pkg-app" / "releases" / "escape").exists()
    assert list((apps / "pkg-app" / "releases").iterdir()) == []


def test_failed_dependency_reports_the_installer_output(tmp_path: Path) -> None:
    """A dependency that cannot be built: the error quotes pip's output (the dependency's own
    message) and names the log; no release is left to be mistaken for a complete one."""
    dep = _dependency(tmp_path / "brokendep", "brokendep", setup_fails="brokendep: boom-42")
    package = _tarball(_project(tmp_path / "p", dep), tmp_path / "p.tar.gz")
    apps = tmp_path / "apps"
    with pytest.raises(InstallError) as info:
        asyncio.run(install(_request(apps, package.as_uri())))
    message = str(info.value)
    assert "pip install exited with code 1" in message
    assert "boom-42" in message
    assert f"last lines of the installer's output ({apps / 'pkg-app' / 'install.log'})" in message
    assert list((apps / "pkg-app" / "releases").iterdir()) == []


def test_python_version_must_be_the_runtime_s(tmp_path: Path) -> None:
    """FLAME_PYTHON_VERSION naming another Python fails clearly; the runtime's own passes."""
    req = _request(tmp_path / "apps", None, app_env={"FLAME_PYTHON_VERSION": "2.7"})
    with pytest.raises(
        InstallError, match=r"asks for Python 2\.7 .* run the runtime.s interpreter"
    ):
        asyncio.run(install(req))
    mine = {"FLAME_PYTHON_VERSION": VERSION}
    ok = asyncio.run(install(_request(tmp_path / "apps", None, app_env=mine)))
    assert dict(ok.defaults) == {"FLAME_PYTHON_VERSION": VERSION}


def test_bad_specs_fail_with_what_to_fix(tmp_path: Path) -> None:
    """An unknown installer, an unsupported scheme and a missing file each say what is wrong."""
    apps = tmp_path / "apps"
    with pytest.raises(InstallError, match="installers are python and binary"):
        asyncio.run(install(_request(apps, None, installer="conda")))
    with pytest.raises(InstallError, match="unsupported url scheme 'ftp'"):
        asyncio.run(install(_request(apps, "ftp://host/p.tar.gz")))
    with pytest.raises(InstallError, match="does not exist on this machine"):
        asyncio.run(install(_request(apps, (tmp_path / "none.tar.gz").as_uri())))


class _Cache(flight.FlightServerBase):  # type: ignore[misc]
    """A foreign Flight cache holding one package; it records the authorization headers."""

    def __init__(self, data: bytes) -> None:
        self.seen: list[str | None] = []
        super().__init__("grpc://127.0.0.1:0", middleware={"auth": _Recorder(self.seen)})
        self._data = data

    def do_get(self, context: Any, ticket: Any) -> Any:
        table = pa.table(
            {
                "version": pa.array([1], pa.uint64()),
                "kind": pa.array(["base"]),
                "data": pa.array([self._data], pa.binary()),
            }
        )
        return flight.RecordBatchStream(table)


class _Recorder(flight.ServerMiddlewareFactory):  # type: ignore[misc]
    def __init__(self, seen: list[str | None]) -> None:
        super().__init__()
        self._seen = seen

    def start_call(self, info: Any, headers: dict[str, list[str]]) -> None:
        values = headers.get("authorization") or [None]
        self._seen.append(values[0])


@pytest.fixture
def foreign_cache() -> Iterator[_Cache]:
    """A Flight server on loopback, stopped after the test."""
    server = _Cache(b"package-bytes")
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(timeout=10)


def test_cache_url_sends_the_token_only_to_the_runtime_s_cache(
    foreign_cache: _Cache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """grpc://host:port/<key> is read with ticket ``<key>:0``; the runtime's token goes with it
    only when host:port is the runtime's own cache."""
    monkeypatch.setenv(TOKEN_ENV, "s3cret")
    endpoint = f"grpc://127.0.0.1:{foreign_cache.port}"
    url = f"{endpoint}/app/pkg/app.tar.gz"
    got = fetch(url, tmp_path / "a", own_cache="grpc://127.0.0.1:1", timeout=30)
    assert got.name == "app.tar.gz" and got.read_bytes() == b"package-bytes"
    fetch(url, tmp_path / "b", own_cache=endpoint, timeout=30)
    assert foreign_cache.seen == [None, "Bearer s3cret"]
    assert is_own_cache(url, endpoint) and not is_own_cache(url, None)
    with pytest.raises(FetchError, match="names no object"):
        fetch(endpoint, tmp_path / "c", own_cache=None, timeout=30)


def test_package_url_naming_a_former_cache_endpoint_is_fetched_from_the_current_one(
    foreign_cache: _Cache, tmp_path: Path
) -> None:
    """A package registered before a restart on new ports names the cache's old address: the
    installer fetches it from the runtime's current cache (the url stays the release key)."""
    former = "grpc://127.0.0.1:1"  # nothing listens there any more
    current = f"grpc://127.0.0.1:{foreign_cache.port}"
    req = _request(
        tmp_path / "apps",
        f"{former}/pkg-app/pkg/tool",
        installer="binary",
        own_cache=current,
        former_caches=(former,),
    )
    installed = asyncio.run(install(req))
    assert len(foreign_cache.seen) == 1  # one fetch, from the current endpoint
    env: dict[str, str] = {"PATH": ""}
    installed.apply(env)
    tool = next(Path(p) / "tool" for p in env["PATH"].split(":") if (Path(p) / "tool").exists())
    assert tool.read_bytes() == b"package-bytes"


# -- a real runtime ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quick_pause() -> Iterator[LocalRuntime]:
    """A runtime that pauses a session after two failed starts (the client hears sooner)."""
    with LocalRuntime(extra_args=["--bind-retry-limit", "2"]) as rt:
        yield rt


def _where(app: str) -> dict[str, Any]:
    with core.create_session(app) as session:
        reply = session.invoke(b"where", timeout=120)
    assert reply is not None
    result: dict[str, Any] = json.loads(reply)
    return result


@pytest.mark.e2e
def test_flmrun_is_registered_at_start(quick_pause: LocalRuntime) -> None:
    """A fresh runtime lists flmrun: flamepy's runner service on the runtime's interpreter,
    with the python installer."""
    app = core.get_application("flmrun")
    assert app is not None
    assert app.spec.command == sys.executable
    assert list(app.spec.arguments) == ["-m", "flamepy.runner.runpy"]
    assert app.spec.installer == "python"
    assert not app.spec.working_directory


@pytest.mark.e2e
def test_instances_run_from_the_installed_package(
    quick_pause: LocalRuntime, tmp_path: Path
) -> None:
    """An app with installer python and a file:// package runs its module from the package and
    its dependency from the app's venv; a second session, and one after a restart, need
    neither the package nor a new install."""
    dep = _dependency(tmp_path / "helperdep")
    package = _tarball(_project(tmp_path / "proj", dep), tmp_path / "proj.tar.gz")
    core.register_application(
        "pkg-e2e",
        {
            "command": sys.executable,
            "arguments": ["-m", "pkgsvc"],
            "installer": "python",
            "url": package.as_uri(),
        },
    )
    apps = quick_pause.home / "apps" if quick_pause.home else Path("/nonexistent")
    first = _where("pkg-e2e")
    assert first["value"] == 42 and first["version"] == VERSION
    assert first["helperdep"].startswith(str(apps / "pkg-e2e" / "releases"))
    assert "/venv/" in first["helperdep"] and first["service"].endswith("/src/pkgsvc.py")
    assert not first["cloudpickle"].startswith(str(apps))
    package.unlink()  # nothing is fetched again
    assert _where("pkg-e2e") == first
    quick_pause.restart()
    assert _where("pkg-e2e") == first
    assert _installs(apps, "pkg-e2e") == 1


@pytest.mark.e2e
def test_install_failure_reaches_the_client(quick_pause: LocalRuntime, tmp_path: Path) -> None:
    """A package whose dependency cannot be built: invoke fails with bind code 10 and the
    installer's output (the dependency's own message)."""
    dep = _dependency(tmp_path / "brokendep", "brokendep", setup_fails="brokendep: boom-43")
    package = _tarball(_project(tmp_path / "proj", dep), tmp_path / "proj.tar.gz")
    core.register_application(
        "pkg-broken",
        {
            "command": sys.executable,
            "arguments": ["-m", "pkgsvc"],
            "installer": "python",
            "url": package.as_uri(),
        },
    )
    with core.create_session("pkg-broken") as session:
        with pytest.raises(FlameAgentsError) as info:
            session.invoke(b"where", timeout=120)
        events = core.get_session(session.id).events
    bind = [e.message for e in events if e.code == 1001]
    assert bind and all("failed to bind session with return_code 10" in m for m in bind)
    message = info.value.message
    assert "installing the package of application pkg-broken" in message
    assert "boom-43" in message
