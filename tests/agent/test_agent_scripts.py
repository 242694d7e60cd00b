"""Agents written as the README writes them: one script run as ``__main__``, and clients that
use ``AgentSession("app", ctx=...)`` with no extra arguments, or cannot import the agent at all.

Also the mistakes a new user makes with AgentSession: dicts for models, a plain service as an
agent, and reopening a closed session.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from agentdefs import Ask, ChatAgent, ChatContext

from flame_agents import core
from flame_agents.agent import AgentSession
from flame_agents.errors import InvalidArgumentError
from flame_agents.service import Session
from flame_agents.testing import LocalRuntime

pytestmark = pytest.mark.e2e

README_AGENT = textwrap.dedent(
    """
    from pydantic import BaseModel, Field
    from flame_agents import Agent, AgentSession, ContextModel, History


    class Message(BaseModel):
        role: str
        text: str


    class ChatContext(ContextModel):
        system_prompt: str = ""
        turns: int = 0
        messages: History[Message] = Field(default_factory=History)


    class Ask(BaseModel):
        text: str


    class Answer(BaseModel):
        text: str
        turns: int


    class ChatAgent(Agent[ChatContext]):
        def handle(self, req: Ask, ctx: ChatContext) -> Answer:
            with open("runs.log", "a") as log:
                log.write(req.text + "\\n")
            ctx.messages.append(Message(role="user", text=req.text))
            ctx.turns += 1
            return Answer(text=req.text.upper(), turns=ctx.turns)


    if __name__ == "__main__":
        ChatAgent.run()
    """
)

CLIENT_WITH_CLASSES = textwrap.dedent(
    """
    import sys
    from readme_agent import Answer, Ask, ChatContext
    from flame_agents import AgentSession

    s = AgentSession("readme-agent", ctx=ChatContext(system_prompt="be brief"))
    answer = s.invoke(Ask(text="hi"))
    assert isinstance(answer, Answer), type(answer)
    print(s.id(), answer.text, answer.turns)
    """
)

CLIENT_WITHOUT_CLASSES = textwrap.dedent(
    """
    import sys
    from pydantic import BaseModel
    from flame_agents import AgentSession

    class Ask(BaseModel):
        text: str

    s = AgentSession(session_id=sys.argv[1])
    answer = s.invoke(Ask(text="again"))
    print(type(answer).__name__, repr(answer.text), repr(answer.turns))
    """
)


@pytest.fixture(scope="module")
def readme_app(runtime: LocalRuntime, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``readme-agent``: the README's agent as one script started as ``python readme_agent.py``."""
    folder = tmp_path_factory.mktemp("readme-agent")
    (folder / "readme_agent.py").write_text(README_AGENT)
    core.register_application(
        "readme-agent",
        {
            "command": sys.executable,
            "arguments": ["readme_agent.py"],
            "working_directory": str(folder),
            "max_instances": 1,
        },
    )
    core.register_application(
        "plain-echo",
        {
            "command": sys.executable,
            "arguments": ["echo_service.py"],
            "working_directory": str(Path(__file__).resolve().parents[2] / "examples/agents/echo"),
        },
    )
    yield folder


def _client(script: str, cwd: Path, runtime: LocalRuntime, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=cwd,
        env={**__import__("os").environ, **runtime.env()},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_script_agent_returns_its_typed_reply_without_extra_arguments(
    runtime: LocalRuntime, readme_app: Path, tmp_path: Path
) -> None:
    """An agent run as ``python readme_agent.py`` records its importable module, so a client
    with ``AgentSession(app, ctx=...)`` gets an ``Answer`` of that module; a client that cannot
    import it gets a model with the same fields, validated; each turn ran once."""
    sid, text, turns = _client(CLIENT_WITH_CLASSES, readme_app, runtime).split()
    assert (text, turns) == ("HI", "1")
    # Another process, in a folder where readme_agent is not importable.
    out = _client(CLIENT_WITHOUT_CLASSES, tmp_path, runtime, sid)
    assert out == "Answer 'AGAIN' 2"
    assert (readme_app / "runs.log").read_text().splitlines() == ["hi", "again"]


def test_dicts_for_models_are_refused_with_the_model_named(readme_app: Path) -> None:
    """A dict passed as ``ctx`` or as the request names the model expected, and creates no
    session."""
    before = len(core.list_sessions())
    with pytest.raises(InvalidArgumentError, match="ctx: expected ChatContext, got dict"):
        AgentSession("readme-agent", ctx={"system_prompt": "x"}, agent=ChatAgent)  # type: ignore[arg-type]
    assert len(core.list_sessions()) == before
    with AgentSession("readme-agent", ctx=ChatContext(), agent=ChatAgent) as s:
        with pytest.raises(InvalidArgumentError, match="req: expected Ask, got dict"):
            s.invoke({"text": "hi"})  # type: ignore[arg-type]
        assert s.invoke(Ask(text="ok")).turns == 1


def test_a_plain_service_is_refused_at_open_and_its_session_closed(readme_app: Path) -> None:
    """AgentSession on an application that is not an agent fails when it opens, names the
    application, and leaves no open session behind."""
    with pytest.raises(InvalidArgumentError, match="'plain-echo' is not an agent"):
        AgentSession("plain-echo", ctx=ChatContext())
    sessions = [s for s in core.list_sessions() if s.application == "plain-echo"]
    assert sessions and all(s.state == core.SessionState.CLOSED for s in sessions)


def test_reopening_a_closed_session_says_it_cannot_be_reopened(readme_app: Path) -> None:
    """Session(session_id=...) of a closed session explains that closed sessions cannot be
    reopened."""
    session = Session("plain-echo", ctx=[])
    session.close()
    with pytest.raises(InvalidArgumentError, match="a closed session cannot be reopened"):
        Session(session_id=session.id())
