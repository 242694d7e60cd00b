"""Built-in applications across restarts: a user's override or unregistration is kept."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from flame_agents import core
from flame_agents._wire import types_pb2
from flame_agents.runtime.sessions._apps import builtin_applications, with_defaults
from flame_agents.runtime.sessions._builtins import RECORD_NAME, reconcile_builtins
from flame_agents.runtime.sessions._store import Store
from flame_agents.testing import LocalRuntime


def _spec(command: str) -> types_pb2.ApplicationSpec:
    return with_defaults(types_pb2.ApplicationSpec(command=command, arguments=["-m", "x"]))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    db = Store(tmp_path / "flame.db")
    try:
        yield db
    finally:
        db.close()


def _command(store: Store, name: str) -> str | None:
    row = store.get_app(name)
    return None if row is None else row.spec.command


def test_first_start_registers_every_builtin(store: Store, tmp_path: Path) -> None:
    """A new home gets every built-in, recorded as the runtime's."""
    owners = reconcile_builtins(store, tmp_path, {"a": _spec("/a"), "b": _spec("/b")})
    assert owners == {"a": "runtime", "b": "runtime"}
    assert _command(store, "a") == "/a" and _command(store, "b") == "/b"
    record = json.loads((tmp_path / RECORD_NAME).read_text())
    assert set(record["apps"]) == {"a", "b"}


def test_runtime_owned_builtin_is_refreshed(store: Store, tmp_path: Path) -> None:
    """A built-in as the runtime wrote it takes the current spec at the next start (a new
    interpreter path, a newer flame-agents)."""
    reconcile_builtins(store, tmp_path, {"a": _spec("/old/python")})
    owners = reconcile_builtins(store, tmp_path, {"a": _spec("/new/python")})
    assert owners == {"a": "runtime"}
    assert _command(store, "a") == "/new/python"


def test_user_override_survives_restarts(store: Store, tmp_path: Path) -> None:
    """A built-in the user updated keeps the user's spec at every later start."""
    reconcile_builtins(store, tmp_path, {"a": _spec("/ours")})
    store.put_app("a", _spec("/mine"))
    for shipped in ("/ours", "/ours-v2"):
        assert reconcile_builtins(store, tmp_path, {"a": _spec(shipped)}) == {"a": "user"}
        assert _command(store, "a") == "/mine"


def test_unregistered_builtin_stays_unregistered(store: Store, tmp_path: Path) -> None:
    """A built-in the user unregistered is not registered again; registered again by the
    user, it is theirs."""
    reconcile_builtins(store, tmp_path, {"a": _spec("/ours")})
    store.delete_app("a")
    for _ in range(2):
        assert reconcile_builtins(store, tmp_path, {"a": _spec("/ours")}) == {"a": "removed"}
        assert store.get_app("a") is None
    store.put_app("a", _spec("/mine"))
    assert reconcile_builtins(store, tmp_path, {"a": _spec("/ours")}) == {"a": "user"}
    assert _command(store, "a") == "/mine"


def test_new_builtin_name_taken_by_user_is_kept(store: Store, tmp_path: Path) -> None:
    """A built-in added by a newer version is registered, unless the user has an application
    of that name already."""
    reconcile_builtins(store, tmp_path, {"a": _spec("/a")})
    store.put_app("taken", _spec("/mine"))
    owners = reconcile_builtins(
        store, tmp_path, {"a": _spec("/a"), "taken": _spec("/ours"), "new": _spec("/new")}
    )
    assert owners == {"a": "runtime", "taken": "user", "new": "runtime"}
    assert _command(store, "taken") == "/mine" and _command(store, "new") == "/new"


@pytest.mark.parametrize("content", [None, "not json{"], ids=["deleted", "corrupt"])
def test_without_a_record_builtins_are_written_as_shipped(
    store: Store, tmp_path: Path, content: str | None
) -> None:
    """Deleting (or corrupting) the record restores every built-in as shipped."""
    reconcile_builtins(store, tmp_path, {"a": _spec("/ours"), "b": _spec("/b")})
    store.put_app("a", _spec("/mine"))
    store.delete_app("b")
    reconcile_builtins(store, tmp_path, {"a": _spec("/ours"), "b": _spec("/b")})
    record = tmp_path / RECORD_NAME
    if content is None:
        record.unlink()
    else:
        record.write_text(content)
    owners = reconcile_builtins(store, tmp_path, {"a": _spec("/ours"), "b": _spec("/b")})
    assert owners == {"a": "runtime", "b": "runtime"}
    assert _command(store, "a") == "/ours" and _command(store, "b") == "/b"


@pytest.mark.e2e
def test_override_and_unregistration_survive_a_runtime_restart() -> None:
    """On a real runtime, an updated flmexec and an unregistered flmping stay so after a
    restart; the shipped specs are the ones registered at the first start."""
    shipped = builtin_applications()
    with LocalRuntime(set_env=False) as rt:
        with core.connect(rt.endpoint) as conn:
            first = conn.get_application("flmexec")
            assert first is not None and first.spec.command == shipped["flmexec"].command
            assert first.spec.arguments == tuple(shipped["flmexec"].arguments)
            conn.update_application(
                "flmexec", {"command": "/bin/cat", "description": "my own script runner"}
            )
            conn.unregister_application("flmping")
        rt.restart()
        with core.connect(rt.endpoint) as conn:
            app = conn.get_application("flmexec")
            assert app is not None and app.spec.command == "/bin/cat"
            assert app.spec.description == "my own script runner"
            assert conn.get_application("flmping") is None
            conn.unregister_application("flmexec")
            conn.register_application("flmping", {"command": "/bin/true"})
        rt.restart(kill=True)
        with core.connect(rt.endpoint) as conn:
            assert conn.get_application("flmexec") is None
            ping = conn.get_application("flmping")
            assert ping is not None and ping.spec.command == "/bin/true"
