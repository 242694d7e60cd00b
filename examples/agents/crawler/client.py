"""Crawl the local demo site with the crawler agent, a few pages per invocation.

Run after registering the app: ``flame-agents register -f crawler-agent.yaml``.
"""

from __future__ import annotations

from crawler_agent import Crawl, CrawlContext, CrawlerAgent
from demo_site import DemoSite

from flame_agents import AgentSession


def main() -> None:
    with DemoSite(pages=30) as site:
        ctx = CrawlContext(start_url=site.start_url)
        with AgentSession("crawler-agent", ctx=ctx, agent=CrawlerAgent) as s:
            while True:
                report = s.invoke(Crawl(max_pages=8))
                print(
                    f"fetched {len(report.fetched)}, visited {report.visited}, "
                    f"frontier {report.frontier}"
                )
                if report.done:
                    break
            pages = s.context().pages
            print(f"crawled {len(pages)} pages; first: {pages[0].title}, last: {pages[-1].title}")


if __name__ == "__main__":
    main()
