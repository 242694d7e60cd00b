"""The package a runner uploads: which files it holds, and the pyproject.toml it may add."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from flame_agents.errors import InvalidArgumentError
from flame_agents.runner._package import build_package, check_dependencies


def _members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name: m for m in tar.getmembers()}


def _pyproject(data: bytes) -> dict[str, object]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        handle = tar.extractfile("pyproject.toml")
        assert handle is not None
        # tomllib is in the standard library from Python 3.11 on; the package supports 3.10.
        tomllib = pytest.importorskip("tomllib")
        parsed: dict[str, object] = tomllib.loads(handle.read().decode())
        return parsed


def test_package_leaves_out_environments_caches_and_vcs(tmp_path: Path) -> None:
    """Sources are packed; .venv, __pycache__, .git, *.pyc, a top-level dist and the caller's
    excludes are not."""
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_text("")
    (tmp_path / "app" / "__pycache__").mkdir()
    (tmp_path / "app" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"")
    (tmp_path / "app" / "old.pyc").write_bytes(b"")
    (tmp_path / "main.py").write_text("print('hi')\n")
    for folder in (".venv/lib", ".git/objects", "dist", "data/big"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "f").write_text("x")
    names = set(_members(build_package(tmp_path, name="job", dependencies=(), excludes=["big"])))
    assert names == {"app", "app/__init__.py", "main.py", "data", "pyproject.toml"}


def test_generated_pyproject_declares_the_dependencies(tmp_path: Path) -> None:
    """A project without metadata gets a pyproject.toml naming the dependencies."""
    (tmp_path / "job.py").write_text("")
    data = build_package(
        tmp_path,
        name="my.job_1",
        dependencies=("numpy", 'pandas>=2; python_version>"3"'),
        excludes=(),
    )
    project = _pyproject(data)["project"]
    assert isinstance(project, dict)
    assert project["name"] == "my-job-1"
    assert project["dependencies"] == ["numpy", 'pandas>=2; python_version>"3"']


def test_own_metadata_is_kept_and_dependencies_then_refused(tmp_path: Path) -> None:
    """A project's own pyproject.toml is shipped as is; dependencies= beside it is an error."""
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "mine"\nversion = "1"\n')
    data = build_package(tmp_path, name="job", dependencies=(), excludes=())
    assert _pyproject(data)["project"] == {"name": "mine", "version": "1"}
    with pytest.raises(InvalidArgumentError, match="declare the dependencies there"):
        build_package(tmp_path, name="job", dependencies=("numpy",), excludes=())


def test_links_stay_inside_the_package(tmp_path: Path) -> None:
    """A link inside the project is packed as a relative link; a link to a file outside it is
    packed as that file's content, so the installer never meets a link leaving the package."""
    project, outside = tmp_path / "p", tmp_path / "outside.txt"
    project.mkdir()
    outside.write_text("outside")
    (project / "real.txt").write_text("real")
    os.symlink(project / "real.txt", project / "inner")
    os.symlink(outside, project / "outer")
    members = _members(build_package(project, name="job", dependencies=(), excludes=()))
    assert members["inner"].issym() and members["inner"].linkname == "real.txt"
    assert members["outer"].isfile() and members["outer"].size == len("outside")


def test_bad_dependencies_and_project_are_refused(tmp_path: Path) -> None:
    """A string instead of a list, an empty requirement or a missing folder is an error."""
    with pytest.raises(InvalidArgumentError, match="list of requirement strings"):
        check_dependencies("numpy")
    with pytest.raises(InvalidArgumentError, match="not a requirement string"):
        check_dependencies(["numpy", ""])
    with pytest.raises(InvalidArgumentError, match="is not a folder"):
        build_package(tmp_path / "missing", name="job", dependencies=(), excludes=())
