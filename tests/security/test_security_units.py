"""Pure rules of access control and input checks: token comparison, loopback detection, the
bind rule, session ids, and where clients find the token."""

from __future__ import annotations

from pathlib import Path

import pytest

from flame_agents import config
from flame_agents.errors import ConfigError
from flame_agents.runtime._auth import bind_error, is_loopback, load_tls, token_matches
from flame_agents.runtime.sessions._frontend import session_id_error


def test_token_matches_only_the_exact_bearer_value() -> None:
    """Only ``Bearer <token>`` (str or bytes, surrounding spaces ignored) matches."""
    assert token_matches("Bearer abc", "abc")
    assert token_matches(b"Bearer abc ", "abc")
    for header in (None, "", "abc", "Bearer ab", "Bearer abcd", "bearer abc", "Basic abc"):
        assert not token_matches(header, "abc")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("10.0.0.5", False),
        ("build-box", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    """Loopback addresses and localhost count as local; wildcards, LAN IPs and names do not."""
    assert is_loopback(host) is loopback


def test_bind_rule() -> None:
    """A public host needs a token or --insecure, and the refusal says both ways out."""
    assert bind_error("127.0.0.1", token=None, insecure=False) is None
    assert bind_error("0.0.0.0", token="t", insecure=False) is None
    assert bind_error("0.0.0.0", token=None, insecure=True) is None
    message = bind_error("0.0.0.0", token=None, insecure=False)
    assert message is not None and "FLAME_AGENTS_TOKEN" in message and "--insecure" in message


def test_load_tls_needs_both_files(tmp_path: Path) -> None:
    """TLS needs a certificate and a key; a missing file is a ConfigError, none is plain text."""
    assert load_tls(None, None) is None
    with pytest.raises(ConfigError, match="both"):
        load_tls(tmp_path / "cert.pem", None)
    with pytest.raises(ConfigError, match="cannot read"):
        load_tls(tmp_path / "cert.pem", tmp_path / "key.pem")


@pytest.mark.parametrize(
    "sid", ["", "../x", "a/b", "a\\b", "..", "a\x00b", "tab\there", "x" * 513, "é" * 257]
)
def test_session_id_refused(sid: str) -> None:
    """Empty, traversal, separators, control characters and ids over 512 bytes are refused."""
    assert session_id_error(sid) is not None


@pytest.mark.parametrize("sid", ["echo-app-a1B2c3", "x" * 512, "é" * 256, "a.b_c-d", "with space"])
def test_session_id_accepted(sid: str) -> None:
    """Ids clients generate, and any printable id up to 512 bytes without separators, pass."""
    assert session_id_error(sid) is None


def test_client_token_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients take the token from FLAME_AGENTS_TOKEN, else cluster.token of flame.yaml."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("FLAME_AGENTS_TOKEN", raising=False)
    assert config.auth_token() is None and config.auth_metadata() == ()
    (tmp_path / ".flame").mkdir()
    (tmp_path / ".flame" / "flame.yaml").write_text(
        "current-context: c\ncontexts:\n  - name: c\n    cluster: {token: from-yaml}\n"
    )
    assert config.auth_token() == "from-yaml"
    monkeypatch.setenv("FLAME_AGENTS_TOKEN", "from-env")
    assert config.auth_metadata() == (("authorization", "Bearer from-env"),)
