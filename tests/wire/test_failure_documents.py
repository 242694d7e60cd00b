"""Agent failures cross the wire as a structured document: the class and fields an instance set
reach the client's error, and the text people read stays as it was."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from flame_agents._wire.failures import format_failure, parse_failure
from flame_agents._wire.limits import reply_too_large
from flame_agents.agent import Agent, ContextModel
from flame_agents.agent._envelope import encode_request, error_from_message
from flame_agents.core._tasks import failure_error
from flame_agents.errors import (
    FlameAgentsError,
    InvalidArgumentError,
    LimitExceededError,
    TaskFailedError,
)
from flame_agents.testing.agents import AgentHarness
from flame_agents.types import Event, Task, TaskState


class Tally(ContextModel):
    count: int = 0


class Add(BaseModel):
    n: int


class Total(BaseModel):
    count: int


class TallyAgent(Agent[Tally]):
    """Adds ``n``; refuses more than 3 with a LimitExceededError that names the limit."""

    def handle(self, req: Add, ctx: Tally) -> Total:
        if req.n > 3:
            raise LimitExceededError(f"{req.n} is over the limit", limit=3, asked=req.n)
        ctx.count += req.n
        return Total(count=ctx.count)


def _over_the_wire(exc: TaskFailedError) -> FlameAgentsError:
    """What the client raises for ``exc`` raised in an instance: the instance server's failure
    text, the failed task's event, the core client's error, then AgentSession's rebuild."""
    message = format_failure(exc)
    task = Task("7", "s-1", TaskState.FAILED, events=(Event(int(TaskState.FAILED), message),))
    error = failure_error(task)
    if isinstance(error, TaskFailedError):
        return error_from_message(error.message, **error.fields)
    return error


def _failed_invoke(harness: AgentHarness[Tally], key: str, req: BaseModel) -> TaskFailedError:
    with pytest.raises(TaskFailedError) as info:
        harness.handler.on_task_invoke(
            "7", harness.session_id, encode_request(key, req.model_dump())
        )
    return info.value


def test_agent_layer_error_arrives_with_its_class_and_fields() -> None:
    """A key reused for another request is refused by the agent layer; the client gets
    InvalidArgumentError with the key and state fields the instance set, and its own."""
    with AgentHarness(TallyAgent) as harness:
        harness.invoke(Add(n=1), idempotency_key="turn-1")
        error = _over_the_wire(_failed_invoke(harness, "turn-1", Add(n=2)))
    assert type(error) is InvalidArgumentError
    assert error.idempotency_key == "turn-1"  # type: ignore[attr-defined]
    assert error.state_key == harness.key  # type: ignore[attr-defined]
    assert (error.task_id, error.session_id) == ("7", "s-1")  # type: ignore[attr-defined]
    assert error.message.startswith("idempotency key 'turn-1' was already used")
    assert "Remote error (JSON)" not in error.message


def test_handler_error_with_fields_arrives_with_them() -> None:
    """A handler's LimitExceededError reaches the client as LimitExceededError with ``limit``
    and ``asked``, its text and remote frames intact."""
    with AgentHarness(TallyAgent) as harness:
        error = _over_the_wire(_failed_invoke(harness, "k", Add(n=9)))
    assert type(error) is LimitExceededError
    assert (error.limit, error.asked) == (3, 9)  # type: ignore[attr-defined]
    assert error.message.startswith("9 is over the limit")
    assert "in handle" in (error.remote_traceback or "")  # type: ignore[attr-defined]


def test_document_is_read_back_and_stripped_from_the_text() -> None:
    """The error document gives class and fields (non-JSON values as text) and is not part of
    the message shown; a text without one is read from its first line as before."""
    try:
        raise InvalidArgumentError("bad path", path=Path("/srv/x"), attempts=2)
    except InvalidArgumentError as exc:
        message = format_failure(exc)
    first_line = message.split("\n", 1)[0]
    assert first_line == "InvalidArgumentError: bad path"
    remote = parse_failure(message)
    assert remote.type == "InvalidArgumentError"
    assert remote.fields == {"path": "/srv/x", "attempts": 2}
    assert remote.message.startswith("InvalidArgumentError: bad path\n\nRemote traceback")
    assert "Remote error" not in remote.message and remote.traceback is not None
    plain = parse_failure("ValueError: x\n\nRemote error (JSON): not json")
    assert plain.fields == {} and plain.message.endswith("not json")


def test_runtime_limit_failure_carries_size_and_limit() -> None:
    """A reply over the message limit reaches the client as LimitExceededError with the reply's
    size and the limit as fields."""
    message = reply_too_large("7", 2_000_000, 1024 * 1024)
    task = Task("7", "s-1", TaskState.FAILED, events=(Event(int(TaskState.FAILED), message),))
    error = failure_error(task)
    assert type(error) is LimitExceededError
    assert (error.size, error.limit) == (2_000_000, 1024 * 1024)  # type: ignore[attr-defined]
    assert "Remote error" not in error.message


def test_huge_text_keeps_the_document() -> None:
    """A failure cut to the size bound still ends with its error document."""
    try:
        raise LimitExceededError("x" * 100_000, limit=5)
    except LimitExceededError as exc:
        message = format_failure(exc, max_chars=2000)
    assert len(message) <= 2000
    remote = parse_failure(message)
    assert remote.type == "LimitExceededError" and remote.fields == {"limit": 5}
