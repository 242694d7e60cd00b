"""A crawler agent: the session keeps the frontier, the visited set and the extracted pages.

Each invocation crawls the next ``max_pages`` pages and commits what it learned as one patch.
Every fetch is a durable step (``turn.step(f"fetch:{url}", ...)``): its result is in the
session's journal before the crawl goes on. So a crawl survives the loss of its instance or of
the runtime without fetching a page twice: the retried invocation either finds its commit (and
returns the recorded reply) or runs again from the stored frontier, getting the pages fetched
so far from the journal. Only the fetch that was in flight when the process died runs again (a
GET has no effect to reconcile, and its response died with the process). Every page ends up in
the context exactly once.
"""

from __future__ import annotations

import urllib.parse
import urllib.request
from html.parser import HTMLParser

from pydantic import BaseModel, Field

from flame_agents import Agent, ContextModel, History, Turn


class Page(BaseModel):
    """What the crawler extracted from one page."""

    url: str
    title: str
    links: int
    size: int


class CrawlContext(ContextModel):
    """Crawl state: where to go next, where we have been, and what we found."""

    start_url: str
    #: Only URLs starting with this prefix are followed (default: the start URL's folder).
    scope: str = ""
    frontier: list[str] = Field(default_factory=list)
    visited: History[str] = Field(default_factory=History)
    pages: History[Page] = Field(default_factory=History)
    errors: dict[str, str] = Field(default_factory=dict)


class Crawl(BaseModel):
    """Crawl up to ``max_pages`` more pages."""

    max_pages: int = Field(default=5, ge=1, le=100)


class CrawlReport(BaseModel):
    """What one invocation did, and how far the crawl is."""

    fetched: list[str]
    frontier: int
    visited: int
    done: bool


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.links.extend(v for k, v in attrs if k == "href" and v)
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False if tag == "title" else self._in_title

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


class Fetched(BaseModel):
    """One fetch, as recorded in the journal: the page's title, absolute links and size, or
    the error that stopped it."""

    title: str = ""
    links: list[str] = Field(default_factory=list)
    size: int = 0
    error: str | None = None


def fetch(url: str, *, timeout: float = 10.0) -> Fetched:
    """Title, absolute links and size of the HTML page at ``url`` (or the error)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = response.read()
    except OSError as exc:
        # Recorded like a page: a re-run of the turn sees the same error, not a second try.
        return Fetched(error=str(exc))
    parser = _Links()
    parser.feed(body.decode("utf-8", errors="replace"))
    links = [urllib.parse.urldefrag(urllib.parse.urljoin(url, h)).url for h in parser.links]
    return Fetched(title=parser.title.strip(), links=links, size=len(body))


class CrawlerAgent(Agent[CrawlContext]):
    """Breadth-first crawl of one site, a few pages per invocation."""

    def on_session_start(self, ctx: CrawlContext) -> None:
        if not ctx.scope:
            ctx.scope = ctx.start_url.rsplit("/", 1)[0] + "/"
        if not ctx.frontier and not len(ctx.visited):
            ctx.frontier = [ctx.start_url]

    def handle(self, req: Crawl, ctx: CrawlContext, turn: Turn) -> CrawlReport:
        # The visited set is rebuilt from the history: it is append-only, and a set of all
        # URLs ever queued keeps the frontier free of duplicates.
        seen = set(ctx.visited) | set(ctx.frontier)
        fetched: list[str] = []
        while ctx.frontier and len(fetched) < req.max_pages:
            url = ctx.frontier.pop(0)
            ctx.visited.append(url)
            fetched.append(url)
            # A re-run of this turn pops the same URLs from the same stored frontier, so it
            # finds each page it fetched before in the journal.
            page: Fetched = turn.step(f"fetch:{url}", fetch, url)
            if page.error is not None:
                ctx.errors[url] = page.error
                continue
            ctx.pages.append(Page(url=url, title=page.title, links=len(page.links), size=page.size))
            for link in page.links:
                if link.startswith(ctx.scope) and link not in seen:
                    seen.add(link)
                    ctx.frontier.append(link)
        return CrawlReport(
            fetched=fetched,
            frontier=len(ctx.frontier),
            visited=len(ctx.visited),
            done=not ctx.frontier,
        )
