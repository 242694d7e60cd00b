"""Debug mode: without FLAME_INSTANCE_ENDPOINT, run() serves the entrypoint over local HTTP."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import pytest

ECHO = Path(__file__).resolve().parents[2] / "examples" / "agents" / "echo"


@pytest.fixture(scope="module")
def echo_url() -> Iterator[str]:
    """The echo example started by hand (debug mode) on a free port; yields its URL."""
    env = {k: v for k, v in os.environ.items() if k != "FLAME_INSTANCE_ENDPOINT"}
    env["FLAME_AGENTS_DEBUG_PORT"] = "0"
    proc = subprocess.Popen(
        [sys.executable, "echo_service.py"],
        cwd=ECHO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"POST (http://127\.0\.0\.1:\d+/echo) ", line)
        assert match, (
            f"unexpected first line {line!r}; stderr: {proc.stderr and proc.stderr.read()}"
        )
        yield match.group(1)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def _post(url: str, body: bytes, content_type: str) -> bytes:
    req = urllib.request.Request(url, body, headers={"Content-Type": content_type})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return bytes(resp.read())


def test_startup_line_says_how_to_call(echo_url: str) -> None:
    """The one printed line names the entrypoint URL on 127.0.0.1 (checked by the fixture)."""
    assert echo_url.endswith("/echo")


def test_cloudpickle_and_json_calls_share_the_local_context(echo_url: str) -> None:
    """A cloudpickle POST returns the pickled reply, a JSON POST a JSON reply; counts go on."""
    sys.path.insert(0, str(ECHO))
    try:
        from echo_service import EchoRequest  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(ECHO))
    first = cloudpickle.loads(_post(echo_url, cloudpickle.dumps(EchoRequest("hi")), "x"))
    assert (first.text, first.count) == ("HI", 1)
    second = json.loads(_post(echo_url, b'{"text": "yo"}', "application/json"))
    assert second == {"text": "YO", "count": 2}


def test_errors_and_unknown_routes(echo_url: str) -> None:
    """A failing call answers 500 with the error text; another path answers 404."""
    with pytest.raises(urllib.error.HTTPError) as info:
        _post(echo_url, b'{"wrong": 1}', "application/json")
    assert info.value.code == 500
    assert "TypeError" in info.value.read().decode()
    info.value.close()
    with pytest.raises(urllib.error.HTTPError) as info:
        _post(echo_url.rsplit("/", 1)[0] + "/nope", b"", "x")
    assert info.value.code == 404
    info.value.close()
