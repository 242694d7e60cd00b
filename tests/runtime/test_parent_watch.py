"""The runtime's ``--exit-with-pid``: waiting for a process to exit, and the runtime stopping."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import psutil

from flame_agents.embedded import stop_runtime
from flame_agents.runtime._parent_watch import process_exists, wait_for_exit


def test_wait_returns_when_the_process_exits() -> None:
    """wait_for_exit() is still waiting while the process lives and returns once it is killed."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:

        async def scenario() -> bool:
            waiter = asyncio.ensure_future(wait_for_exit(proc.pid))
            await asyncio.sleep(0.2)
            still_waiting = not waiter.done()
            proc.kill()
            await asyncio.wait_for(waiter, 30)
            return still_waiting

        assert asyncio.run(scenario())
    finally:
        proc.kill()
        proc.wait()
    assert not process_exists(proc.pid)


def test_wait_for_a_missing_process_returns_at_once() -> None:
    """A pid that does not exist (a reaped child) is already gone."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    asyncio.run(asyncio.wait_for(wait_for_exit(proc.pid), 5))


_STARTER = """
import sys, time
from flame_agents import core
from flame_agents.testing import LocalRuntime
rt = LocalRuntime(set_env=False).start()
with core.connect(rt.endpoint) as conn:
    session = conn.create_session("flmping", min_instances=1)
    assert session.invoke(b"up") == b"up"
print(rt.pid, rt.home, flush=True)
time.sleep(300)
"""


def test_runtime_of_a_killed_test_process_stops_with_its_instances() -> None:
    """SIGKILL of the process that started a LocalRuntime stops the runtime and its instances."""
    starter = subprocess.Popen([sys.executable, "-c", _STARTER], stdout=subprocess.PIPE, text=True)
    pid, home = 0, ""
    try:
        assert starter.stdout is not None
        pid_text, home = starter.stdout.readline().split()
        pid = int(pid_text)
        instances = psutil.Process(pid).children(recursive=True)
        assert instances, "the session's instance runs"
        starter.kill()
        starter.wait()
        _, alive = psutil.wait_procs([psutil.Process(pid), *instances], timeout=60)
        assert not alive, alive
    finally:
        starter.kill()
        starter.wait()
        if starter.stdout is not None:
            starter.stdout.close()
        if home:
            stop_runtime(Path(home), kill=True)
            shutil.rmtree(home, ignore_errors=True)
