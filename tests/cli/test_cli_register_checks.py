"""``register`` and ``update`` refuse application YAML that could never run, naming the field."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flame_agents import core
from flame_agents.testing import LocalRuntime

pytestmark = pytest.mark.e2e

Cli = Callable[..., Any]


def _error_line(result: Any) -> str:
    assert result.code == 1, result.out
    lines = [ln for ln in result.err.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, result.err
    return str(lines[0])


def test_register_refuses_a_document_without_command(
    runtime: LocalRuntime, cli: Cli, tmp_path: Path
) -> None:
    """A Host application with no spec.command fails naming file, document and field, and no
    document of the file is registered."""
    path = tmp_path / "apps.yaml"
    path.write_text(
        "metadata: {name: cli-has-cmd}\nspec: {command: python}\n---\n"
        "metadata: {name: cli-no-cmd}\nspec: {arguments: [echo_service.py]}\n"
    )
    line = _error_line(cli("register", "-f", str(path)))
    assert line.startswith(f"error: {path}, document 2: spec.command is required")
    assert core.get_application("cli-has-cmd") is None
    assert core.get_application("cli-no-cmd") is None


def test_update_refuses_a_document_without_command(
    runtime: LocalRuntime, cli: Cli, tmp_path: Path
) -> None:
    """update checks the command the same way and leaves the registered spec alone."""
    path = tmp_path / "upd.yaml"
    path.write_text("metadata: {name: cli-upd-cmd}\nspec: {command: python}\n")
    assert cli("register", "-f", str(path)).code == 0
    path.write_text("metadata: {name: cli-upd-cmd}\nspec: {description: no command}\n")
    line = _error_line(cli("update", "-a", str(path)))
    assert line.startswith(f"error: {path}, document 1: spec.command is required")
    app = core.get_application("cli-upd-cmd")
    assert app is not None and app.spec.command == "python"


def test_register_refuses_a_missing_working_directory(
    runtime: LocalRuntime, cli: Cli, tmp_path: Path
) -> None:
    """The guide's YAML with a working_directory that does not exist is refused at register:
    the error names the file, the document, the field and the path; nothing is created."""
    missing = tmp_path / "opt" / "examples" / "echo"
    path = tmp_path / "echo-app.yaml"
    path.write_text(
        "metadata:\n  name: cli-echo-missing\nspec:\n"
        f"  working_directory: {missing}\n"
        "  command: python\n  arguments:\n    - echo_service.py\n"
    )
    line = _error_line(cli("register", "-f", str(path)))
    assert line == (
        f"error: {path}, document 1: spec.working_directory '{missing}' does not exist on "
        "this machine; create it or fix the path"
    )
    assert core.get_application("cli-echo-missing") is None
    assert not (tmp_path / "opt").exists()
