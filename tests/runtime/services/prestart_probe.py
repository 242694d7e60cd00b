"""A test service that answers every task with what its process looks like, as JSON.

Prints a marker line to stdout and stderr at start (the ``PROBE_MARK`` variable), so a test can
find its log files. Used to compare a prestarted instance with a freshly launched one.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

import __main__
from flame_agents.service._instance_server import serve

print(f"out:{os.environ.get('PROBE_MARK', '')}", flush=True)
print(f"err:{os.environ.get('PROBE_MARK', '')}", file=sys.stderr, flush=True)


def _fd_target(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


def view() -> dict[str, object]:
    """Everything a launch decides about this process."""
    shadow = None
    if os.environ.get("PROBE_IMPORT"):
        shadow = getattr(__import__(os.environ["PROBE_IMPORT"]), "PROBE_SHADOW", None)
    with open(f"/proc/{os.getpid()}/comm") as comm:
        name = comm.read().strip()
    return {
        "argv": sys.argv,
        "orig_argv": sys.orig_argv,
        "executable": sys.executable,
        "path": sys.path,
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "main_file": getattr(__main__, "__file__", None),
        "main_name": __name__,
        "main_spec": getattr(getattr(__main__, "__spec__", None), "name", None),
        "main_loader": type(getattr(__main__, "__loader__", None)).__name__,
        "flags": list(sys.flags),
        "stdin": _fd_target(0),
        "stdout": _fd_target(1),
        "stderr": _fd_target(2),
        "pgid": os.getpgid(0) == os.getpid(),
        "sid": os.getsid(0) == os.getpid(),
        "name": name,
        "tempdir": tempfile.gettempdir(),
        "prestarted": "pyarrow" in sys.modules,
        "shadow": shadow,
    }


class Probe:
    """Answers each task with :func:`view`."""

    def on_session_enter(self, session_id: str, application_name: str, common_data: object) -> None:
        return None

    def on_task_invoke(self, task_id: str, session_id: str, input: bytes | None) -> bytes:
        return json.dumps(view()).encode()

    def on_session_leave(self) -> None:
        return None


if __name__ == "__main__":
    serve(Probe())
