"""The Instance shim's CancelTask over a real Unix socket: it reaches ``on_task_cancel`` while
the task runs, and a cancelled task is reported as a failure naming Cancelled."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest

from flame_agents._wire import shim_pb2, shim_pb2_grpc
from flame_agents._wire.cancel import instance_cancel_callable
from flame_agents._wire.failures import is_cancellation, parse_failure
from flame_agents.errors import Cancelled
from flame_agents.service._instance_server import CancellableHandler, InstanceServer

SID = "app-abc123"
WAIT = 30.0


class Plain:
    """A handler whose tasks wait until told to go on, then end as their input says; it has no
    ``on_task_cancel`` (as the handler protocol allows)."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.cancel = threading.Event()
        self.cancelled: list[str] = []
        self.invoked: list[str] = []

    def on_session_enter(self, session_id: str, application_name: str, cd: bytes | None) -> None:
        pass

    def on_task_invoke(self, task_id: str, session_id: str, input: bytes | None) -> bytes | None:
        self.invoked.append(task_id)
        self.started.set()
        assert self.cancel.wait(WAIT), "never cancelled"
        if input == b"raise-cancelled":
            raise Cancelled("stopped at a safe point", task_id=task_id)
        if input == b"raise-asyncio":
            raise asyncio.CancelledError
        if input == b"fail":
            raise ValueError("failed while stopping")
        return b"finished anyway"

    def on_session_leave(self) -> None:
        pass


class Stoppable(Plain):
    """The same, stopped by ``on_task_cancel``."""

    def on_task_cancel(self, task_id: str) -> None:
        self.cancelled.append(task_id)
        self.cancel.set()


def _serve(handler: Any, sock_dir: Path) -> Iterator[tuple[Any, Any]]:
    path = sock_dir / "i.sock"
    server = InstanceServer(handler, path)
    server.start()
    channel = grpc.insecure_channel(f"unix:{path}")
    try:
        yield shim_pb2_grpc.InstanceStub(channel), instance_cancel_callable(channel)
    finally:
        channel.close()
        handler.cancel.set()
        server.stop(grace=None)


@pytest.fixture
def stoppable(sock_dir: Path) -> Iterator[tuple[Stoppable, Any, Any]]:
    """A Stoppable served on a socket, with the Instance stub and the CancelTask callable."""
    handler = Stoppable()
    for stub, cancel in _serve(handler, sock_dir):
        yield handler, stub, cancel


def _invoke(pool: ThreadPoolExecutor, stub: Any, tid: str, data: bytes) -> Future[Any]:
    req = shim_pb2.TaskContext(task_id=tid, session_id=SID, input=data)
    return pool.submit(stub.OnTaskInvoke, req, timeout=WAIT)


def _cancel(cancel: Any, tid: str) -> Any:
    return cancel(shim_pb2.TaskContext(task_id=tid, session_id=SID), timeout=WAIT)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"raise-cancelled", "Cancelled: stopped at a safe point"),
        (b"raise-asyncio", "Cancelled: stopped by its service on request"),
    ],
    ids=["errors.Cancelled", "asyncio.CancelledError"],
)
def test_cancel_reaches_the_running_handler(
    stoppable: tuple[Stoppable, Any, Any], data: bytes, reason: str
) -> None:
    """CancelTask runs while OnTaskInvoke holds the handler (no deadlock), calls on_task_cancel
    with the task id, and the task is answered as a failure whose document names Cancelled."""
    handler, stub, cancel = stoppable
    assert isinstance(handler, CancellableHandler)
    with ThreadPoolExecutor(1) as pool:
        running = _invoke(pool, stub, "3", data)
        assert handler.started.wait(WAIT)
        assert _cancel(cancel, "3").return_code == 0
        result = running.result(WAIT)
    assert handler.cancelled == ["3"]
    assert result.return_code == -1 and is_cancellation(result.message)
    assert parse_failure(result.message).message.startswith(reason)


def test_a_task_that_finishes_anyway_keeps_its_result(
    stoppable: tuple[Stoppable, Any, Any],
) -> None:
    """A handler that returns (or fails) despite the cancel ends the task as it says: the cancel
    came too late."""
    handler, stub, cancel = stoppable
    with ThreadPoolExecutor(1) as pool:
        running = _invoke(pool, stub, "1", b"return")
        assert handler.started.wait(WAIT)
        _cancel(cancel, "1")
        assert running.result(WAIT).output == b"finished anyway"
        handler.started.clear()
        failing = _invoke(pool, stub, "2", b"fail")
        assert handler.started.wait(WAIT)
        _cancel(cancel, "2")
        result = failing.result(WAIT)
    assert result.return_code == -1 and not is_cancellation(result.message)
    assert result.message.startswith("ValueError: failed while stopping")


def test_a_cancel_before_its_task_answers_it_without_the_handler(
    stoppable: tuple[Stoppable, Any, Any],
) -> None:
    """A cancel that overtakes its task is remembered: the task is answered cancelled and the
    handler never runs it; later tasks run as usual."""
    handler, stub, cancel = stoppable
    assert _cancel(cancel, "5").return_code == 0
    assert handler.cancelled == []  # nothing ran: the handler is not asked
    with ThreadPoolExecutor(1) as pool:
        result = _invoke(pool, stub, "5", b"return").result(WAIT)
        assert is_cancellation(result.message)
        assert "before it started" in result.message
        assert handler.invoked == []
        handler.cancel.set()
        assert _invoke(pool, stub, "6", b"return").result(WAIT).output == b"finished anyway"


def test_a_handler_without_on_task_cancel_says_it_cannot(sock_dir: Path) -> None:
    """Without on_task_cancel, CancelTask answers a non-zero code with the reason (the runtime
    then stops the instance), and the running task is left alone."""
    handler = Plain()
    assert not isinstance(handler, CancellableHandler)
    for stub, cancel in _serve(handler, sock_dir):
        with ThreadPoolExecutor(1) as pool:
            running = _invoke(pool, stub, "1", b"return")
            assert handler.started.wait(WAIT)
            answer = _cancel(cancel, "1")
            assert answer.return_code != 0 and "on_task_cancel" in answer.message
            handler.cancel.set()
            assert running.result(WAIT).output == b"finished anyway"
