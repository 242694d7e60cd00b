"""A service exception reaches the client with its class and the innermost remote frames
(real runtime, a real FlameInstance service process)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import pytest

from flame_agents import core
from flame_agents.errors import TaskFailedError
from flame_agents.service import Session
from flame_agents.testing import LocalRuntime
from flame_agents.types import TaskState

pytestmark = pytest.mark.e2e

SERVICE = Path(__file__).resolve().parent / "services" / "nested_failure.py"
APP = "nested-failure"


@pytest.fixture(scope="module")
def app(runtime: LocalRuntime) -> Iterator[str]:
    """The nested-failure service, registered once for the module."""
    core.register_application(APP, {"command": sys.executable, "arguments": [str(SERVICE)]})
    yield APP


def test_service_exception_names_class_text_and_remote_frames(app: str) -> None:
    """A ValueError raised in a nested function gives TaskFailedError naming ValueError, its
    text and the function, in the message and as remote_type/remote_traceback fields."""
    with Session(app) as session:
        with pytest.raises(TaskFailedError) as info:
            session.invoke({"op": "parse", "text": "bad input"})
        assert session.invoke({"op": "ok"}) == "fine"  # the session keeps serving
    err = info.value
    assert err.message.startswith("ValueError: bad input\n")
    assert err.remote_type == "ValueError"
    frames = err.remote_traceback or ""
    assert "in parse_record" in frames and "raise ValueError(text)" in frames
    assert "in load" in frames and str(SERVICE) in frames
    assert frames.count('  File "') <= 5
    assert frames in err.message


def test_failure_text_on_the_wire_is_readable_without_our_client(app: str) -> None:
    """The failed task's event (what flamepy shows) is plain text with the class first and the
    frames after it."""
    with core.create_session(app) as session:
        task = session.create_task(cloudpickle.dumps({"op": "parse", "text": "bad input"}))
        done = list(session.watch_task(task.id, timeout=60))[-1]
        assert done.state == TaskState.FAILED
        text = session.get_task(task.id).error_message() or ""
    first, _, rest = text.partition("\n")
    assert first == "ValueError: bad input"
    assert "Remote traceback (most recent call last" in rest and "in parse_record" in rest
