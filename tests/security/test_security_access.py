"""Access control: loopback by default, private files, the shared token on both servers."""

from __future__ import annotations

import ipaddress
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import psutil
import pyarrow.flight as flight
import pytest
from security_support import (
    cache_healthy,
    flight_options,
    frontend_healthy,
    raw_frontend,
    token_env,
)

from flame_agents import cache, core
from flame_agents._wire import frontend_pb2 as fpb
from flame_agents.errors import ConfigError
from flame_agents.runtime._home import HomeLayout
from flame_agents.testing import LocalRuntime

TOKEN = "s3cret-token-for-tests"


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def guarded() -> Iterator[LocalRuntime]:
    """A runtime started with a token from the environment (which is then restored)."""
    rt = LocalRuntime(set_env=False)
    try:
        with token_env(TOKEN):
            rt.start()
        yield rt
    finally:
        rt.close()


def test_binds_loopback_by_default(runtime: LocalRuntime) -> None:
    """Both servers of a default runtime listen on 127.0.0.1 only."""
    conns = psutil.Process(runtime.pid).net_connections(kind="inet")
    listening = [c.laddr for c in conns if c.status == psutil.CONN_LISTEN]
    assert listening, "the runtime listens on no TCP port"
    ports = {addr.port for addr in listening}
    assert {_port(runtime.endpoint), _port(runtime.cache_endpoint)} <= ports
    for addr in listening:
        ip = ipaddress.ip_address(addr.ip)
        ip = getattr(ip, "ipv4_mapped", None) or ip  # an IPv6 socket may carry ::ffff:127.0.0.1
        assert ip.is_loopback, f"listening on {addr.ip}:{addr.port}"
    assert runtime.endpoint.startswith("http://127.0.0.1:")
    assert runtime.cache_endpoint.startswith("grpc://127.0.0.1:")


def test_home_and_files_are_private(runtime: LocalRuntime) -> None:
    """The home is 0700 and the database, cache files, logs and instance sockets have no
    group/other permissions."""
    assert runtime.home is not None
    ref = cache.put_raw("sec-app/sec-session", b"private bytes")
    with core.create_session("flmping") as session:
        assert session.invoke(b"ping") == b"ping"
        sockets = list(HomeLayout(runtime.home).sockets.glob("*.sock"))
        assert sockets, "no instance socket while a session is served"
        for sock in sockets:
            assert stat.S_ISSOCK(sock.stat().st_mode)
            assert _mode(sock) & 0o077 == 0, f"{sock} is {oct(_mode(sock))}"
    assert _mode(runtime.home) == 0o700
    files = [p for p in runtime.home.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert "flame.db" in names
    assert any(p.is_relative_to(runtime.home / "cache") for p in files), ref
    for path in files:
        assert _mode(path) & 0o077 == 0, f"{path} is {oct(_mode(path))}"
    for folder in (p for p in runtime.home.rglob("*") if p.is_dir()):
        assert _mode(folder) & 0o077 == 0, f"{folder} is {oct(_mode(folder))}"


def test_frontend_refuses_calls_without_token(guarded: LocalRuntime) -> None:
    """A Frontend call with no token gets UNAUTHENTICATED and a message naming the variable."""
    channel, stub = raw_frontend(guarded.endpoint)
    with channel, pytest.raises(grpc.RpcError) as info:
        stub.ListApplication(fpb.ListApplicationRequest(), timeout=30)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "FLAME_AGENTS_TOKEN" in (info.value.details() or "")


def test_frontend_refuses_streams_and_wrong_token(guarded: LocalRuntime) -> None:
    """A streaming call and a call with a wrong token are refused with UNAUTHENTICATED."""
    channel, stub = raw_frontend(guarded.endpoint, token="wrong")
    with channel:
        with pytest.raises(grpc.RpcError) as unary:
            stub.GetSession(fpb.GetSessionRequest(session_id="x"), timeout=30)
        with pytest.raises(grpc.RpcError) as stream:
            list(stub.ListTask(fpb.ListTaskRequest(session_id="x"), timeout=30))
    assert unary.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert stream.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_frontend_accepts_the_token(guarded: LocalRuntime) -> None:
    """With the token, raw calls and the core client's sessions and tasks work."""
    channel, stub = raw_frontend(guarded.endpoint, token=TOKEN)
    with channel:
        assert frontend_healthy(stub)
    with (
        token_env(TOKEN),
        core.connect(guarded.endpoint) as conn,
        conn.create_session("flmping") as session,
    ):
        assert session.invoke(b"through the token") == b"through the token"


def test_cache_refuses_calls_without_token(guarded: LocalRuntime) -> None:
    """Flight calls without (or with a wrong) token fail UNAUTHENTICATED with a clear message."""
    client = flight.FlightClient(guarded.cache_endpoint)
    try:
        for token in (None, "wrong"):
            with pytest.raises(flight.FlightUnauthenticatedError, match="FLAME_AGENTS_TOKEN"):
                client.do_get(flight.Ticket(b"a/b/c:0"), options=flight_options(token)).read_all()
            with pytest.raises(flight.FlightUnauthenticatedError):
                list(client.list_flights(options=flight_options(token)))
        assert cache_healthy(client, TOKEN)
    finally:
        client.close()


def test_cache_client_sends_the_token(guarded: LocalRuntime) -> None:
    """The cache client sends the token from the environment; without it the error is clear."""
    with token_env(TOKEN):
        cache.reset_clients()
        ref = cache.put_raw("sec-app/tok", b"payload", endpoint=guarded.cache_endpoint)
        assert cache.fetch_raw(ref).base == b"payload"
    cache.reset_clients()
    saved = os.environ.pop("FLAME_AGENTS_TOKEN", None)
    try:
        with pytest.raises(ConfigError, match="requires a token"):
            cache.put_raw("sec-app/tok", b"payload", endpoint=guarded.cache_endpoint)
    finally:
        if saved is not None:
            os.environ["FLAME_AGENTS_TOKEN"] = saved
        cache.reset_clients()


def test_refuses_public_host_without_token(tmp_path: Path) -> None:
    """A non-loopback --host without a token exits 2 before creating anything, saying why."""
    home = tmp_path / "home"
    proc = subprocess.run(
        [sys.executable, "-m", "flame_agents.runtime", "--home", str(home), "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "FLAME_AGENTS_TOKEN"},
    )
    assert proc.returncode == 2
    assert "without a token" in proc.stderr and "--insecure" in proc.stderr
    assert not home.exists()


def test_public_host_with_token_or_insecure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--host 0.0.0.0 starts with a token (--token-file) or with --insecure, advertising
    loopback; the token-file runtime still refuses calls without the token."""
    monkeypatch.delenv("FLAME_AGENTS_TOKEN", raising=False)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    cases = {"token": ["--token-file", str(token_file)], "insecure": ["--insecure"]}
    for name, args in cases.items():
        extra = [*args, "--host", "0.0.0.0"]
        with LocalRuntime(tmp_path / f"home-{name}", set_env=False, extra_args=extra) as rt:
            conns = psutil.Process(rt.pid).net_connections(kind="inet")
            ips = {c.laddr.ip for c in conns if c.status == psutil.CONN_LISTEN}
            assert ips and ips <= {"0.0.0.0", "::"}  # grpc may bind 0.0.0.0 dual-stack (::)
            assert rt.endpoint.startswith("http://127.0.0.1:")
            channel, stub = raw_frontend(rt.endpoint)
            with channel:
                if name == "token":
                    with pytest.raises(grpc.RpcError) as info:
                        frontend_healthy(stub)
                    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
                else:
                    assert frontend_healthy(stub)


def test_seed_example_runs_with_a_token(guarded: LocalRuntime) -> None:
    """The seed echo example works against a token-protected runtime: the client sends the
    token, and the service instance (a cache client for its context) inherits it."""
    echo = Path(__file__).resolve().parents[2] / "examples" / "agents" / "echo"
    env = {**os.environ, **guarded.env(), "FLAME_AGENTS_TOKEN": TOKEN}
    spec = {
        "command": sys.executable,
        "arguments": [str(echo / "echo_service.py")],
        "working_directory": str(echo),
        "delay_release": 1,
    }
    with token_env(TOKEN), core.connect(guarded.endpoint) as conn:
        conn.register_application("sec-echo", spec)
    client = (echo / "client.py").read_text().replace('"echo-app"', '"sec-echo"')
    proc = subprocess.run(
        [sys.executable, "-c", client],
        cwd=echo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[:2] == ["HELLO", "1"]
    env.pop("FLAME_AGENTS_TOKEN")
    refused = subprocess.run(
        [sys.executable, "-c", client],
        cwd=echo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode != 0
    assert "FLAME_AGENTS_TOKEN" in refused.stderr


def test_local_runtime_with_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """LocalRuntime(token=...) protects its runtime and exports the token for the body only."""
    monkeypatch.delenv("FLAME_AGENTS_TOKEN", raising=False)
    with LocalRuntime(token="lr-token") as rt:
        assert os.environ["FLAME_AGENTS_TOKEN"] == "lr-token"
        with core.create_session("flmping") as session:
            assert session.invoke(b"x") == b"x"
        channel, stub = raw_frontend(rt.endpoint)
        with channel, pytest.raises(grpc.RpcError) as info:
            frontend_healthy(stub)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "FLAME_AGENTS_TOKEN" not in os.environ


def test_flamepy_is_refused_by_a_token_runtime(guarded: LocalRuntime) -> None:
    """flamepy sends no token, so a token-protected runtime refuses it (see docs/security.md)."""
    script = "import flamepy\nflamepy.list_applications()\n"
    env = {**os.environ, **guarded.env(), "HOME": str(guarded.home)}
    env.pop("FLAME_AGENTS_TOKEN", None)
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode != 0
    assert "UNAUTHENTICATED" in proc.stderr or "requires a token" in proc.stderr
