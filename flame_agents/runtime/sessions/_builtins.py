"""Built-in applications across restarts: register what is missing, keep what the user changed.

Flame's session manager registers its built-in applications at every start-up, and a name that
exists already is left as it is: an override made with ``update`` survives a restart, but an
unregistered built-in comes back. The runtime goes one step further, so that neither a user's
override nor their unregistration is undone by the next start: it remembers, in
``<home>/builtin-apps.json``, who owns each built-in name.

* ``runtime``: the spec is the one this runtime wrote (its SHA-256 is kept). At start-up it is
  rewritten with the current built-in spec, so a new interpreter path or a newer flame-agents
  takes effect.
* ``user``: the stored spec differs from what the runtime wrote (``update``, or unregister then
  register): left as it is.
* ``removed``: the application was unregistered: not registered again.

A built-in name not in the record yet (a new home, or a built-in added by a newer flame-agents)
is registered, unless an application of that name exists already (then it is the user's).
Without a record (a home from before the record existed, or the file deleted on purpose),
every built-in is written as shipped: deleting the file while the runtime is stopped is how to
get the built-ins back.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from flame_agents._logging import get_logger
from flame_agents._wire import types_pb2

__all__ = ["RECORD_NAME", "AppStore", "reconcile_builtins"]

RECORD_NAME = "builtin-apps.json"
"""File in the runtime home that records who owns each built-in application."""

_RUNTIME, _USER, _REMOVED = "runtime", "user", "removed"

_log = get_logger(__name__)


class _Row(Protocol):
    @property
    def spec(self) -> types_pb2.ApplicationSpec: ...


class AppStore(Protocol):
    """The part of the runtime's store this module uses."""

    def get_app(self, name: str) -> _Row | None: ...

    def put_app(self, name: str, spec: types_pb2.ApplicationSpec) -> None: ...


def _digest(spec: types_pb2.ApplicationSpec) -> str:
    return hashlib.sha256(spec.SerializeToString(deterministic=True)).hexdigest()


def _load(path: Path) -> dict[str, dict[str, str]] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        _log.warning(
            "unreadable record of built-in applications; writing every built-in as shipped",
            path=str(path),
            error=str(exc),
        )
        return None
    apps = doc.get("apps") if isinstance(doc, dict) else None
    if not isinstance(apps, dict):
        return None
    return {
        name: {k: v for k, v in entry.items() if isinstance(v, str)}
        for name, entry in apps.items()
        if isinstance(name, str) and isinstance(entry, dict)
    }


def _save(path: Path, apps: Mapping[str, Mapping[str, str]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"version": 1, "apps": apps}, indent=2, sort_keys=True) + "\n")
    try:
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def reconcile_builtins(
    store: AppStore, home: Path, builtins: Mapping[str, types_pb2.ApplicationSpec]
) -> dict[str, str]:
    """Register or refresh the built-in applications ``builtins`` in ``store`` at start-up.

    Returns each built-in's owner after the start (``runtime``, ``user`` or ``removed``); the
    record in ``home`` is updated to match.
    """
    path = home / RECORD_NAME
    record = _load(path)
    owners: dict[str, dict[str, str]] = {}
    for name, spec in builtins.items():
        row = store.get_app(name)
        known = None if record is None else record.get(name)
        digest = _digest(spec)
        if record is None or (row is None and known is None):
            store.put_app(name, spec)
            owners[name] = {"owner": _RUNTIME, "sha256": digest}
        elif row is None:
            owners[name] = {"owner": _REMOVED}
            _log.info("built-in application left unregistered, as the user did", app=name)
        elif row.spec == spec:
            owners[name] = {"owner": _RUNTIME, "sha256": digest}
        elif (
            known is not None
            and known.get("owner") == _RUNTIME
            and known.get("sha256") == _digest(row.spec)
        ):
            store.put_app(name, spec)
            owners[name] = {"owner": _RUNTIME, "sha256": digest}
        else:
            owners[name] = {"owner": _USER}
            _log.info("built-in application kept as the user changed it", app=name)
    _save(path, owners)
    return {name: entry["owner"] for name, entry in owners.items()}
