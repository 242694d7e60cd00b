"""flamepy 0.6.0's own cache API runs unmodified against our server (in subprocesses, since
flamepy reads its configuration once per process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flame_agents.runtime.cache.server import CacheServer

pytestmark = pytest.mark.conformance

_SCRIPT = Path(__file__).with_name("flamepy_cache_checks.py")


def _run(mode: str, tmp_path: Path, env: dict[str, str]) -> None:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FLAME_")}
    full_env.update(env, HOME=str(tmp_path))  # no ~/.flame/flame.yaml from the machine
    proc = subprocess.run(
        [sys.executable, str(_SCRIPT), mode, str(tmp_path)],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"flamepy {mode} checks passed" in proc.stdout


def test_flamepy_cache_api_against_our_server(server: CacheServer, tmp_path: Path) -> None:
    """put/get (cached), update, patch, deserializer, foreign patch, native table, numpy,
    upload/download, DELETE of a session and of ``app/*``: all as flamepy expects."""
    _run("remote", tmp_path, {"FLAME_CACHE_ENDPOINT": server.endpoint})


def test_flamepy_local_storage_mode_shares_the_store(server: CacheServer, tmp_path: Path) -> None:
    """A flamepy client writing into the server's directory (local storage) is served."""
    _run(
        "local-storage",
        tmp_path,
        {"FLAME_CACHE_ENDPOINT": server.endpoint, "FLAME_CACHE_STORAGE": str(server.store.root)},
    )
