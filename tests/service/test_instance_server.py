"""The Instance shim server over a real Unix socket: results, errors, ordering, socket hygiene."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from flame_agents._wire import shim_pb2, shim_pb2_grpc, types_pb2
from flame_agents.errors import ConfigError
from flame_agents.service._instance_server import InstanceServer

ROOT = Path(__file__).resolve().parents[2]


class Recorder:
    """A handler that records calls, echoes input, and fails on request."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()

    def on_session_enter(
        self, session_id: str, application_name: str, common_data: bytes | None
    ) -> None:
        self.calls.append(("enter", session_id, application_name, common_data))
        if common_data == b"fail":
            raise RuntimeError("cannot enter: bad common data")

    def on_task_invoke(self, task_id: str, session_id: str, input: bytes | None) -> bytes | None:
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            self.calls.append(("task", task_id, session_id, input))
            if input == b"raise":
                raise ValueError("handler says no")
            if input == b"empty-error":
                raise KeyError
            if input == b"slow":
                time.sleep(0.2)
            return None if input is None else b"echo:" + input
        finally:
            with self._lock:
                self.active -= 1

    def on_session_leave(self) -> None:
        self.calls.append(("leave",))
        raise RuntimeError("leave always reports success")


@pytest.fixture
def served(sock_dir: Path) -> Iterator[tuple[Recorder, Any, Path]]:
    """A Recorder served on a socket in a short temp dir, with a connected stub."""
    handler = Recorder()
    path = sock_dir / "i.sock"
    server = InstanceServer(handler, path)
    server.start()
    channel = grpc.insecure_channel(f"unix:{path}")
    try:
        yield handler, shim_pb2_grpc.InstanceStub(channel), path
    finally:
        channel.close()
        server.stop(grace=None)


def _enter(stub: Any, common_data: bytes | None = None) -> Any:
    ctx = shim_pb2.SessionContext(
        session_id="app-abc123", application=shim_pb2.ApplicationContext(name="app")
    )
    if common_data is not None:
        ctx.common_data = common_data
    return stub.OnSessionEnter(ctx, timeout=10)


def test_full_call_sequence(served: tuple[Recorder, Any, Path]) -> None:
    """Enter, tasks and leave reach the handler with Flame's fields; outputs come back."""
    handler, stub, _ = served
    assert _enter(stub, b"CD").return_code == 0
    res = stub.OnTaskInvoke(
        shim_pb2.TaskContext(task_id="1", session_id="app-abc123", input=b"x"), timeout=10
    )
    assert (res.return_code, res.output) == (0, b"echo:x")
    res = stub.OnTaskInvoke(shim_pb2.TaskContext(task_id="2", session_id="app-abc123"), timeout=10)
    assert res.return_code == 0 and not res.HasField("output")
    assert stub.OnSessionLeave(types_pb2.EmptyRequest(), timeout=10).return_code == 0
    assert handler.calls == [
        ("enter", "app-abc123", "app", b"CD"),
        ("task", "1", "app-abc123", b"x"),
        ("task", "2", "app-abc123", None),
        ("leave",),
    ]


def test_absent_common_data_is_none(served: tuple[Recorder, Any, Path]) -> None:
    """An unset common_data reaches the handler as None, not b''."""
    handler, stub, _ = served
    _enter(stub)
    assert handler.calls[0][3] is None


def test_handler_exceptions_become_return_codes(served: tuple[Recorder, Any, Path]) -> None:
    """Exceptions are reported as return_code -1, never as gRPC errors: str(exc) for a session
    enter, the class, text and innermost frames for a task."""
    _, stub, _ = served
    res = _enter(stub, b"fail")
    assert (res.return_code, res.message) == (-1, "cannot enter: bad common data")
    res = stub.OnTaskInvoke(shim_pb2.TaskContext(task_id="1", input=b"raise"), timeout=10)
    assert res.return_code == -1
    assert res.message.startswith("ValueError: handler says no\n\nRemote traceback")
    assert "in on_task_invoke" in res.message
    assert not res.HasField("output")
    res = stub.OnTaskInvoke(shim_pb2.TaskContext(task_id="2", input=b"empty-error"), timeout=10)
    assert res.return_code == -1 and res.message.startswith("KeyError\n\nRemote traceback")
    res = stub.OnTaskInvoke(shim_pb2.TaskContext(task_id="3", input=b"ok"), timeout=10)
    assert (res.return_code, res.output) == (0, b"echo:ok")


def test_session_leave_always_succeeds(served: tuple[Recorder, Any, Path]) -> None:
    """OnSessionLeave answers 0 even when the handler raises (Flame would loop otherwise)."""
    handler, stub, _ = served
    assert stub.OnSessionLeave(types_pb2.EmptyRequest(), timeout=10).return_code == 0
    assert handler.calls == [("leave",)]


def test_concurrent_calls_run_one_at_a_time(served: tuple[Recorder, Any, Path]) -> None:
    """Overlapping OnTaskInvoke calls are serialized: the handler never runs two at once."""
    handler, stub, _ = served
    futures = [
        stub.OnTaskInvoke.future(shim_pb2.TaskContext(task_id=str(i), input=b"slow"), timeout=30)
        for i in range(4)
    ]
    assert all(f.result().return_code == 0 for f in futures)
    assert handler.max_active == 1


def test_socket_is_private(served: tuple[Recorder, Any, Path]) -> None:
    """The socket file is a socket with mode 0600."""
    _, _, path = served
    mode = path.lstat().st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600


def test_stop_removes_socket(sock_dir: Path) -> None:
    """stop() removes the socket file."""
    path = sock_dir / "s.sock"
    with InstanceServer(Recorder(), path):
        assert path.exists()
    assert not path.exists()


def test_stale_socket_is_replaced(sock_dir: Path) -> None:
    """A socket file left by a dead process is removed and re-bound."""
    path = sock_dir / "stale.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # file stays, nobody listens
    assert path.exists()
    with InstanceServer(Recorder(), path):
        channel = grpc.insecure_channel(f"unix:{path}")
        try:
            stub = shim_pb2_grpc.InstanceStub(channel)
            assert stub.OnSessionLeave(types_pb2.EmptyRequest(), timeout=10).return_code == 0
        finally:
            channel.close()


def test_live_socket_is_not_stolen(served: tuple[Recorder, Any, Path]) -> None:
    """A second server on a socket that is being served fails clearly instead of stealing it."""
    _, stub, path = served
    second = InstanceServer(Recorder(), path)
    with pytest.raises(ConfigError, match="already serving"):
        second.start()
    second.stop()
    assert path.exists()  # the failed server leaves the live socket alone
    assert stub.OnSessionLeave(types_pb2.EmptyRequest(), timeout=10).return_code == 0


@pytest.mark.parametrize(
    ("make_path", "fragment"),
    [
        (lambda d: Path("rel.sock"), "absolute"),
        (lambda d: d / ("x" * 120) / "s.sock", "longer than"),
        (lambda d: d / "missing" / "s.sock", "does not exist"),
    ],
)
def test_bad_paths_fail_clearly(sock_dir: Path, make_path: Any, fragment: str) -> None:
    """Relative, too long or parentless socket paths raise ConfigError saying why."""
    with pytest.raises(ConfigError, match=fragment):
        InstanceServer(Recorder(), make_path(sock_dir)).start()


def test_regular_file_is_not_replaced(sock_dir: Path) -> None:
    """A regular file at the socket path is left alone and reported."""
    path = sock_dir / "file.sock"
    path.write_text("keep me")
    with pytest.raises(ConfigError, match="not a socket"):
        InstanceServer(Recorder(), path).start()
    assert path.read_text() == "keep me"


SERVE_SCRIPT = textwrap.dedent(
    """
    from flame_agents.service._instance_server import serve

    class H:
        def on_session_enter(self, session_id, application_name, common_data):
            pass
        def on_task_invoke(self, task_id, session_id, input):
            if input == b"hang":
                import os, time
                open(os.environ["FLAME_INSTANCE_ENDPOINT"] + ".busy", "w").close()
                time.sleep(600)
            return input
        def on_session_leave(self):
            pass

    serve(H())
    print("clean exit", flush=True)
    """
)


@pytest.mark.parametrize("task_running", [False, True], ids=["idle", "busy"])
def test_serve_exits_cleanly_on_sigterm(sock_dir: Path, task_running: bool) -> None:
    """serve() answers on FLAME_INSTANCE_ENDPOINT, then exits 0 on SIGTERM and removes it,
    even while a task is still running."""
    path = sock_dir / "p.sock"
    env = {**os.environ, "FLAME_INSTANCE_ENDPOINT": str(path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE_SCRIPT],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not path.exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "socket never appeared"
            time.sleep(0.05)
        channel = grpc.insecure_channel(f"unix:{path}")
        try:
            stub = shim_pb2_grpc.InstanceStub(channel)
            res = stub.OnTaskInvoke(shim_pb2.TaskContext(task_id="1", input=b"ping"), timeout=10)
            assert res.output == b"ping"
            if task_running:
                # Keep the call referenced: a collected future cancels its RPC.
                pending = stub.OnTaskInvoke.future(shim_pb2.TaskContext(task_id="2", input=b"hang"))
                marker = Path(f"{path}.busy")
                while not marker.exists():
                    assert time.monotonic() < deadline, "the task never started"
                    time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
            if task_running:
                pending.cancel()
        finally:
            channel.close()
        assert proc.returncode == 0, err
        assert task_running or "clean exit" in out
        assert not path.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
