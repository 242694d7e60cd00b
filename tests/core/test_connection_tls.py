"""TLS connections: an https:// endpoint is dialled with TLS and verified against ``ca_file``."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_frontend import start_fake_tls

from flame_agents.core import Connection
from flame_agents.errors import ConfigError, RuntimeUnavailableError

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


@pytest.fixture
def tls_endpoint(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A fake Frontend behind a self-signed localhost certificate: (endpoint, cert path)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    fake, server, endpoint = start_fake_tls(cert.read_bytes(), key.read_bytes())
    try:
        yield endpoint, cert
    finally:
        server.stop(grace=None).wait(5)
        fake.stop()


def test_tls_with_ca_file(tls_endpoint: tuple[str, Path]) -> None:
    """With the server's CA as ca_file, calls over https:// succeed."""
    endpoint, cert = tls_endpoint
    with Connection(endpoint, ca_file=str(cert), rpc_timeout=10) as conn:
        assert conn.list_sessions() == []


def test_tls_rejects_untrusted_server(tls_endpoint: tuple[str, Path]) -> None:
    """Without the CA the self-signed server is not trusted and the call fails."""
    endpoint, _ = tls_endpoint
    with Connection(endpoint, rpc_timeout=10) as conn, pytest.raises(RuntimeUnavailableError):
        conn.list_sessions()


def test_unreadable_ca_file_is_a_config_error(tmp_path: Path) -> None:
    """A ca_file that cannot be read fails at connect time with ConfigError naming it."""
    missing = tmp_path / "nope.pem"
    with pytest.raises(ConfigError, match=r"nope\.pem"):
        Connection("https://localhost:1", ca_file=str(missing))
