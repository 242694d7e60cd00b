"""TLS: with --tls-cert/--tls-key both servers speak TLS and advertise https:// and grpcs://;
clients trusting the certificate (FLAME_CA_FILE) work, plain-text clients do not."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pyarrow.flight as flight
import pytest
from security_support import token_env

from flame_agents import cache, core
from flame_agents._wire import frontend_pb2 as fpb
from flame_agents._wire import frontend_pb2_grpc
from flame_agents.config import grpc_target
from flame_agents.testing import LocalRuntime

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")

TOKEN = "tls-and-token"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest.fixture(scope="module")
def tls_runtime(
    certificate: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalRuntime]:
    """A runtime with TLS and a token on both servers."""
    cert, key = certificate
    extra = ["--tls-cert", str(cert), "--tls-key", str(key)]
    rt = LocalRuntime(tmp_path_factory.mktemp("tls-home"), set_env=False, extra_args=extra)
    try:
        with token_env(TOKEN):
            rt.start()
        yield rt
    finally:
        rt.close()


def test_endpoints_are_tls(tls_runtime: LocalRuntime) -> None:
    """The runtime advertises https:// for the Frontend and grpcs:// for the cache."""
    assert tls_runtime.endpoint.startswith("https://127.0.0.1:")
    assert tls_runtime.cache_endpoint.startswith("grpcs://127.0.0.1:")


def test_clients_work_over_tls(
    tls_runtime: LocalRuntime, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The core and cache clients trusting the certificate run a task and store an object."""
    monkeypatch.setenv("FLAME_CA_FILE", str(certificate[0]))
    monkeypatch.setenv("FLAME_AGENTS_TOKEN", TOKEN)
    cache.reset_clients()
    try:
        with (
            core.connect(tls_runtime.endpoint) as conn,
            conn.create_session("flmping") as session,
        ):
            assert session.invoke(b"over tls") == b"over tls"
        ref = cache.put_raw("tls-app/s", b"secret", endpoint=tls_runtime.cache_endpoint)
        assert ref.endpoint.startswith("grpcs://")
        assert cache.fetch_raw(ref).base == b"secret"
    finally:
        cache.reset_clients()


def test_plaintext_clients_fail(tls_runtime: LocalRuntime) -> None:
    """A plain-text gRPC or Flight client cannot talk to the TLS servers."""
    target = grpc_target(tls_runtime.endpoint).target
    with grpc.insecure_channel(target) as channel:
        stub = frontend_pb2_grpc.FrontendStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.ListApplication(fpb.ListApplicationRequest(), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    plain = tls_runtime.cache_endpoint.replace("grpcs://", "grpc://")
    client = flight.FlightClient(plain)
    try:
        with pytest.raises(flight.FlightUnavailableError):
            list(client.list_actions(options=flight.FlightCallOptions(timeout=10)))
    finally:
        client.close()
