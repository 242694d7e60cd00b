"""Endpoint resolution (argument > environment > flame.yaml > nothing) and the home folder files."""

from __future__ import annotations

import fcntl
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from flame_agents.config import (
    DEFAULT_CACHE_ENDPOINT,
    RuntimeInfo,
    agents_home,
    flame_yaml_path,
    grpc_target,
    read_runtime_info,
    resolve_endpoints,
    runtime_lock_path,
    write_runtime_info,
)
from flame_agents.errors import ConfigError

_ENV = ("FLAME_ENDPOINT", "FLAME_CACHE_ENDPOINT", "FLAME_CA_FILE", "FLAME_AGENTS_HOME")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary HOME with no flame.yaml and no FLAME_* variables."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for key in _ENV:
        monkeypatch.delenv(key, raising=False)
    return tmp_path


def write_yaml(home: Path, text: str) -> Path:
    """Write ``~/.flame/flame.yaml`` under the temp HOME."""
    path = home / ".flame" / "flame.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


LOCAL_YAML = """
current-context: local
contexts:
  - name: other
    cluster: {endpoint: "http://10.0.0.1:8080"}
  - name: local
    cluster:
      endpoint: "http://127.0.0.1:18080"
      tls: {ca_file: /etc/cluster-ca.pem}
    cache:
      endpoint: "grpc://127.0.0.1:19090"
"""


def test_nothing_configured_resolves_to_none(home: Path) -> None:
    """Without argument, environment or flame.yaml there is nothing to connect to (embedded)."""
    assert resolve_endpoints() is None


def test_flame_yaml_current_context_is_used(home: Path) -> None:
    """The current context's cluster and cache endpoints are read from $HOME/.flame/flame.yaml."""
    write_yaml(home, LOCAL_YAML)
    assert flame_yaml_path() == home / ".flame" / "flame.yaml"
    eps = resolve_endpoints()
    assert eps is not None
    assert (eps.endpoint, eps.cache_endpoint, eps.source) == (
        "http://127.0.0.1:18080",
        "grpc://127.0.0.1:19090",
        "flame.yaml",
    )


def test_environment_overrides_flame_yaml(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """FLAME_ENDPOINT / FLAME_CACHE_ENDPOINT win over the file."""
    write_yaml(home, LOCAL_YAML)
    monkeypatch.setenv("FLAME_ENDPOINT", "http://127.0.0.1:7000")
    monkeypatch.setenv("FLAME_CACHE_ENDPOINT", "grpc://127.0.0.1:7001")
    eps = resolve_endpoints()
    assert eps is not None
    assert (eps.endpoint, eps.cache_endpoint, eps.source) == (
        "http://127.0.0.1:7000",
        "grpc://127.0.0.1:7001",
        "environment",
    )


def test_arguments_override_environment(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Explicit arguments win over the environment and the file."""
    write_yaml(home, LOCAL_YAML)
    monkeypatch.setenv("FLAME_ENDPOINT", "http://127.0.0.1:7000")
    monkeypatch.setenv("FLAME_CACHE_ENDPOINT", "grpc://127.0.0.1:7001")
    eps = resolve_endpoints("http://127.0.0.1:6000", cache_endpoint="grpc://127.0.0.1:6001")
    assert eps is not None
    assert (eps.endpoint, eps.cache_endpoint, eps.source) == (
        "http://127.0.0.1:6000",
        "grpc://127.0.0.1:6001",
        "argument",
    )


def test_frontend_alone_gets_default_cache(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A configured Frontend without a cache gets Flame's default cache endpoint."""
    monkeypatch.setenv("FLAME_ENDPOINT", "http://127.0.0.1:7000")
    eps = resolve_endpoints()
    assert eps is not None and eps.cache_endpoint == DEFAULT_CACHE_ENDPOINT


def test_empty_environment_value_is_ignored(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty FLAME_ENDPOINT counts as unset, so the file (or nothing) applies."""
    monkeypatch.setenv("FLAME_ENDPOINT", "")
    assert resolve_endpoints() is None


def test_ca_file_from_flame_yaml_wins_over_environment(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Like flamepy, FLAME_CA_FILE only fills in a CA the file does not set."""
    write_yaml(home, LOCAL_YAML)
    monkeypatch.setenv("FLAME_CA_FILE", "/env/ca.pem")
    eps = resolve_endpoints()
    assert eps is not None and eps.ca_file == "/etc/cluster-ca.pem"


def test_ca_file_from_environment_when_file_has_none(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a cluster CA in the file, FLAME_CA_FILE is used."""
    monkeypatch.setenv("FLAME_ENDPOINT", "https://flame.example:8080")
    monkeypatch.setenv("FLAME_CA_FILE", "/env/ca.pem")
    eps = resolve_endpoints()
    assert eps is not None and eps.ca_file == "/env/ca.pem"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("contexts: []\n", "'current-context' is required"),
        ("", "'current-context' is required"),
        ("current-context: prod\ncontexts:\n  - name: local\n", "'prod' is not listed"),
        ("current-context: prod\n", "'prod' is not listed"),
        ("- a\n- b\n", "mapping"),
        ("current-context: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_flame_yaml_is_a_config_error(home: Path, text: str, fragment: str) -> None:
    """A flame.yaml without a valid current-context fails like flamepy, naming the file."""
    path = write_yaml(home, text)
    with pytest.raises(ConfigError, match=fragment) as info:
        resolve_endpoints()
    assert str(path) in str(info.value)


def test_bad_flame_yaml_fails_even_with_environment(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As in flamepy, an existing but broken flame.yaml is an error even when env is set."""
    write_yaml(home, "contexts: []\n")
    monkeypatch.setenv("FLAME_ENDPOINT", "http://127.0.0.1:7000")
    with pytest.raises(ConfigError):
        resolve_endpoints()


def test_invalid_endpoint_fails_at_resolution(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A scheme-less endpoint (which flamepy cannot use either) is rejected with a hint."""
    monkeypatch.setenv("FLAME_ENDPOINT", "127.0.0.1:8080")
    with pytest.raises(ConfigError, match="needs a scheme"):
        resolve_endpoints()


@pytest.mark.parametrize(
    ("endpoint", "target", "tls"),
    [
        ("http://127.0.0.1:18080", "127.0.0.1:18080", False),
        ("grpc://localhost:9", "localhost:9", False),
        ("http://127.0.0.1", "127.0.0.1:8080", False),
        ("https://flame.example:443", "flame.example:443", True),
        ("grpcs://flame.example:9090", "flame.example:9090", True),
        ("HTTP://127.0.0.1:1", "127.0.0.1:1", False),
        ("http://[::1]:8080", "[::1]:8080", False),
    ],
)
def test_grpc_target(endpoint: str, target: str, tls: bool) -> None:
    """Endpoint URLs become host:port dial targets; https/grpcs turn TLS on; port 8080 default."""
    parsed = grpc_target(endpoint)
    assert (parsed.target, parsed.tls) == (target, tls)


@pytest.mark.parametrize(
    "endpoint", ["", "127.0.0.1:8080", "localhost:8080", "unix:///tmp/x.sock", "http://h:99999"]
)
def test_grpc_target_rejects(endpoint: str) -> None:
    """Empty, scheme-less, unix and out-of-range-port endpoints are ConfigErrors."""
    with pytest.raises(ConfigError):
        grpc_target(endpoint)


def test_agents_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The runtime home is $FLAME_AGENTS_HOME (with ~ expanded) or ~/.flame-agents."""
    assert agents_home() == home / ".flame-agents"
    monkeypatch.setenv("FLAME_AGENTS_HOME", "~/rt")
    assert agents_home() == home / "rt"


def test_runtime_info_round_trip(tmp_path: Path) -> None:
    """runtime.json is written owner-only and read back while its process holds the home lock,
    and reads as no runtime once the lock is released (the process may still exist)."""
    info = RuntimeInfo(
        endpoint="http://127.0.0.1:1",
        cache_endpoint="grpc://127.0.0.1:2",
        home=str(tmp_path),
        pid=os.getpid(),
        former_cache_endpoints=("grpc://127.0.0.1:3",),
    )
    write_runtime_info(info)
    path = tmp_path / "runtime.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    fd = os.open(runtime_lock_path(tmp_path), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert read_runtime_info(tmp_path) == info
        fcntl.flock(fd, fcntl.LOCK_UN)
        assert read_runtime_info(tmp_path) is None
    finally:
        os.close(fd)


def test_runtime_info_of_dead_process_is_ignored(tmp_path: Path) -> None:
    """A runtime.json left by a process that is gone reads as no runtime."""
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead_pid = int(proc.stdout)
    write_runtime_info(
        RuntimeInfo(
            endpoint="http://x:1", cache_endpoint="grpc://x:2", home=str(tmp_path), pid=dead_pid
        )
    )
    assert read_runtime_info(tmp_path) is None


def test_runtime_info_missing_or_corrupt(tmp_path: Path) -> None:
    """No file, or a file that is not our JSON, reads as no runtime."""
    assert read_runtime_info(tmp_path) is None
    (tmp_path / "runtime.json").write_text("{not json")
    assert read_runtime_info(tmp_path) is None
    (tmp_path / "runtime.json").write_text('{"endpoint": "x"}')
    assert read_runtime_info(tmp_path) is None
