"""Ctrl-C in a client waiting on ``invoke``: a short traceback, and the task does not run on.

Real processes: a client script invokes a service whose handler touches a file and then blocks
until it is stopped; the test waits for that file (so the task is known to run), sends the
client SIGINT, and then reads the task from the runtime. Leaving the ``with`` block on Ctrl-C
closes the session with our runtime's cancel-running modifier (Flame 0.6 has no task-level
cancel): the running task's instance is stopped and the task ends CANCELLED.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flame_agents.core import Connection, TaskState
from flame_agents.testing import LocalRuntime

pytestmark = pytest.mark.e2e

PROC_TIMEOUT = 60
STARTED_TIMEOUT = 60

BLOCKING_SERVICE = """
import threading
from pathlib import Path

from flame_agents import service

ins = service.FlameInstance()


@ins.entrypoint
def block(marker):
    Path(marker).touch()
    threading.Event().wait()  # until the instance is stopped


if __name__ == "__main__":
    ins.run()
"""

SERVICE_CLIENT = """
import sys

from flame_agents import core
from flame_agents.service import Session

if sys.argv[2] == "watch":
    core.default_connection().fast_path = False  # the plain Flame calls: CreateTask + WatchTask
with Session("blocking-app") as session:
    print(session.id(), flush=True)
    session.invoke(sys.argv[1])
"""

CORE_CLIENT = """
import sys

import cloudpickle

from flame_agents import core

with core.create_session("blocking-app") as session:
    print(session.id, flush=True)
    session.invoke(cloudpickle.dumps(sys.argv[1]))
"""


@pytest.fixture(scope="module")
def scripts(runtime: LocalRuntime, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The blocking service (registered as blocking-app) and the two client scripts."""
    folder = tmp_path_factory.mktemp("interrupt")
    (folder / "blocking_service.py").write_text(BLOCKING_SERVICE)
    (folder / "service_client.py").write_text(SERVICE_CLIENT)
    (folder / "core_client.py").write_text(CORE_CLIENT)
    with Connection(runtime.endpoint) as conn:
        conn.register_application(
            "blocking-app",
            {
                "command": sys.executable,
                "arguments": [str(folder / "blocking_service.py")],
                "working_directory": str(folder),
            },
        )
    return folder


def _wait_for(marker: Path, client: subprocess.Popen[str]) -> None:
    """Until the handler has started (it touched ``marker``); fails if the client exits first."""
    deadline = time.monotonic() + STARTED_TIMEOUT
    while not marker.exists():
        assert client.poll() is None, f"client exited early:\n{client.communicate()[1]}"
        assert time.monotonic() < deadline, "the handler never started"
        time.sleep(0.02)


@pytest.mark.parametrize(
    ("script", "path"),
    [("service_client.py", "fast"), ("service_client.py", "watch"), ("core_client.py", "fast")],
    ids=["service-runtask", "service-watchtask", "core-runtask"],
)
def test_ctrl_c_during_invoke_is_short_and_cancels_the_running_task(
    runtime: LocalRuntime, scripts: Path, tmp_path: Path, script: str, path: str
) -> None:
    """SIGINT while invoke waits on a running task: KeyboardInterrupt with a short traceback
    free of gRPC frames, the client exits, and the task ends CANCELLED on the runtime."""
    marker = tmp_path / "started"
    client = subprocess.Popen(
        [sys.executable, str(scripts / script), str(marker), path],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **runtime.env(), "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert client.stdout is not None
        session_id = client.stdout.readline().strip()
        _wait_for(marker, client)
        client.send_signal(signal.SIGINT)
        _, err = client.communicate(timeout=PROC_TIMEOUT)
    finally:
        if client.poll() is None:
            client.kill()
            client.communicate()
    assert client.returncode == -signal.SIGINT, err
    assert err.rstrip().endswith("KeyboardInterrupt"), err
    assert "grpc" not in err.lower(), err
    assert len(err.splitlines()) <= 20, err
    with Connection(runtime.endpoint) as conn:
        tasks = conn.list_tasks(session_id)
        info = conn.get_session(session_id)
    assert [t.state for t in tasks] == [TaskState.CANCELLED]
    assert info.running == 0 and info.cancelled == 1
