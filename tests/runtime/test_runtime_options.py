"""Runtime options and LocalRuntime switches at values other than their defaults (docs/runtime.md).

``--max-message-bytes`` at a small value is covered by ``test_message_limits.py``, and the
runtime's own ``--log-format json`` on stderr by ``tests/test_logging_output.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from runtime_support import SERVICES, Frontend, wait_until

from flame_agents import cache, core
from flame_agents._wire import types_pb2
from flame_agents._wire.cache.keys import MAX_COMPONENT_BYTES
from flame_agents.embedded import stop_runtime
from flame_agents.errors import InstanceLostError, InvalidArgumentError
from flame_agents.testing import LocalRuntime
from flame_agents.types import TaskState

pytestmark = pytest.mark.e2e

BEHAVE = SERVICES / "behave.py"


@dataclass
class Limited:
    """A runtime started with non-default options, and a connection to it (not through the
    environment: the module's two such runtimes are alive at once)."""

    rt: LocalRuntime
    conn: core.Connection


@contextmanager
def limited_runtime(*args: str) -> Iterator[Limited]:
    """A runtime with ``args`` and the behave service registered as application ``behave``."""
    with (
        LocalRuntime(set_env=False, extra_args=[*args, "--prestart", "1"]) as rt,
        core.connect(rt.endpoint) as conn,
    ):
        conn.register_application("behave", {"command": sys.executable, "arguments": [str(BEHAVE)]})
        yield Limited(rt, conn)


@pytest.fixture(scope="module")
def one_attempt() -> Iterator[Limited]:
    """A runtime that fails a task at its first instance loss and takes 16-byte session ids."""
    with limited_runtime("--max-task-attempts", "1", "--max-id-bytes", "16") as limited:
        yield limited


@pytest.fixture(scope="module")
def four_attempts() -> Iterator[Limited]:
    """A runtime that runs a task on four instances before failing it; 600-byte session ids."""
    with limited_runtime("--max-task-attempts", "4", "--max-id-bytes", "600") as limited:
        yield limited


def requeues(task: Any) -> list[str]:
    """The messages of a task's returns to Pending for another attempt after an instance loss."""
    return [
        message
        for e in task.events
        if e.code == TaskState.PENDING
        and (message := e.message or "").startswith("Task returned to <Pending>: instance")
    ]


def test_one_task_attempt_fails_at_the_first_instance_loss(one_attempt: Limited) -> None:
    """--max-task-attempts 1: a task whose instance dies is failed at once (InstanceLostError,
    retryable), never run again; the session's next task runs on a fresh instance."""
    with one_attempt.conn.create_session("behave") as session:
        with pytest.raises(InstanceLostError, match="instance lost 1 times") as lost:
            session.invoke(b"die")
        assert lost.value.retryable
        (task,) = session.list_tasks()
        assert requeues(task) == [] and task.state == TaskState.FAILED
        assert session.invoke(b"echo:after") == b"after|cd=<none>"


def test_four_task_attempts_run_the_task_on_four_instances(four_attempts: Limited) -> None:
    """--max-task-attempts 4: a task is put back three times, then failed after four losses."""
    with four_attempts.conn.create_session("behave") as session:
        with pytest.raises(InstanceLostError, match="instance lost 4 times"):
            session.invoke(b"die")
        (task,) = session.list_tasks()
        assert [m.rsplit("; ", 1)[-1] for m in requeues(task)] == [
            "attempt 2 of 4",
            "attempt 3 of 4",
            "attempt 4 of 4",
        ]


def test_max_id_bytes_bounds_session_ids_in_utf8_bytes(one_attempt: Limited) -> None:
    """--max-id-bytes 16: ids of 16 UTF-8 bytes are taken, 17 bytes are refused naming the
    option, however many characters they are."""
    conn = one_attempt.conn
    for sid in ("s" * 16, "é" * 8):
        with conn.create_session("behave", session_id=sid) as session:
            assert session.invoke(b"echo:x") == b"x|cd=<none>"
    for sid in ("s" * 17, "é" * 8 + "s"):
        with pytest.raises(InvalidArgumentError, match=r"the limit is 16 bytes \(--max-id-bytes\)"):
            conn.create_session("behave", session_id=sid)
    assert not [s for s in conn.list_sessions() if len(s.id.encode()) > 16]


def test_a_larger_max_id_bytes_takes_longer_ids(four_attempts: Limited) -> None:
    """--max-id-bytes 600 takes a 600-byte id (the default, 512, refuses it); a context in the
    object cache still needs an id within the cache's key limit (200 bytes)."""
    conn, cache_endpoint = four_attempts.conn, four_attempts.rt.cache_endpoint
    with conn.create_session("behave", session_id="l" * 600) as session:
        assert session.invoke(b"echo:long") == b"long|cd=<none>"
    with pytest.raises(InvalidArgumentError, match=r"\(--max-id-bytes\)"):
        conn.create_session("behave", session_id="l" * 601)
    fits = f"behave/{'c' * MAX_COMPONENT_BYTES}"
    assert cache.put_raw(fits, b"ctx", endpoint=cache_endpoint).version == 1
    with pytest.raises(InvalidArgumentError, match=f"longer than {MAX_COMPONENT_BYTES} bytes"):
        cache.put_raw(f"{fits}c", b"ctx", endpoint=cache_endpoint)


# -- LocalRuntime(follow_process=False) -------------------------------------------------------

_STARTER = """
import json, sys, time
from flame_agents.testing import LocalRuntime
args = ["--prestart", "0"]
follows = LocalRuntime(set_env=False, extra_args=args).start()
stays = LocalRuntime(set_env=False, extra_args=args, follow_process=False).start()
print(json.dumps({
    "follows": [follows.pid, str(follows.home)],
    "stays": [stays.pid, str(stays.home), stays.endpoint],
}), flush=True)
time.sleep(300)
"""


def test_runtime_started_with_follow_process_false_outlives_its_starter() -> None:
    """LocalRuntime(follow_process=False) does not follow its process: after SIGKILL of the
    process that started it (which stops a following runtime started alongside), it runs and
    serves; it was started without --exit-with-pid."""
    starter = subprocess.Popen([sys.executable, "-c", _STARTER], stdout=subprocess.PIPE, text=True)
    homes: list[str] = []
    try:
        assert starter.stdout is not None
        started = json.loads(starter.stdout.readline())
        (follow_pid, follow_home), (stay_pid, stay_home, endpoint) = (
            started["follows"],
            started["stays"],
        )
        homes = [follow_home, stay_home]
        assert "--exit-with-pid" in psutil.Process(follow_pid).cmdline()
        assert "--exit-with-pid" not in psutil.Process(stay_pid).cmdline()
        starter.kill()
        starter.wait()
        gone, alive = psutil.wait_procs([psutil.Process(follow_pid)], timeout=60)
        assert gone and not alive, "the following runtime did not stop with its starter"
        assert psutil.Process(stay_pid).is_running()
        with core.connect(endpoint) as conn, conn.create_session("flmping") as session:
            assert session.invoke(b"still here") == b"still here"
        assert psutil.Process(stay_pid).is_running()
    finally:
        starter.kill()
        starter.wait()
        if starter.stdout is not None:
            starter.stdout.close()
        for home in homes:
            stop_runtime(Path(home), kill=True)
            shutil.rmtree(home, ignore_errors=True)


# -- a prestarted interpreter that cannot start -----------------------------------------------

_SPARE_BREAKER = '''
"""Test sitecustomize: in a prestarted interpreter (and only there) the spare program cannot
be imported, as if the installation were broken; every other process starts normally."""
import importlib.abc
import sys

MARK = "from flame_agents.runtime.launch._spare import main"


class _Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "flame_agents.runtime.launch._spare":
            raise ImportError("test: the spare program is broken on purpose")
        return None


if any(MARK in arg for arg in getattr(sys, "orig_argv", ())):
    sys.meta_path.insert(0, _Refuse())
'''


BROKEN = "ImportError: test: the spare program is broken on purpose"
"""The last line of each failed spare's traceback in prestart.log."""


def runtime_events(home: Path, event: str) -> list[dict[str, Any]]:
    """The runtime's JSON log records named ``event`` (from ``logs/runtime.log``)."""
    found = []
    for line in (home / "logs" / "runtime.log").read_text(errors="replace").splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("event") == event:
                found.append(record)
    return found


def test_spare_that_cannot_start_is_logged_and_given_up_after_three(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A prestarted interpreter that fails at start writes its error to logs/prestart.log; after
    three failures in a row the runtime starts no more of them and launches instances fresh."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_SPARE_BREAKER)
    monkeypatch.setenv("PYTHONPATH", str(site))
    args = ["--prestart", "1", "--log-format", "json"]
    with LocalRuntime(extra_args=args) as rt, Frontend(rt.endpoint) as fe:
        home = rt.home
        assert home is not None
        prestart_log = home / "logs" / "prestart.log"

        def failures() -> list[dict[str, Any]]:
            return runtime_events(home, "prestarted interpreter failed to start")

        wait_until(lambda: len(failures()) >= 3, what="three spares failed")
        assert [f["disabled"] for f in failures()] == [False, False, True]
        assert prestart_log.read_text().count(BROKEN) == 3

        fe.register("probe", "prestart_probe")
        for sid in ("fresh-1", "fresh-2"):
            fe.create_session(sid, "probe")
            task = fe.run(sid, b"view")
            assert task.status.state == types_pb2.Succeed, task
            assert json.loads(task.spec.output)["prestarted"] is False
            fe.close_session(sid)
        # Each launch above gave a refill the chance to try again: none did.
        assert len(failures()) == 3
        assert prestart_log.read_text().count(BROKEN) == 3


# -- --log-format json of the CLI -------------------------------------------------------------


def test_cli_log_format_json_for_its_own_lines_and_a_detached_runtime(tmp_path: Path) -> None:
    """`flame-agents --log-format json`: the CLI's own log lines on stderr are JSON objects
    (event, level, timestamp, logger, fields), and `up --detach` passes the format to the
    runtime, whose logs/runtime.log is JSON lines too; stdout keeps only the command's output."""
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLAME_")}
    env.update(FLAME_AGENTS_HOME=str(home), HOME=str(tmp_path), FLAME_LOG_LEVEL="info")
    cli = [sys.executable, "-m", "flame_agents.cli", "--log-format", "json"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*cli, *args], capture_output=True, text=True, env=env, timeout=120, check=True
        )

    try:
        run("up", "--detach", "--home", str(home))
        listed = run("list", "-a", "-o", "json")
        assert any(app["name"] == "flmping" for app in json.loads(listed.stdout))
        records = [json.loads(line) for line in listed.stderr.splitlines() if line.strip()]
        assert records and all(
            {"event", "level", "timestamp", "logger"} <= r.keys() for r in records
        )
        assert any(r["event"].startswith("using embedded runtime at") for r in records)
        ready = runtime_events(home, "runtime ready")
        assert ready and ready[0]["endpoint"].startswith("http://127.0.0.1:")
        lines = (home / "logs" / "runtime.log").read_text().splitlines()
        assert all(json.loads(line)["event"] for line in lines if line.strip())
    finally:
        subprocess.run(
            [*cli, "down", "--home", str(home)], capture_output=True, env=env, timeout=120
        )
        stop_runtime(home, kill=True)
