"""flamepy 0.6.0's ``flamepy.runner.Runner`` on a freshly started runtime, with no registration.

Runner packages the current folder, uploads it to the object cache as ``<app>/pkg/<file>``,
clones the built-in ``flmrun`` template with that ``grpc://`` url, and runs each call through
``flamepy.runner.runpy`` in instances whose package the python installer fetched from the cache
and installed (with the runner's declared dependency). One driver process (one Runner, then one
whose dependency cannot be built) serves the whole module; each test checks one part of it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conformance_support import HERE, SCRUBBED_ENV
from scenario_json import REPLY_MARKER

from flame_agents.testing import LocalRuntime

pytestmark = [pytest.mark.conformance]

APP = "conf-runner"
DRIVER = HERE / "flamepy_runner_driver.py"

CALC = '''\
"""Functions and a class the driver runs remotely (pickled by reference: the instances import
this module from the installed package)."""


def add(a, b):
    return a + b


def module_file():
    return __file__


def dependency_value():
    import helperdep  # installed for the instances only

    return helperdep.VALUE


class Counter:
    def __init__(self, start=0):
        self.count = start

    def increment(self, by=1):
        self.count += by
        return self.count
'''


def _dependency(folder: Path, name: str, body: str, *, setup: str | None = None) -> str:
    """A local project with one module; its PEP 508 direct reference."""
    folder.mkdir(parents=True)
    (folder / f"{name}.py").write_text(body)
    (folder / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
        f'[project]\nname = "{name}"\nversion = "1.0"\n'
        f'[tool.setuptools]\npy-modules = ["{name}"]\n'
    )
    if setup is not None:
        (folder / "setup.py").write_text(setup)
    return f"{name} @ {folder.as_uri()}"


@pytest.fixture(scope="module")
def runtime() -> Iterator[LocalRuntime]:
    """A fresh runtime (the built-ins only) that pauses a session after two failed starts."""
    with LocalRuntime(extra_args=["--bind-retry-limit", "2"]) as rt:
        yield rt


@pytest.fixture(scope="module")
def driven(runtime: LocalRuntime, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the driver once in a small project folder; its results by case."""
    root = tmp_path_factory.mktemp("runner")
    project = root / "project"
    project.mkdir()
    (project / "calc.py").write_text(CALC)
    args = {
        "app": APP,
        "dependency": _dependency(root / "helperdep", "helperdep", "VALUE = 42\n"),
        "broken_dependency": _dependency(
            root / "brokendep", "brokendep", "", setup="raise SystemExit('brokendep: boom-44')\n"
        ),
    }
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    env.update(runtime.env())
    env["HOME"] = str(root)  # no ~/.flame/flame.yaml: flamepy reads the environment only
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])])
    try:
        proc = subprocess.run(
            [sys.executable, str(DRIVER), json.dumps(args)],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=110,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the runner driver hung:\n{exc.stderr}")
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(REPLY_MARKER):
            result: dict[str, Any] = json.loads(line[len(REPLY_MARKER) :])
            result["apps"] = str(runtime.home / "apps") if runtime.home else ""
            return result
    pytest.fail(f"the runner driver exited {proc.returncode}:\n{proc.stderr[-6000:]}")


def test_function_runs_remotely(driven: dict[str, Any]) -> None:
    """A function exposed by Runner.service answers through ObjectFuture.get()."""
    assert driven["function"] == 5
    assert driven["gathered"] == [0, 2, 4, 6]


def test_object_future_arguments_are_resolved(driven: dict[str, Any]) -> None:
    """ObjectFutures passed positionally or by keyword, and a Runner.put_object ref, arrive as
    their values."""
    assert driven["future_argument"] == 13
    assert driven["future_keyword"] == 6
    assert driven["ref_argument"] == 101


def test_class_and_instance_services(driven: dict[str, Any]) -> None:
    """A class is instantiated by the service; an object instance keeps its state between
    calls (runpy stores it in the session's context)."""
    assert driven["class"] == 5
    assert driven["instance"] == [11, 13]


def test_code_and_dependency_come_from_the_installed_package(driven: dict[str, Any]) -> None:
    """The instances import the runner's module from the package the installer unpacked under
    the runtime home, and its declared dependency from the application's venv."""
    assert driven["module_file"].startswith(os.path.join(driven["apps"], APP, "releases"))
    assert driven["module_file"].endswith("/src/calc.py")
    assert driven["dependency"] == 42


def test_install_failure_is_a_session_event(driven: dict[str, Any]) -> None:
    """A runner whose dependency cannot be built: each start fails with bind code 10 and the
    installer's output in a 1001 session event, then 1002 pauses the session (its task stays
    Pending, as on Flame)."""
    broken = driven["broken"]
    codes = [e["code"] for e in broken["events"]]
    assert codes == [1001, 1001, 1002], broken
    assert broken["done"] is False
    for event in broken["events"][:2]:
        assert "failed to bind session with return_code 10" in event["message"]
        assert "installing the package of application conf-runner-broken" in event["message"]
        assert "boom-44" in event["message"]
