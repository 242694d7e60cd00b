"""``flame-agents demo``: a guided run of the seed echo service on a throw-away embedded runtime.

The demo is a list of :class:`Step` s run in order against a runtime whose home is a temporary
folder (so it never touches the user's own runtime) and which is stopped, with its instances,
when the demo ends, fails or is interrupted. To add a scenario, write a function taking a
:class:`DemoContext` and append a ``Step`` to :data:`STEPS`.

Where a user would type a command (``flmctl register -f ...``) the demo runs that command; where
a user would write Python (the client), the demo is that Python.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import runpy
import shlex
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from flame_agents import embedded
from flame_agents.config import RuntimeInfo
from flame_agents.errors import ConfigError, InternalError

__all__ = ["STEPS", "DemoContext", "Step", "add_parser", "run_demo"]


@dataclass
class DemoContext:
    """What a step gets: the running runtime, where the examples are, and shared state."""

    runtime: RuntimeInfo
    """Endpoints, home and pid of the demo's runtime."""
    examples: Path
    """The repository's ``examples/`` folder."""
    state: dict[str, Any] = field(default_factory=dict)
    """Values steps hand to later steps (e.g. a session id)."""

    def say(self, text: str) -> None:
        """Print one line of demo output, indented under the step title."""
        print(f"    {text}", flush=True)

    def shell(self, *argv: str, shown: str | None = None) -> str:
        """Run a command as a user would, print it and its output; fail the demo if it fails.

        ``shown`` is how the command is displayed (``flmctl ...`` rather than the full
        interpreter path used to run it).
        """
        self.say(f"$ {shown or shlex.join(argv)}")
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        for line in done.stdout.splitlines():
            self.say(line)
        if done.returncode != 0:
            raise InternalError(
                f"demo command failed ({done.returncode}): {shown or shlex.join(argv)}: "
                f"{done.stderr.strip()}"
            )
        return done.stdout

    def flmctl(self, *args: str) -> str:
        """Run ``flmctl ARGS`` (this package's CLI, with this interpreter)."""
        return self.shell(
            sys.executable, "-m", "flame_agents.cli", *args, shown=shlex.join(["flmctl", *args])
        )

    def import_example(self, folder: str, module: str) -> Any:
        """Import ``module`` from ``examples/agents/<folder>``, as a client script next to it
        would (request classes must be importable by the same name in the service)."""
        path = str(self.examples / "agents" / folder)
        if path not in sys.path:
            sys.path.insert(0, path)
        return __import__(module)

    def relative(self, path: Path) -> str:
        """``path`` relative to the current directory when below it (shorter to read)."""
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            return str(path)


@dataclass(frozen=True)
class Step:
    """One titled step of the demo."""

    title: str
    """What the step shows, printed before it runs."""
    run: Callable[[DemoContext], None]
    """The step itself; raise a FlameAgentsError to stop the demo with a clear message."""


# -- the echo service of the user guide -------------------------------------------------------


def register_echo(ctx: DemoContext) -> None:
    """Register the echo service from its application YAML."""
    ctx.flmctl("register", "-f", ctx.relative(ctx.examples / "agents/echo/echo-app.yaml"))
    ctx.flmctl("list", "-a")


def invoke_echo_twice(ctx: DemoContext) -> None:
    """Create a session with an empty context and invoke the entrypoint twice in it."""
    from flame_agents.service import Session

    echo_service = ctx.import_example("echo", "echo_service")
    session = Session("echo-app", ctx=[])
    ctx.state["echo_session"] = session.id()
    ctx.say(f"session {session.id()}")
    for text in ("hello", "hello"):
        reply = session.invoke(echo_service.EchoRequest(text))
        ctx.say(f"invoke({text!r}) -> text={reply.text} count={reply.count}")


def reopen_echo_session(ctx: DemoContext) -> None:
    """Open the same session by id, read its shared context, then close it."""
    from flame_agents.service import Session

    session = Session(session_id=ctx.state["echo_session"])
    try:
        ctx.say(f"context: {session.context()!r}")
    finally:
        session.close()
    ctx.say(f"closed {session.id()}")


# -- the agent examples -------------------------------------------------------------------------


class _Indented(io.TextIOBase):
    """A client's stdout in the demo: indented under the step title, written as it comes, so
    streamed tokens show while the agent produces them."""

    def __init__(self, out: Any) -> None:
        self._out = out
        self.line_start = True
        """Whether the last write ended its line."""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        for piece in text.splitlines(keepends=True):
            if self.line_start:
                self._out.write("    ")
            self._out.write(piece)
            self.line_start = piece.endswith("\n")
        self._out.flush()
        return len(text)


def _run_example_client(ctx: DemoContext, folder: str) -> None:
    """Register ``examples/agents/<folder>``'s app YAML, then run its ``client.py`` as a user
    would (its folder first on ``sys.path``), showing what it prints as it prints it."""
    example = ctx.examples / "agents" / folder
    (yaml_file,) = sorted(example.glob("*-agent.yaml"))
    ctx.flmctl("register", "-f", ctx.relative(yaml_file))
    ctx.say(f"$ python {ctx.relative(example / 'client.py')}")
    out = _Indented(sys.stdout)
    sys.path.insert(0, str(example))
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_path(str(example / "client.py"), run_name="__main__")
    finally:
        sys.path.remove(str(example))
        if not out.line_start:
            print(flush=True)


def chat_agent(ctx: DemoContext) -> None:
    """A typed chat agent: answers streamed token by token as the model writes them
    (``turn.emit`` in a ``turn.step``), an email sent only after a human said yes
    (``turn.interrupt``, then ``AgentSession.resume`` from another client), stored history,
    the session reopened by id."""
    _run_example_client(ctx, "chat")


def crawler_agent(ctx: DemoContext) -> None:
    """A crawler agent whose session keeps the frontier and pages across invocations."""
    _run_example_client(ctx, "crawler")


STEPS: list[Step] = [
    Step("register the echo service (examples/agents/echo/echo-app.yaml)", register_echo),
    Step("invoke echo twice in one session: the count grows", invoke_echo_twice),
    Step("reopen the session by id and read its context", reopen_echo_session),
    Step(
        "chat agent (examples/agents/chat): streamed tokens, a pause for approval, history",
        chat_agent,
    ),
    Step("crawler agent (examples/agents/crawler): a crawl kept in the session", crawler_agent),
]
"""The demo, in order. Append a :class:`Step` to add a scenario."""


# -- running it ---------------------------------------------------------------------------------


def _examples_dir() -> Path:
    # The source checkout this module lives in (editable install), else the current directory.
    for root in (Path(__file__).resolve().parents[2], Path.cwd()):
        if (root / "examples" / "agents").is_dir():
            return root / "examples"
    raise ConfigError(
        "the demo needs the examples/ folder of a source checkout: run it from the repository "
        "(make demo)"
    )


@contextlib.contextmanager
def _patched_environ(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def _raise_interrupt(_signum: int, _frame: FrameType | None) -> None:
    # SIGTERM takes the same clean-up path as Ctrl-C.
    raise KeyboardInterrupt


def _reset_clients() -> None:
    # Clients cache their connection on first use; point them at the demo runtime.
    from flame_agents import cache, core

    core.reset_default_connection()
    cache.reset_clients()


@contextlib.contextmanager
def demo_runtime(home: Path) -> Iterator[RuntimeInfo]:
    """Start an embedded runtime on ``home``, point this process and its children at it, and
    stop it (with every instance) on the way out, whatever happened."""
    proc: subprocess.Popen[bytes] | None = None
    # This Python first on PATH: the shell steps then run the interpreter that has flame_agents.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    with _patched_environ({"PATH": path, "FLAME_AGENTS_HOME": str(home)}):
        try:
            # Inside the try: a Ctrl-C while it starts must still stop it.
            proc, info = embedded.start_runtime(home)
            env = {"FLAME_ENDPOINT": info.endpoint, "FLAME_CACHE_ENDPOINT": info.cache_endpoint}
            with _patched_environ(env):
                _reset_clients()
                yield info
        finally:
            embedded.stop_runtime(home)  # graceful, escalating to a kill after its timeout
            if proc is not None:
                proc.wait()  # reap it: it is our child
            _reset_clients()


def run_demo(steps: list[Step] | None = None) -> int:
    """Run ``steps`` (default :data:`STEPS`) on a temporary runtime; returns the exit code."""
    examples = _examples_dir()
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="flame-agents-demo-") as tmp,
            # The chat example's email tool delivers to this file (its instances inherit the
            # runtime's environment), so the demo leaves no outbox behind.
            _patched_environ({"CHAT_OUTBOX": str(Path(tmp) / "chat-outbox.jsonl")}),
            demo_runtime(Path(tmp) / "home") as info,
        ):
            print(f"==> embedded runtime at {info.endpoint} (home {info.home})", flush=True)
            ctx = DemoContext(runtime=info, examples=examples)
            for number, step in enumerate(STEPS if steps is None else steps, start=1):
                print(f"==> {number}. {step.title}", flush=True)
                step.run(ctx)
        print("==> done: the runtime is stopped and its temporary home removed", flush=True)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


def _cmd_demo(_args: argparse.Namespace) -> int:
    return run_demo()


def add_parser(verbs: Any) -> None:
    """Add ``demo`` to the sub-parsers ``verbs``."""
    p = verbs.add_parser(
        "demo",
        help="run the demo of the examples on a temporary embedded runtime",
        description="Start a throw-away embedded runtime (temporary home), register the echo "
        "example, invoke it twice in one session, reopen the session by id and print its "
        "context; run the chat agent (streamed tokens, a pause for approval) and the crawler "
        "agent; then stop everything.",
    )
    p.set_defaults(func=_cmd_demo)
