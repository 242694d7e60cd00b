"""Debug mode of ``FlameInstance.run()``: serve the entrypoint over local HTTP, no Flame needed.

Started when ``FLAME_INSTANCE_ENDPOINT`` is unset, i.e. when a developer runs the service file
by hand. ``POST /<entrypoint>`` with a cloudpickle body returns the cloudpickle reply; a JSON
body (``Content-Type: application/json``) returns JSON, building the request dataclass or
pydantic model from the entrypoint's annotation. Requests are served one at a time, like tasks.
It binds 127.0.0.1 only: cloudpickle bodies execute code, so it must never face a network.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import FrameType
from typing import IO, Any

import cloudpickle

from flame_agents.service._entrypoint import Entrypoint

__all__ = ["serve_debug"]


def _from_json(value: Any, input_type: Any) -> Any:
    if isinstance(value, dict) and input_type is not None:
        if isinstance(input_type, type) and dataclasses.is_dataclass(input_type):
            return input_type(**value)
        validate = getattr(input_type, "model_validate", None)  # pydantic v2 models
        if callable(validate):
            return validate(value)
    return value


def _to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def _make_handler(entry: Entrypoint, call: Callable[[Any], Any]) -> type[BaseHTTPRequestHandler]:
    route = f"/{entry.name}"

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass  # the one startup line is the interface; per-request noise is not

        def _reply(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            text = f"POST {route} with a cloudpickle or JSON body\n"
            self._reply(200, text.encode(), "text/plain; charset=utf-8")

        def do_POST(self) -> None:
            if self.path.split("?", 1)[0] != route:
                self._reply(404, f"no such entrypoint; POST {route}\n".encode(), "text/plain")
                return
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            is_json = "json" in (self.headers.get("Content-Type") or "")
            try:
                if is_json:
                    value = _from_json(json.loads(body), entry.input_type) if body else None
                    out = json.dumps(call(value), default=_to_jsonable).encode()
                else:
                    out = cloudpickle.dumps(call(cloudpickle.loads(body) if body else None))
            except Exception as exc:  # shown to the developer; the server keeps going
                self._reply(500, f"{type(exc).__name__}: {exc}\n".encode(), "text/plain")
                return
            self._reply(200, out, "application/json" if is_json else "application/octet-stream")

    return Handler


def serve_debug(
    entry: Entrypoint,
    call: Callable[[Any], Any],
    *,
    host: str = "127.0.0.1",
    port: int = 5050,
    out: IO[str],
) -> None:
    """Serve ``call`` (the entrypoint wrapper) until SIGTERM/SIGINT; print how to call it once.

    Port 0 picks a free port; the printed line carries the real one.
    """
    server = HTTPServer((host, port), _make_handler(entry, call))
    url = f"http://{host}:{server.server_address[1]}/{entry.name}"
    print(
        f"FlameInstance debug mode (FLAME_INSTANCE_ENDPOINT is not set): POST {url} ; "
        f'python -c "import cloudpickle,urllib.request as u; print(cloudpickle.loads('
        f"u.urlopen(u.Request('{url}', cloudpickle.dumps(REQUEST))).read()))\" ; or "
        f"curl -s -H 'Content-Type: application/json' -d '{{...}}' {url}",
        file=out,
        flush=True,
    )
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    thread = threading.Thread(target=server.serve_forever, name="flame-debug-http", daemon=True)
    thread.start()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.shutdown()
        server.server_close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
