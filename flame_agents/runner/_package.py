"""Pack a project folder into the ``.tar.gz`` a runner uploads for its instances.

The archive holds the folder's files under their relative paths, minus the excluded ones
(virtual environments, caches, VCS folders, compiled files: :data:`DEFAULT_EXCLUDES`). A project
with no packaging metadata (``pyproject.toml``, ``setup.py``, ``setup.cfg``) gets a generated
``pyproject.toml`` declaring the runner's ``dependencies``, because Flame's ``python`` installer
installs the unpacked folder as a Python project (``pip install .``).
"""

from __future__ import annotations

import fnmatch
import io
import json
import os
import re
import tarfile
from collections.abc import Sequence
from pathlib import Path

from flame_agents._logging import get_logger
from flame_agents.errors import InvalidArgumentError

__all__ = ["DEFAULT_EXCLUDES", "build_package", "check_dependencies", "generated_pyproject"]

DEFAULT_EXCLUDES: tuple[str, ...] = (
    ".venv",
    "venv",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".mypy_cache",
    "*.egg-info",
    ".git",
    ".hg",
    ".tox",
    ".nox",
    "node_modules",
    "*.pyc",
    "*.pyo",
    ".DS_Store",
)
"""Names (or glob patterns) never packed, at any depth; a top-level ``dist`` is skipped too."""

_METADATA = ("pyproject.toml", "setup.py", "setup.cfg")
_log = get_logger(__name__)


def check_dependencies(dependencies: Sequence[str] | None) -> tuple[str, ...]:
    """The requirement strings as a tuple; InvalidArgumentError for anything else."""
    if dependencies is None:
        return ()
    if isinstance(dependencies, str) or not isinstance(dependencies, Sequence):
        raise InvalidArgumentError(
            f"dependencies must be a list of requirement strings like ['numpy', 'pandas>=2'], "
            f"got {dependencies!r}"
        )
    for dep in dependencies:
        if not isinstance(dep, str) or not dep.strip() or "\n" in dep:
            raise InvalidArgumentError(
                f"dependencies: {dep!r} is not a requirement string like 'pandas>=2'",
                dependency=dep,
            )
    return tuple(dep.strip() for dep in dependencies)


def _project_name(name: str) -> str:
    # A Python project name is letters and digits joined by '-', '_' or '.'.
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-") or "runner-app"


def generated_pyproject(project: Path, name: str, dependencies: Sequence[str]) -> str | None:
    """The ``pyproject.toml`` to add to the package, or None when the project has metadata.

    A project with its own metadata declares its dependencies there: passing ``dependencies``
    as well raises InvalidArgumentError rather than ignoring one of the two.
    """
    present = [m for m in _METADATA if (project / m).is_file()]
    if present:
        if dependencies:
            raise InvalidArgumentError(
                f"the project {str(project)!r} has its own {present[0]}: declare the "
                "dependencies there instead of passing dependencies=",
                project=str(project),
            )
        return None
    # json.dumps writes a valid TOML basic string for any requirement text.
    deps = "".join(f"    {json.dumps(dep)},\n" for dep in sorted(dependencies))
    return (
        "[build-system]\n"
        'requires = ["setuptools>=61.0"]\n'
        'build-backend = "setuptools.build_meta"\n'
        "\n"
        "[project]\n"
        f"name = {json.dumps(_project_name(name))}\n"
        'version = "0.1.0"\n'
        'requires-python = ">=3.9"\n'
        f"dependencies = [\n{deps}]\n"
        "\n"
        "[tool.setuptools]\n"
        "py-modules = []\n"
    )


def _excluded(rel: str, patterns: Sequence[str]) -> bool:
    base = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(base, p) or fnmatch.fnmatch(rel, p) for p in patterns)


def build_package(
    project: Path, *, name: str, dependencies: Sequence[str], excludes: Sequence[str] = ()
) -> bytes:
    """The gzipped tar of ``project`` (see the module docstring)."""
    root = project.resolve()
    if not root.is_dir():
        raise InvalidArgumentError(
            f"project {str(project)!r} is not a folder: pass the folder to package "
            "(default: the current working directory)",
            project=str(project),
        )
    patterns = (*DEFAULT_EXCLUDES, *excludes)
    pyproject = generated_pyproject(root, name, dependencies)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for folder, dirs, files in os.walk(root):
            here = Path(folder)
            rel_dir = here.relative_to(root).as_posix()
            prefix = "" if rel_dir == "." else rel_dir + "/"
            kept = []
            for d in sorted(dirs):
                rel = prefix + d
                if _excluded(rel, patterns) or rel == "dist":
                    continue
                if (here / d).is_symlink():
                    _add_link(tar, root, here / d, rel)  # os.walk does not enter links
                    continue
                tar.add(here / d, arcname=rel, recursive=False)
                kept.append(d)
            dirs[:] = kept
            for f in sorted(files):
                rel = prefix + f
                if not _excluded(rel, patterns):
                    _add_file(tar, root, here / f, rel)
        if pyproject is not None:
            data = pyproject.encode()
            info = tarfile.TarInfo("pyproject.toml")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _add_file(tar: tarfile.TarFile, root: Path, path: Path, rel: str) -> None:
    if path.is_symlink():
        _add_link(tar, root, path, rel)
    elif path.is_file():
        tar.add(path, arcname=rel, recursive=False)
    # Sockets, fifos and devices are not part of a project.


def _add_link(tar: tarfile.TarFile, root: Path, path: Path, rel: str) -> None:
    # An installer refuses links that leave the package folder, so such a link is packed as
    # the file it points to; a link to a folder outside the project is left out.
    target = path.resolve()
    if target == root or root in target.parents:
        info = tar.gettarinfo(str(path), arcname=rel)
        info.linkname = os.path.relpath(target, path.parent)  # absolute links are refused too
        tar.addfile(info)
    elif target.is_file():
        info = tar.gettarinfo(str(target), arcname=rel)
        with open(target, "rb") as handle:
            tar.addfile(info, handle)
    else:
        _log.warning("not packed: a link to a folder outside the project", path=rel)
