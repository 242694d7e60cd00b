"""Where the object cache's files live, and the folders they live in.

Under ``root``: ``<app>/<session>/<id>.arrow`` is an object's base file, ``<id>.journal`` its
journal, and ``<id>.deltas/`` the one-file-per-patch folder of homes written by earlier
versions. This module names those paths, finds the objects on disk, and creates or removes the
folders under one lock, so a write never lands in a folder that is being removed.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

from flame_agents._logging import get_logger
from flame_agents._wire.cache.keys import CacheKey, parse_key
from flame_agents.errors import InvalidArgumentError
from flame_agents.runtime.cache.files import TMP_SUFFIX, Durability

__all__ = ["JOURNAL_SUFFIX", "ObjectLayout"]

JOURNAL_SUFFIX = ".journal"
_log = get_logger(__name__)


class ObjectLayout:
    """The paths of each object under ``root``; ``dir_lock`` guards creating and removing
    folders (the file writers of :mod:`.files` take it too)."""

    def __init__(self, root: Path, durability: Durability) -> None:
        self.root = root
        self.dir_lock = threading.Lock()
        self._durability = durability

    def session_dir(self, key: CacheKey) -> Path:
        """The folder of ``key``'s session."""
        return self.root / key.app / key.session

    def base_path(self, key: CacheKey) -> Path:
        """The object's base file."""
        return self.session_dir(key) / f"{key.object_id}.arrow"

    def journal_path(self, key: CacheKey) -> Path:
        """The object's journal (absent while it has no record)."""
        return self.session_dir(key) / f"{key.object_id}{JOURNAL_SUFFIX}"

    def deltas_dir(self, key: CacheKey) -> Path:
        """Where earlier versions kept one file per patch (converted when loaded)."""
        return self.session_dir(key) / f"{key.object_id}.deltas"

    def stored_keys(self) -> Iterator[CacheKey]:
        """Every object that has a base file, in order, removing on the way what a crash left:
        temporary files, and patches or journals whose base is gone."""
        for app_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            for ssn_dir in sorted(p for p in app_dir.iterdir() if p.is_dir()):
                for path in sorted(ssn_dir.iterdir()):
                    if path.name.endswith(TMP_SUFFIX):
                        path.unlink()  # an unacknowledged write interrupted by a crash
                    elif path.is_file() and path.name.endswith(".arrow"):
                        try:
                            key = parse_key(f"{app_dir.name}/{ssn_dir.name}/{path.name[:-6]}")
                        except InvalidArgumentError:
                            _log.warning("cache_file_ignored", path=str(path))
                            continue
                        yield key
                    elif (
                        path.is_dir()
                        and path.name.endswith(".deltas")
                        and not (ssn_dir / f"{path.name[:-7]}.arrow").exists()
                    ):
                        # Its base was deleted and a crash came before the patches went.
                        shutil.rmtree(path)
                    elif (
                        path.name.endswith(JOURNAL_SUFFIX)
                        and not (ssn_dir / f"{path.name[: -len(JOURNAL_SUFFIX)]}.arrow").exists()
                    ):
                        path.unlink()  # the same, for a journal

    def keys_on_disk(self, pattern: CacheKey) -> list[CacheKey]:
        """The objects matching ``pattern`` that have a base file."""
        app_dir = self.root / pattern.app
        if not app_dir.is_dir():
            return []
        keys: list[CacheKey] = []
        for ssn_dir in self._session_dirs(app_dir, pattern):
            if not ssn_dir.is_dir():
                continue
            for path in ssn_dir.glob("*.arrow"):
                try:
                    key = parse_key(f"{pattern.app}/{ssn_dir.name}/{path.name[:-6]}")
                except InvalidArgumentError:
                    continue
                if pattern.matches(key):
                    keys.append(key)
        return keys

    def remove_empty_dirs(self, pattern: CacheKey) -> None:
        """Remove the folders of ``pattern`` that have become empty (durably)."""
        app_dir = self.root / pattern.app
        with self.dir_lock:
            if not app_dir.is_dir():
                return
            sessions = self._session_dirs(app_dir, pattern)
            for path in [*sessions, app_dir]:
                # Not empty (other objects, or a write in flight) or already gone: keep it.
                with contextlib.suppress(OSError):
                    path.rmdir()
            for path in [*sessions, app_dir, self.root]:
                if path.is_dir():
                    self._durability.directory(path)

    @staticmethod
    def _session_dirs(app_dir: Path, pattern: CacheKey) -> list[Path]:
        if pattern.is_wildcard:
            return [p for p in app_dir.iterdir() if p.is_dir()]
        return [app_dir / pattern.session]
