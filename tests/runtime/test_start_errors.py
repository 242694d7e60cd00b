"""A service that fails to start: the error the client gets quotes the last lines of its stderr
(the exception it raised at import, the launcher's ``cannot execute``), not only the log's path."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from flame_agents import core
from flame_agents.errors import FlameAgentsError
from flame_agents.runtime._launch import stderr_tail_text
from flame_agents.testing import LocalRuntime

TYPE_ERROR = "TypeError: entrypoint echo() takes 1 positional argument but 2 were given"


@pytest.fixture(scope="module")
def quick_pause() -> Iterator[LocalRuntime]:
    """A runtime that pauses a session after two failed starts (the client hears sooner)."""
    with LocalRuntime(extra_args=["--bind-retry-limit", "2"]) as rt:
        yield rt


def _start_error(app: str) -> str:
    """The error text invoke() raises on a new session of ``app``."""
    with core.create_session(app) as session, pytest.raises(FlameAgentsError) as info:
        session.invoke(b"x", timeout=60)
    return info.value.message


@pytest.mark.e2e
def test_exception_at_import_reaches_the_client(quick_pause: LocalRuntime, tmp_path: Path) -> None:
    """A service script raising TypeError at import: invoke's error has the TypeError line and
    the traceback's last lines (no frames of the prestarted interpreter)."""
    script = tmp_path / "bad_service.py"
    script.write_text(
        "import sys\n"
        "print('starting', flush=True)\n"
        'raise TypeError("entrypoint echo() takes 1 positional argument but 2 were given")\n'
    )
    core.register_application(
        "start-typeerror", {"command": sys.executable, "arguments": [str(script)]}
    )
    message = _start_error("start-typeerror")
    assert "exited before binding its socket (exit code 1)" in message
    assert TYPE_ERROR in message
    assert f'File "{script}", line 3, in <module>' in message
    assert "_spare.py" not in message


@pytest.mark.e2e
def test_missing_command_says_it_cannot_be_executed(quick_pause: LocalRuntime) -> None:
    """A command that does not exist: the error says it cannot be executed, and why."""
    core.register_application("start-nocmd", {"command": "/nonexistent/bin/python3"})
    message = _start_error("start-nocmd")
    assert "cannot execute '/nonexistent/bin/python3'" in message
    assert "No such file or directory" in message


def test_tail_keeps_the_last_ten_lines(tmp_path: Path) -> None:
    """Only the last 10 non-blank lines are quoted, each prefixed, with the log's path."""
    log = tmp_path / "x.err"
    log.write_text("".join(f"line {i}\n\n" for i in range(30)))
    text = stderr_tail_text(log)
    assert text.startswith(f"; last lines of its stderr ({log}):\n  | line 20\n")
    assert text.endswith("  | line 29")
    assert text.count("\n  | ") == 10


def test_tail_is_bounded_and_printable(tmp_path: Path) -> None:
    """Long lines are cut, colour codes and control characters dropped, the total bounded."""
    log = tmp_path / "x.err"
    log.write_bytes(b"\x1b[31mred\x1b[0m \x07bell\n" + (b"y" * 5000 + b"\n") * 10)
    text = stderr_tail_text(log)
    assert "\x1b" not in text and "\x07" not in text
    assert all(len(line) <= 310 for line in text.splitlines())
    assert len(text) < 2600
    short = tmp_path / "short.err"
    short.write_bytes(b"\x1b[31mred\x1b[0m \x07bell\n")
    assert stderr_tail_text(short).endswith("  | red  bell")


def test_tail_of_an_empty_or_missing_log_names_it(tmp_path: Path) -> None:
    """An empty log says so; an unreadable one is named for the user to look at."""
    empty = tmp_path / "empty.err"
    empty.write_bytes(b"")
    assert stderr_tail_text(empty) == f"; its stderr ({empty}) is empty"
    assert stderr_tail_text(tmp_path / "none.err") == f"; see {tmp_path / 'none.err'}"
