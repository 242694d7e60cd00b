"""A full disk under the runtime home: clear write errors, nothing acknowledged lost, recovery."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from faults_support import register_behave, rng_for, wait_until

from flame_agents import cache, core
from flame_agents.errors import FlameAgentsError
from flame_agents.testing import LocalRuntime
from flame_agents.types import TaskState

pytestmark = pytest.mark.e2e

SIZE = "24m"
"""Room for the database, logs and a few objects; small enough to fill in a moment."""


@pytest.fixture
def small_home(tmp_path: Path) -> Iterator[Path]:
    """A runtime home on its own small tmpfs (skipped where mounting is not permitted)."""
    mnt = tmp_path / "home"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs for the runtime home needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0700", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True, check=False).returncode:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True, check=False)


def _fill(path: Path) -> None:
    """Append to ``path`` until the filesystem has no byte left."""
    chunk = 1 << 20
    with open(path, "ab", buffering=0) as f:
        while chunk:
            try:
                f.write(b"\0" * chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                chunk //= 2


def test_full_disk_refuses_writes_and_recovers(small_home: Path, rep: int) -> None:
    """Writes fail clearly on a full home; acknowledged work survives; serving resumes."""
    rng = rng_for("full-disk", rep)
    filler = small_home / "filler"
    with LocalRuntime(small_home) as rt:
        register_behave("disk-echo")
        session = core.create_session("disk-echo", max_instances=1)
        acked: dict[str, bytes] = {}
        for i in range(5):
            assert session.invoke(f"echo:{i}".encode()) == f"{i}|cd=<none>".encode()
        for task in session.list_tasks():
            acked[task.id] = task.output or b""
        ref = cache.put_raw("disk-echo/objects", b"kept" * 1000)
        # A task that finishes while the disk is full: its answer must wait, not vanish.
        sleeper = session.create_task(f"sleep:{rng.uniform(0.1, 1.0):.2f}".encode())
        acked[sleeper.id] = b"slept"
        _fill(filler)
        _fill(small_home / "logs" / "runtime.log")  # even a log line cannot be written now
        refused: FlameAgentsError | None = None
        payload = b"y" * 65536
        for _ in range(400):
            try:
                task = session.create_task(b"echo:" + payload)
            except FlameAgentsError as exc:
                refused = exc
                break
            acked[task.id] = payload + b"|cd=<none>"
        assert refused is not None, "a full disk never refused a write"
        assert "disk" in str(refused) or "space" in str(refused), str(refused)
        with pytest.raises(FlameAgentsError) as put_failed:
            cache.put_raw("disk-echo/objects", os.urandom(4 << 20))
        # The cache reports the OS error (ENOSPC); it names neither the file nor "no space".
        assert "errno 28" in str(put_failed.value).lower(), str(put_failed.value)
        assert core.get_session(session.id).id == session.id  # still serving reads

        filler.unlink()

        def all_done() -> bool:
            return all(session.get_task(t).state == TaskState.SUCCEED for t in acked)

        wait_until(all_done, what="acknowledged tasks done once space returned")
        assert session.invoke(b"echo:again") == b"again|cd=<none>"
        ref2 = cache.put_raw("disk-echo/objects", b"after" * 1000)
        rt.restart()
        reopened = core.open_session(session.id)
        for tid, output in acked.items():
            got = reopened.get_task(tid)
            assert got.state == TaskState.SUCCEED and got.output == output, tid
        assert cache.fetch_raw(ref).base == b"kept" * 1000
        assert cache.fetch_raw(ref2).base == b"after" * 1000
        reopened.close()
    with contextlib.suppress(FileNotFoundError):
        filler.unlink()
