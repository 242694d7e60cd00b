"""The chat and crawler examples, their schemas, and the CLI hooks of the agent layer."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flame_agents import Interrupted, InvalidStateError, core
from flame_agents.agent import AgentSession
from flame_agents.agent._envelope import encode_resume
from flame_agents.agent._state import StateHandle
from flame_agents.agent._store import CacheStore
from flame_agents.agent.cli_support import (
    application_schema,
    describe_agent_state,
    generate_schemas,
    schema_for_labels,
)
from flame_agents.cache import ObjectRef
from flame_agents.cli.app_yaml import load_app_file
from flame_agents.testing import LocalRuntime
from flame_agents.testing.agents import AgentHarness

ROOT = Path(__file__).resolve().parents[2]
CHAT = ROOT / "examples" / "agents" / "chat"
CRAWLER = ROOT / "examples" / "agents" / "crawler"
sys.path[:0] = [str(CHAT), str(CRAWLER)]

from chat_agent import Ask, ChatAgent, ChatContext, LocalModel, Message, Outbox, Token  # noqa: E402
from crawler_agent import Crawl, CrawlContext, CrawlerAgent  # noqa: E402
from demo_site import DemoSite  # noqa: E402


@pytest.fixture
def site() -> Iterator[DemoSite]:
    with DemoSite(pages=30) as s:
        yield s


def test_committed_schemas_are_up_to_date() -> None:
    """schemas/*.json match what the example agents generate (run `flame-agents schema`)."""
    assert generate_schemas(ROOT, check=True) == []


def test_app_yaml_label_fills_the_application_schema() -> None:
    """An app labelled with its agent class registers with its JSON Schemas."""
    (doc,) = load_app_file(CHAT / "chat-agent.yaml")
    schema = schema_for_labels(doc.spec["labels"], working_directory=CHAT)
    assert schema == application_schema(ChatAgent)
    request = json.loads(schema["input"])
    assert request["properties"]["request"]["properties"]["text"]["type"] == "string"
    assert json.loads(schema["common_data"])["x-flame-agents-schema-version"] == 1
    assert schema_for_labels(["other"], working_directory=CHAT) is None


def test_chat_agent_keeps_the_conversation() -> None:
    """Each turn appends the question and the deterministic answer."""
    with AgentHarness(ChatAgent, ChatContext(system_prompt="brief")) as h:
        first = h.invoke(Ask(text="hello"))
        second = h.invoke(Ask(text="again"))
        assert second.turns == 2 and "again" in second.text and first.text.startswith("[brief]")
        assert [m.role for m in h.context().messages] == ["user", "assistant"] * 2


def test_crawler_fetches_every_page_once(site: DemoSite) -> None:
    """Crawling to the end visits each of the site's pages exactly once."""
    with AgentHarness(CrawlerAgent, CrawlContext(start_url=site.start_url)) as h:
        reports = []
        while not reports or not reports[-1].done:
            reports.append(h.invoke(Crawl(max_pages=7)))
            h.crash()  # each batch on a fresh instance: resumes from the stored frontier
        ctx = h.context()
    urls = [p.url for p in ctx.pages]
    assert len(urls) == len(set(urls)) == 30
    assert ctx.visited.tolist() == urls and not ctx.frontier and not ctx.errors


def test_describe_agent_state_reads_without_user_classes() -> None:
    """The CLI view shows context JSON, version, patch count and size."""
    with AgentHarness(ChatAgent, ChatContext(system_prompt="x")) as h:
        h.invoke(Ask(text="hi"))
        ref = ObjectRef("memory://", h.key, 0)
        view = describe_agent_state(ref.encode(), store=h.store, items=1)
    assert view is not None
    assert view["context"]["system_prompt"] == "x"
    assert view["context"]["messages"]["length"] == 2
    assert view["context"]["messages"]["last"][0]["role"] == "assistant"
    # The turn wrote three patches: its model step's intent and result, then its commit.
    assert view["version"] == 4 and view["patches"] == 3 and view["bytes"] > 0
    assert describe_agent_state(None) is None


def _register(rt: LocalRuntime, yaml_path: Path, env: dict[str, str] | None = None) -> None:
    (doc,) = load_app_file(yaml_path)
    # PYTHONPATH: the examples import `flame_agents` from this checkout.
    spec: dict[str, Any] = {
        **doc.spec,
        "command": sys.executable,
        "environments": {"PYTHONPATH": str(ROOT), **(env or {})},
    }
    spec["schema"] = schema_for_labels(spec.get("labels", ()), working_directory=yaml_path.parent)
    core.register_application(doc.name, spec)


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_crawl_survives_kill_9_of_instance_and_runtime(site: DemoSite) -> None:
    """A crawl interrupted by kill -9 of its instance and of the runtime fetches each page once."""
    with LocalRuntime() as rt:
        _register(rt, CRAWLER / "crawler-agent.yaml")
        app = core.get_application("crawler-agent")
        assert app is not None and app.spec.schema is not None and app.spec.schema.input
        s = AgentSession(
            "crawler-agent", ctx=CrawlContext(start_url=site.start_url), agent=CrawlerAgent
        )
        s.invoke(Crawl(max_pages=5))
        for pid in rt.instance_pids():
            os.kill(pid, signal.SIGKILL)
        s.invoke(Crawl(max_pages=5))
        rt.restart(kill=True)
        s = AgentSession(session_id=s.id(), agent=CrawlerAgent)
        while not s.invoke(Crawl(max_pages=10)).done:
            pass
        ctx = s.context()
        urls = [p.url for p in ctx.pages]
        assert len(urls) == len(set(urls)) == 30
        view = describe_agent_state(core.get_session(s.id()).common_data)
        assert view is not None and view["context"]["pages"]["length"] == 30
        s.close()


def test_chat_agent_uses_an_openai_compatible_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """With CHAT_API_BASE set, the agent posts the window to /chat/completions."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    seen: list[dict[str, Any]] = []

    class Fake(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append({"path": self.path, "auth": self.headers["Authorization"], **body})
            reply = json.dumps({"choices": [{"message": {"content": "model says hi"}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Fake)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("CHAT_API_BASE", f"http://127.0.0.1:{server.server_address[1]}/v1")
        monkeypatch.setenv("CHAT_API_KEY", "secret")
        with AgentHarness(ChatAgent, ChatContext(system_prompt="sys")) as h:
            assert h.invoke(Ask(text="hello")).text == "model says hi"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    (call,) = seen
    assert call["path"] == "/v1/chat/completions" and call["auth"] == "Bearer secret"
    assert call["messages"] == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "hello"},
    ]


@pytest.fixture
def outbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Outbox:
    """The chat example's outbox in a temp folder, and a model that does not wait per token."""
    path = tmp_path / "outbox.jsonl"
    monkeypatch.setenv("CHAT_OUTBOX", str(path))
    monkeypatch.setenv("CHAT_TOKEN_DELAY", "0")
    return Outbox(path)


def test_local_model_streams_the_words_of_its_answer() -> None:
    """The local model hands out its answer word by word; the words make the whole text."""
    tokens: list[str] = []
    window = [Message(role="user", text="hi there")]
    completion = LocalModel(delay=0).complete("sys", window, tokens.append)
    assert len(tokens) > 3 and "".join(tokens) == completion.text
    assert completion.tool is None
    asked = LocalModel(delay=0).complete("", [Message(role="user", text="email a@b.c: yo")], print)
    assert asked.tool is not None and asked.tool.args == {"to": "a@b.c", "body": "yo"}


class _Died(BaseException):
    """Stands for the process dying at a chosen point (nothing after it runs)."""


def test_chat_send_that_died_after_delivering_is_reconciled_not_sent_again(
    outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A turn whose process died right after the email went out, before the step's result was
    recorded: the re-run asks reconcile with the step's key, finds the email, sends no other."""
    deliver = Outbox.send
    found: list[tuple[str, str | None]] = []
    find = Outbox.find

    def send_then_die(self: Outbox, to: str, body: str, *, key: str) -> str:
        deliver(self, to, body, key=key)
        raise _Died

    def spy_find(self: Outbox, key: str) -> str | None:
        found.append((key, find(self, key)))
        return found[-1][1]

    with AgentHarness(ChatAgent, ChatContext()) as h:
        with pytest.raises(Interrupted) as pause:
            h.invoke(Ask(text="email bob@example.com: lunch?"), idempotency_key="t1")
        assert pause.value.payload["tool"]["name"] == "send_email"
        monkeypatch.setattr(Outbox, "send", send_then_die)
        with pytest.raises(_Died):
            h.handler.invoke(encode_resume("t1", 0, {"yes": True}))
        h.crash()
        monkeypatch.setattr(Outbox, "find", spy_find)
        reply = h.handler.invoke(encode_resume("t1", 0, {"yes": True})).reply
        messages = h.context().messages.tolist()
    (email,) = outbox.emails()
    assert found == [(email["key"], email["id"])]  # asked once, by the key the send was given
    assert reply["text"].endswith(f"(sent as {email['id']})")
    assert [m.role for m in messages] == ["user", "assistant"]


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_chat_streams_the_tokens_of_its_answer_in_order(outbox: Outbox) -> None:
    """s.stream(): the model's tokens arrive as Token models while the turn runs, in order,
    and join to the reply's text; the turn commits once."""
    with LocalRuntime() as rt:
        _register(rt, CHAT / "chat-agent.yaml", {"CHAT_OUTBOX": str(outbox.path)})
        with AgentSession("chat-agent", ctx=ChatContext(), agent=ChatAgent) as s:
            stream = s.stream(Ask(text="tell me about sessions"))
            tokens = list(stream)
            answer = stream.reply
            assert len(tokens) > 3 and all(isinstance(t, Token) for t in tokens)
            assert "".join(t.text for t in tokens) == answer.text
            assert answer.turns == 1 and len(s.context().messages) == 2


def test_chat_approval_pauses_the_turn_until_a_human_answers(outbox: Outbox) -> None:
    """An email request raises Interrupted with the question; the session refuses other turns
    until it is answered; a no sends nothing, a yes (from another client of the session) sends
    one email and the turn commits."""
    with LocalRuntime() as rt:
        _register(rt, CHAT / "chat-agent.yaml", {"CHAT_OUTBOX": str(outbox.path)})
        s = AgentSession("chat-agent", ctx=ChatContext(), agent=ChatAgent)
        with pytest.raises(Interrupted) as pause:
            s.invoke(Ask(text="email bob@example.com: lunch at noon?"))
        assert pause.value.payload["question"] == "send this email to bob@example.com?"
        pending = s.pending_interrupt()
        assert pending is not None and pending["payload"] == pause.value.payload
        with pytest.raises(InvalidStateError, match="waiting for an answer"):
            s.invoke(Ask(text="hello"))
        declined = AgentSession(session_id=s.id(), agent=ChatAgent).resume({"yes": False})
        assert declined.text.endswith("(not sent)") and outbox.emails() == []
        with pytest.raises(Interrupted):
            s.invoke(Ask(text="email ann@example.com: see you"))
        sent = AgentSession(session_id=s.id(), agent=ChatAgent).resume({"yes": True})
        (email,) = outbox.emails()
        assert email["to"] == "ann@example.com" and email["body"] == "see you"
        assert sent.text.endswith(f"(sent as {email['id']})") and sent.turns == 2
        assert s.pending_interrupt() is None
        assert len(s.context().messages) == 4
        s.close()


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_chat_instance_killed_inside_the_send_sends_once(outbox: Outbox) -> None:
    """kill -9 of the instance while its send waits for the outbox: the re-run finds the send's
    intent and no result, reconcile finds no email with the step's key, and it sends once."""
    with LocalRuntime() as rt:
        _register(rt, CHAT / "chat-agent.yaml", {"CHAT_OUTBOX": str(outbox.path)})
        s = AgentSession("chat-agent", ctx=ChatContext(), agent=ChatAgent)
        with pytest.raises(Interrupted):
            s.invoke(Ask(text="email bob@example.com: lunch?"), idempotency_key="t1")
        replies: list[Any] = []
        state = StateHandle(CacheStore(s.ref.endpoint), s.ref.key, ChatContext)
        with outbox.path.open("a") as held:
            fcntl.flock(held, fcntl.LOCK_EX)  # the send blocks on the outbox's lock
            resume = threading.Thread(target=lambda: replies.append(s.resume({"yes": True})))
            resume.start()
            try:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    state.refresh()
                    progress = state.journal.turns.get("t1")
                    if progress is not None and "send_email" in progress.intents:
                        break
                    time.sleep(0.05)
                else:
                    pytest.fail("the send never started")
                pids = rt.instance_pids()
                assert pids, "no instance is sending"
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
            finally:
                fcntl.flock(held, fcntl.LOCK_UN)
                resume.join(120)
        assert not resume.is_alive()
        (email,) = outbox.emails()
        (reply,) = replies
        assert reply.text.endswith(f"(sent as {email['id']})")
        s.close()
