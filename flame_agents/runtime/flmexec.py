"""The built-in ``flmexec`` service: runs the Python or shell script each task sends.

Flame's script executor, written for this runtime: launched as
``python -m flame_agents.runtime.flmexec`` with ``FLAME_INSTANCE_ENDPOINT`` set, it needs nothing
installed beyond flame-agents. The contract is Flame's (its ``flmexec-service``, and newer
flamepy's ``flamepy.tools.Sandbox``, which is built on it):

* **Task input**: JSON ``{"language": "python" | "shell", "code": "<script>", "input": [bytes]
  | null, "runtime": "<version or shell>" | null}``. ``language`` is case-insensitive; ``input``
  (a list of integers 0-255) is the script's stdin (an empty stdin without it); ``runtime`` picks
  the Python version (``"3.12"``, ``"python3.12"``) or the shell (``"bash"``, ``"sh"``).
* **Task output**: JSON ``{"data": [bytes]}``, the script's stdout.
* **Session common_data**: ignored, except that a Sandbox's attributes (a JSON object with
  ``language``/``runtime``) fill in what a task leaves out.

Each script is written to a new temporary folder (``main.py`` or ``main.sh``) and runs with the
instance's working folder as its current directory, its environment without the instance's own
socket variables. Python scripts run on this runtime's interpreter unless ``runtime`` names
another version (then ``python<version>`` on ``PATH``, else ``uv run --python <version>``);
shell scripts run under bash (``sh`` without bash).

Where we differ from Flame: a script that exits non-zero fails its task, with the exit status
and the last lines of its stderr and stdout in the failure text (Flame answers its stdout as a
success and only logs the status); a script that reads stdin without an ``input`` sees end of
file (Flame's blocks forever). The script's stderr also goes to the instance's log, as on Flame.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flame_agents._wire import shim_pb2_grpc, types_pb2
from flame_agents._wire.failures import MAX_FAILURE_CHARS, failure_message
from flame_agents._wire.limits import (
    instance_hop_bytes,
    limit_from_env,
    output_budget,
    reply_too_large,
)
from flame_agents._wire.proctitle import APP_ENV, SESSION_ENV, set_instance_title
from flame_agents.runtime._builtin_service import serve_instance

__all__ = [
    "INPUT_SCHEMA",
    "LANGUAGES",
    "OUTPUT_SCHEMA",
    "Script",
    "ScriptError",
    "ScriptServicer",
    "encode_output",
    "main",
    "parse_script",
    "run_script",
]

LANGUAGES = ("python", "shell")
"""The languages flmexec runs (as Flame's does)."""

INPUT_SCHEMA = json.dumps(
    {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {
            "language": {
                "type": "string",
                "description": "The language of the script: python or shell",
            },
            "code": {
                "type": "string",
                "description": "The code of the script to run, e.g. print('Hello, world!')",
            },
            "input": {
                "type": ["array", "null"],
                "items": {"type": "integer", "minimum": 0, "maximum": 255},
                "description": "The script's stdin, as bytes, e.g. [104, 105]",
            },
            "runtime": {
                "type": ["string", "null"],
                "description": "Python version (e.g. 3.12) or shell (e.g. bash) to run it with",
            },
        },
        "required": ["language", "code"],
    }
)
"""JSON Schema of a task's input (Flame's, plus the ``runtime`` newer flamepy sends)."""

OUTPUT_SCHEMA = json.dumps(
    {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {
            "data": {
                "type": "array",
                "items": {"type": "integer", "minimum": 0, "maximum": 255},
                "description": "The script's stdout, as bytes",
            }
        },
        "required": ["data"],
    }
)
"""JSON Schema of a task's output: what Flame's service and flamepy's Sandbox exchange."""

TAIL_LINES = 20
"""Lines of stderr and of stdout quoted in the failure of a script that exited non-zero."""
_TAIL_CHARS = 4000

_INPUT_HINT = (
    'send a JSON object {"language": "python" or "shell", "code": "<script>", '
    '"input": [bytes] or null}'
)
_HIDDEN_ENV = ("FLAME_INSTANCE_ENDPOINT", APP_ENV, SESSION_ENV)
"""The instance's own variables: a script is not the instance (a nested service must not bind
the instance's socket)."""


class ScriptError(Exception):
    """A task cannot run or its script failed; the message becomes the task's failure text."""


@dataclass(frozen=True)
class Script:
    """One task's script, as parsed from its input."""

    language: str
    """``python`` or ``shell`` (lower case)."""
    code: str
    stdin: bytes | None
    """The ``input`` bytes, or None (the script then reads an empty stdin)."""
    runtime: str | None


def _invalid(text: str) -> ScriptError:
    return ScriptError(failure_message("InvalidArgumentError", text))


def parse_script(data: bytes | None, defaults: dict[str, str] | None = None) -> Script:
    """The script a task's input describes; ``defaults`` fill a missing language or runtime.

    Raises ScriptError with Flame's texts ("No task input", "failed to parse script: ...",
    "Unsupported language: ...") and how to fix it.
    """
    if data is None:
        raise _invalid(f"No task input: {_INPUT_HINT}")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _invalid(f"failed to parse script: {exc}; {_INPUT_HINT}") from None
    if not isinstance(doc, dict):
        raise _invalid(f"failed to parse script: expected a JSON object; {_INPUT_HINT}")
    defaults = defaults or {}
    language = doc.get("language") or defaults.get("language")
    code = doc.get("code")
    if not isinstance(language, str):
        raise _invalid(f"failed to parse script: missing field `language`; {_INPUT_HINT}")
    if not isinstance(code, str):
        raise _invalid(f"failed to parse script: field `code` must be a string; {_INPUT_HINT}")
    if language.strip().lower() not in LANGUAGES:
        raise _invalid(f"Unsupported language: {language} (flmexec runs python and shell)")
    raw = doc.get("input")
    if raw is not None and not (
        isinstance(raw, list)
        and all(isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 255 for b in raw)
    ):
        raise _invalid(
            "failed to parse script: field `input` must be a list of integers 0-255 (bytes) or null"
        )
    runtime = doc.get("runtime") or defaults.get("runtime")
    if runtime is not None and not isinstance(runtime, str):
        raise _invalid("failed to parse script: field `runtime` must be a string or null")
    return Script(
        language=language.strip().lower(),
        code=code,
        stdin=None if raw is None else bytes(raw),
        runtime=(runtime.strip() or None) if runtime else None,
    )


def session_defaults(common_data: bytes | None) -> dict[str, str]:
    """``language``/``runtime`` from a Sandbox's session attributes; {} for anything else."""
    if not common_data:
        return {}
    try:
        doc = json.loads(common_data)
    except (ValueError, UnicodeDecodeError):
        return {}
    if not isinstance(doc, dict):
        return {}
    return {k: v for k in ("language", "runtime") if isinstance(v := doc.get(k), str) and v}


def _python_command(runtime: str | None, script: Path) -> list[str]:
    if not runtime:
        return [sys.executable, str(script)]
    version = runtime.removeprefix("python")
    ours = sys.version_info
    if version in (f"{ours.major}", f"{ours.major}.{ours.minor}"):
        return [sys.executable, str(script)]
    if found := shutil.which(f"python{version}"):
        return [found, str(script)]
    if uv := shutil.which("uv"):
        return [uv, "run", "--no-project", "--python", version, str(script)]
    raise _invalid(
        f"Python {version} is not available on this machine (no python{version} on PATH, and "
        f"no uv to fetch it): install it, or leave `runtime` out to use Python "
        f"{ours.major}.{ours.minor}"
    )


def _shell_command(runtime: str | None, script: Path) -> list[str]:
    shell = runtime or ("bash" if shutil.which("bash") else "sh")
    found = shutil.which(shell)
    if found is None:
        raise _invalid(
            f"shell {shell!r} is not available on this machine: install it, or leave `runtime` "
            "out to use bash"
        )
    return [found, str(script)]


def _tail(label: str, data: bytes) -> str:
    text = data.decode("utf-8", errors="replace").rstrip()
    if not text:
        return ""
    lines = text.splitlines()[-TAIL_LINES:]
    body = "\n".join(lines)[-_TAIL_CHARS:]
    return f"\nlast lines of its {label}:\n" + "\n".join(f"  | {line}" for line in body.split("\n"))


def _status(returncode: int) -> str:
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-returncode).name}"
        return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


class _Runner:
    """Runs one script at a time; can stop the one running (at shutdown)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._child: subprocess.Popen[bytes] | None = None
        self._stopping = False

    def run(self, script: Script) -> bytes:
        """The stdout of ``script`` (exit status 0), else ScriptError."""
        suffix = "py" if script.language == "python" else "sh"
        with tempfile.TemporaryDirectory(prefix="flmexec-") as folder:
            path = Path(folder) / f"main.{suffix}"
            path.write_text(script.code, encoding="utf-8")
            if script.language == "python":
                argv = _python_command(script.runtime, path)
            else:
                argv = _shell_command(script.runtime, path)
            env = {k: v for k, v in os.environ.items() if k not in _HIDDEN_ENV}
            with self._lock:
                if self._stopping:
                    raise ScriptError("flmexec is stopping; the script was not run")
                try:
                    child = subprocess.Popen(
                        argv,
                        stdin=subprocess.DEVNULL if script.stdin is None else subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                        env=env,
                    )
                except OSError as exc:
                    raise ScriptError(f"cannot start {argv[0]!r}: {exc}") from None
                self._child = child
            try:
                out, err = child.communicate(script.stdin)
            finally:
                with self._lock:
                    self._child = None
        if err:
            # On Flame a script's stderr goes to the executor's log; ours to the instance's.
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.buffer.write(err)
                sys.stderr.flush()
        if child.returncode != 0:
            raise ScriptError(
                f"the {script.language} script {_status(child.returncode)}"
                + _tail("stderr", err)
                + _tail("stdout", out)
            )
        return out

    def stop(self) -> None:
        """Kill a running script (the instance is being stopped); refuse new ones."""
        with self._lock:
            self._stopping = True
            if self._child is not None and self._child.poll() is None:
                with contextlib.suppress(OSError):
                    self._child.kill()


def run_script(script: Script) -> bytes:
    """Run ``script`` now and return its stdout; ScriptError if it cannot run or exits non-zero."""
    return _Runner().run(script)


def encode_output(stdout: bytes) -> bytes:
    """The task output for ``stdout``: ``{"data": [bytes]}``."""
    return json.dumps({"data": list(stdout)}, separators=(",", ":")).encode()


class ScriptServicer(shim_pb2_grpc.InstanceServicer):  # type: ignore[misc]
    """The Instance shim of flmexec: one script per task, run to completion."""

    def __init__(self, *, max_message_bytes: int) -> None:
        self._limit = max_message_bytes
        self._defaults: dict[str, str] = {}
        self.runner = _Runner()

    def OnSessionEnter(self, request: Any, context: Any) -> types_pb2.Result:
        """Remember a Sandbox's language and runtime, if the session has them."""
        set_instance_title(request.application.name, request.session_id)
        data = request.common_data if request.HasField("common_data") else None
        self._defaults = session_defaults(data)
        return types_pb2.Result(return_code=0)

    def OnTaskInvoke(self, request: Any, context: Any) -> types_pb2.TaskResult:
        """Run the task's script; its stdout is the output, a failure the task's error."""
        budget = output_budget(self._limit)
        try:
            script = parse_script(
                request.input if request.HasField("input") else None, self._defaults
            )
            output = encode_output(self.runner.run(script))
        except ScriptError as exc:
            message = str(exc)[: min(MAX_FAILURE_CHARS, budget)]
            return types_pb2.TaskResult(return_code=-1, message=message)
        if len(output) > budget:
            message = reply_too_large(request.task_id, len(output), self._limit)
            return types_pb2.TaskResult(return_code=-1, message=message)
        return types_pb2.TaskResult(return_code=0, output=output)

    def OnSessionLeave(self, request: Any, context: Any) -> types_pb2.Result:
        """Nothing to clean up: every script's folder is removed when it ends."""
        self._defaults = {}
        return types_pb2.Result(return_code=0)


def main() -> int:
    """Serve on ``$FLAME_INSTANCE_ENDPOINT`` until SIGTERM; remove the socket on exit."""
    limit = limit_from_env()
    servicer = ScriptServicer(max_message_bytes=limit)
    return serve_instance(
        "flmexec",
        servicer,
        options=[
            ("grpc.max_receive_message_length", instance_hop_bytes(limit)),
            ("grpc.max_send_message_length", instance_hop_bytes(limit)),
        ],
        # A running script is killed first, so the server's grace is not spent waiting on it.
        on_stop=servicer.runner.stop,
    )


if __name__ == "__main__":
    sys.exit(main())
