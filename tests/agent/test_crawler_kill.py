"""The crawler example killed while it fetches a page: the crawl ends with every page once,
and no page it had fetched is fetched again.

The demo site holds the request for a chosen page until the test has killed the crawler's
instance (or the whole runtime), so the kill lands while that fetch runs. The interrupted
invocation committed no reply, but each of its fetches is a durable step: it runs again from
the stored frontier and gets the pages fetched before the kill from the session's journal.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flame_agents import core
from flame_agents.agent import AgentSession
from flame_agents.agent.cli_support import schema_for_labels
from flame_agents.cli.app_yaml import load_app_file
from flame_agents.testing import LocalRuntime

ROOT = Path(__file__).resolve().parents[2]
CRAWLER = ROOT / "examples" / "agents" / "crawler"
sys.path[:0] = [str(CRAWLER)]

from crawler_agent import Crawl, CrawlContext, CrawlerAgent, CrawlReport  # noqa: E402
from demo_site import DemoSite  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PAGES = 30
BATCH = 8
HELD = "page11.html"
"""The page whose fetch is cut by the kill: the fourth of the second invocation's batch."""


@pytest.fixture
def site() -> Iterator[DemoSite]:
    with DemoSite(pages=PAGES) as s:
        yield s


def register_crawler() -> None:
    """Register the example's app YAML, importing flame_agents from this checkout."""
    (doc,) = load_app_file(CRAWLER / "crawler-agent.yaml")
    spec: dict[str, Any] = {
        **doc.spec,
        "command": sys.executable,
        "environments": {"PYTHONPATH": str(ROOT)},
    }
    spec["schema"] = schema_for_labels(spec["labels"], working_directory=CRAWLER)
    core.register_application(doc.name, spec)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("victim", ["instance", "runtime"])
def test_crawl_killed_during_a_fetch_records_every_page_once(site: DemoSite, victim: str) -> None:
    """kill -9 of the crawler's instance, or of the runtime, while it fetches a page: the crawl
    ends with each page in the context once; the site served every page once, except the one
    whose fetch the kill cut, which it served twice."""
    in_flight = threading.Event()
    killed = threading.Event()

    def hold(name: str) -> None:
        if name == HELD and not in_flight.is_set():
            in_flight.set()
            killed.wait(60)

    site.on_request = hold
    reports: list[CrawlReport] = []
    errors: list[BaseException] = []
    with LocalRuntime() as rt:
        register_crawler()
        session = AgentSession(
            "crawler-agent", ctx=CrawlContext(start_url=site.start_url), agent=CrawlerAgent
        )

        def crawl() -> None:
            try:
                while not reports or not reports[-1].done:
                    reports.append(session.invoke(Crawl(max_pages=BATCH)))
            except BaseException as exc:
                errors.append(exc)

        crawler = threading.Thread(target=crawl)
        crawler.start()
        try:
            assert in_flight.wait(120), f"{HELD} was never fetched"
            pids = rt.instance_pids()
            assert pids, "no instance is fetching"
            if victim == "instance":
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
            else:
                rt.restart(kill=True)
        finally:
            killed.set()
            crawler.join(180)
        assert not crawler.is_alive() and not errors, errors
        ctx = session.context()
        session.close()

    urls = [page.url for page in ctx.pages]
    assert len(urls) == len(set(urls)) == PAGES
    assert ctx.visited.tolist() == urls and not ctx.frontier and not ctx.errors
    assert sum(len(r.fetched) for r in reports) == PAGES, "each page in exactly one reply"
    (batch,) = [r.fetched for r in reports if any(u.endswith(HELD) for u in r.fetched)]
    names = [u.rsplit("/", 1)[1] for u in batch]
    assert names.index(HELD) > 0, "the held page should not be the first of its batch"
    # The pages the interrupted invocation fetched before HELD were replayed from their steps'
    # recorded results: served once. HELD's step had its intent recorded and no result (the
    # process died waiting for the response), and the crawler gives its fetch no reconcile hook:
    # a GET has no effect that a reconcile could find, and the response it waited for died with
    # the process. So that one step ran again and the site served HELD a second time; no other
    # page was requested twice.
    assert {n: c for n, c in site.served.items() if c != 1} == {HELD: 2}
    assert len(site.served) == PAGES
