"""The chat and crawler examples, their schemas, and the CLI hooks of the agent layer."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flame_agents import core
from flame_agents.agent import AgentSession
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

from chat_agent import Ask, ChatAgent, ChatContext  # noqa: E402
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
    assert view["version"] == 2 and view["patches"] == 1 and view["bytes"] > 0
    assert describe_agent_state(None) is None


def _register(rt: LocalRuntime, yaml_path: Path) -> None:
    (doc,) = load_app_file(yaml_path)
    # PYTHONPATH: the examples import `flame_agents` from this checkout.
    spec: dict[str, Any] = {
        **doc.spec,
        "command": sys.executable,
        "environments": {"PYTHONPATH": str(ROOT)},
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
