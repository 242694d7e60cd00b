"""A small local web site to crawl: ``pages`` linked pages served by http.server in a thread.

It counts the requests for each page (``served``), so a crawl can be checked for pages fetched
more than once.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType


def page_html(index: int, pages: int) -> bytes:
    """Page ``index`` links to the next three pages (wrapping) and back to the index."""
    links = "".join(
        f'<li><a href="page{(index + k) % pages}.html">page {(index + k) % pages}</a></li>'
        for k in (1, 2, 3)
    )
    return (
        f"<html><head><title>Page {index}</title></head><body><h1>Page {index}</h1>"
        f'<ul>{links}</ul><a href="page0.html#top">home</a>'
        '<a href="https://example.com/outside">outside the site</a></body></html>'
    ).encode()


class DemoSite:
    """``with DemoSite(pages=30) as site: site.start_url`` serves the site on 127.0.0.1."""

    def __init__(self, *, pages: int = 30) -> None:
        self.pages = pages
        self.served: Counter[str] = Counter()
        """Requests received per page name (``page3.html``), answered or not."""
        self.on_request: Callable[[str], None] | None = None
        """Called with the page name before it is answered (a test may hold a request here)."""
        self._lock = threading.Lock()
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                name = self.path.lstrip("/").split("?")[0]
                if not (name.startswith("page") and name.endswith(".html")):
                    self.send_error(404)
                    return
                try:
                    index = int(name[4:-5])
                except ValueError:
                    self.send_error(404)
                    return
                if not 0 <= index < site.pages:
                    self.send_error(404)
                    return
                with site._lock:
                    site.served[name] += 1
                if site.on_request is not None:
                    site.on_request(name)
                body = page_html(index, site.pages)
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep demo output readable

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def start_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/page0.html"

    def __enter__(self) -> DemoSite:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
