"""Helpers of the Flame 0.6 conformance suite: the flamepy scenario runner and the shared apps.

flamepy reads its configuration once per process, so flamepy client scenarios run in their own
interpreter (``flamepy_scenarios.py``) whose environment points at the test module's runtime.
A uniquely named module (not ``conftest``) so test modules can import it unambiguously.
"""

from __future__ import annotations

import contextlib
import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pytest
from scenario_json import REPLY_MARKER, from_json, to_json

HERE = Path(__file__).resolve().parent
RUNNER = HERE / "flamepy_scenarios.py"
SERVICES = HERE / "services"

RAW_APP = "conf-raw"
"""A ``flamepy.core.FlameService`` (raw bytes): services/raw_echo.py."""
CTX_APP = "conf-flamepy-ctx"
"""A ``flamepy.service.FlameInstance`` with a context: services/flamepy_ctx.py."""
ENTER_FAILS_APP = "conf-enter-fails"
"""A FlameService whose on_session_enter raises: services/enter_fails.py."""
OURS_APP = "conf-ours-ctx"
"""Our ``flame_agents.service.FlameInstance`` with the same protocol: services/ours_ctx.py."""

SCENARIO_TIMEOUT = 90.0
"""Bound on one scenario process; a hang becomes a test failure instead of a stuck suite."""

SCRUBBED_ENV = ("FLAME_CACHE_STORAGE", "FLAME_CA_FILE", "FLAME_ENDPOINT", "FLAME_CACHE_ENDPOINT")


def app_attrs(script: str, **extra: Any) -> dict[str, Any]:
    """flamepy ApplicationAttributes (as a dict) that launch ``services/<script>``."""
    attrs: dict[str, Any] = {
        "command": sys.executable,
        "arguments": [str(SERVICES / script)],
        "environments": {"PYTHONUNBUFFERED": "1"},
        "description": f"conformance service {script}",
        # Instances of sessions a scenario leaves open are released soon after going idle.
        "delay_release": 3,
    }
    attrs.update(extra)
    return attrs


STANDARD_APPS: dict[str, dict[str, Any]] = {
    RAW_APP: app_attrs("raw_echo.py"),
    CTX_APP: app_attrs("flamepy_ctx.py"),
    ENTER_FAILS_APP: app_attrs("enter_fails.py"),
    OURS_APP: app_attrs("ours_ctx.py"),
}


class ScenarioError(AssertionError):
    """A flamepy scenario raised where the test expected it to succeed."""


class Flamepy:
    """Runs named scenarios of ``flamepy_scenarios.py`` against one runtime.

    Calls go to one long-lived worker process (flamepy's import is the slow part); a worker
    that hangs or dies is killed and replaced, and the test fails with its stderr.
    :meth:`fresh` runs a scenario in a new process instead, for a client with no history.
    """

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self._log_dir = log_dir
        self._proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader: threading.Thread | None = None
        self._stderr: IO[str] | None = None
        self._stderr_path = log_dir / "worker.err"
        self._workers = 0

    def __call__(self, name: str, /, **args: Any) -> Any:
        """Run ``name`` with ``args``; return its result, or fail with its traceback."""
        return self._unwrap(name, self.raw(name, **args))

    def fresh(self, name: str, /, **args: Any) -> Any:
        """Like calling, but in a new flamepy process (no connection or object cache reused)."""
        try:
            proc = subprocess.run(
                [sys.executable, str(RUNNER), name, json.dumps(to_json(args))],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=SCENARIO_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"flamepy scenario {name} hung:\n{exc.stdout}\n{exc.stderr}")
        for line in reversed(proc.stdout.splitlines()):
            if line.startswith(REPLY_MARKER):
                return self._unwrap(name, from_json(json.loads(line[len(REPLY_MARKER) :])))
        pytest.fail(f"flamepy scenario {name} exited {proc.returncode}:\n{proc.stderr}")

    def raw(self, name: str, /, **args: Any) -> dict[str, Any]:
        """Run ``name`` in the worker; return the decoded reply (``ok``, ``result``/``error``)."""
        proc = self._worker()
        assert proc.stdin is not None
        proc.stdin.write(json.dumps({"name": name, "args": to_json(args)}) + "\n")
        proc.stdin.flush()
        deadline = time.monotonic() + SCENARIO_TIMEOUT
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.close()
                pytest.fail(
                    f"flamepy scenario {name} did not finish within {SCENARIO_TIMEOUT:.0f}s "
                    f"(a hang); worker stderr:\n{self._stderr_tail()}"
                )
            if line is None:
                self.close()
                pytest.fail(f"flamepy worker died during {name}:\n{self._stderr_tail()}")
            if line.startswith(REPLY_MARKER):
                reply: dict[str, Any] = from_json(json.loads(line[len(REPLY_MARKER) :]))
                return reply

    def close(self) -> None:
        """Stop the worker (EOF, then kill) and release its pipes; safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        assert proc.stdin is not None and proc.stdout is not None
        with contextlib.suppress(OSError):
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=10)
        proc.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def _worker(self) -> subprocess.Popen[str]:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        self.close()
        self._workers += 1
        self._stderr_path = self._log_dir / f"worker-{self._workers}.err"
        self._stderr = open(self._stderr_path, "w")  # noqa: SIM115 (closed in close())
        proc = subprocess.Popen(
            [sys.executable, str(RUNNER), "--serve"],
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            bufsize=1,
        )
        self._lines = queue.Queue()
        self._reader = threading.Thread(
            target=_pump, args=(proc.stdout, self._lines), name="flamepy-worker-stdout", daemon=True
        )
        self._reader.start()
        self._proc = proc
        return proc

    def _stderr_tail(self, limit: int = 6000) -> str:
        try:
            return self._stderr_path.read_text(errors="replace")[-limit:]
        except OSError:
            return "<no stderr>"

    @staticmethod
    def _unwrap(name: str, reply: dict[str, Any]) -> Any:
        if not reply["ok"]:
            raise ScenarioError(
                f"flamepy scenario {name} raised {reply['error']}\n{reply.get('traceback', '')}"
            )
        return reply["result"]


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


def eventually(
    probe: Callable[[], Any], *, timeout: float = 60.0, interval: float = 0.1, what: str = ""
) -> Any:
    """Poll ``probe`` until it returns something truthy; fail (not hang) after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"gave up waiting for {what or probe!r}; last value {value!r}")
        time.sleep(interval)
