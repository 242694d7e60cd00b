"""Fetch an application's package (its spec's ``url``) and unpack it: the first half of the
package installer (:mod:`._installer`).

The schemes are those Flame's executor manager reads:

* ``file:///abs/path``: a file (or a folder, copied as is) on this machine;
* ``http://`` / ``https://``: downloaded;
* ``grpc://host:port/<key>`` / ``grpcs://...``: an object of an Arrow Flight object cache, read
  with the ticket ``<key>:0`` (what flamepy's ``upload_object`` wrote: the data of its base rows,
  concatenated). The runtime's bearer token is sent only when ``host:port`` is the runtime's own
  cache, never to another server a spec names.

A tar (any compression) or zip archive is extracted; any other file is the package itself,
copied under its own name and made executable (a binary). Members that would land outside the
folder (absolute paths, ``..``, links out of it, devices) are refused.

Everything here blocks: the installer runs it in a worker thread.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

import pyarrow as pa
import pyarrow.flight as flight

from flame_agents._wire.cache.commands import ticket
from flame_agents._wire.cache.schemas import ROW_BASE
from flame_agents.config import TOKEN_ENV

__all__ = ["SCHEMES", "FetchError", "fetch", "is_own_cache", "package_name", "unpack"]

SCHEMES = ("file", "http", "https", "grpc", "grpcs")
"""URL schemes a package may be fetched from."""

_CHUNK = 1 << 20


class FetchError(Exception):
    """The package could not be fetched or unpacked; the message says which and why."""


def package_name(url: str) -> str:
    """The file name the package is stored under: the last part of the URL's path."""
    name = PurePosixPath(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name
    return name if name not in ("", ".", "..") else "package"


def is_own_cache(url: str, own_cache: str | None) -> bool:
    """Whether the ``grpc(s)://`` ``url`` names the cache at ``own_cache`` (same scheme, host
    and port): only then may the runtime's token go with the request."""
    if not own_cache:
        return False
    a, b = urllib.parse.urlparse(url), urllib.parse.urlparse(own_cache)
    try:
        return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)
    except ValueError:  # a port that is not a number
        return False


def fetch(
    url: str,
    folder: Path,
    *,
    own_cache: str | None,
    timeout: float,
    credentials: Mapping[str, str] | None = None,
) -> Path:
    """Fetch ``url`` into ``folder`` (created); return the path of the file (or folder) got.

    ``credentials``: the token and CA variables the runtime gives its instances (over the
    runtime's own environment).
    """
    parsed = urllib.parse.urlparse(url)
    scheme = parsed.scheme.lower()
    folder.mkdir(parents=True, exist_ok=True)
    if scheme == "file":
        return _from_file(parsed)
    dest = folder / package_name(url)
    if scheme in ("http", "https"):
        _download(url, dest, timeout=timeout)
    elif scheme in ("grpc", "grpcs"):
        env = {**os.environ, **(credentials or {})}
        _from_cache(url, dest, own=is_own_cache(url, own_cache), timeout=timeout, env=env)
    else:
        raise FetchError(
            f"unsupported url scheme {parsed.scheme!r} in {url!r}: use one of "
            + ", ".join(f"{s}://" for s in SCHEMES)
        )
    return dest


def _from_file(parsed: urllib.parse.ParseResult) -> Path:
    if parsed.netloc not in ("", "localhost"):
        raise FetchError(
            f"file url {parsed.geturl()!r} names host {parsed.netloc!r}: a file url names a path "
            "on this machine, file:///absolute/path"
        )
    path = Path(urllib.parse.unquote(parsed.path))
    if not path.is_absolute() or not path.exists():
        raise FetchError(f"package {str(path)!r} does not exist on this machine; fix the url")
    return path


def _download(url: str, dest: Path, *, timeout: float) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as out:
            shutil.copyfileobj(response, out, _CHUNK)
    except urllib.error.HTTPError as exc:
        raise FetchError(f"downloading {url} failed: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FetchError(f"downloading {url} failed: {reason}") from exc


def _from_cache(url: str, dest: Path, *, own: bool, timeout: float, env: Mapping[str, str]) -> None:
    parsed = urllib.parse.urlparse(url)
    key = urllib.parse.unquote(parsed.path).lstrip("/")
    if not key:
        raise FetchError(f"cache url {url!r} names no object: use grpc://host:port/<key>")
    tls = parsed.scheme.lower() == "grpcs"
    location = f"{'grpc+tls' if tls else 'grpc'}://{parsed.netloc}"
    kwargs: dict[str, object] = {}
    ca_file = env.get("FLAME_CA_FILE")
    if tls and ca_file:
        kwargs["tls_root_certs"] = Path(ca_file).read_bytes()
    headers = []
    token = env.get(TOKEN_ENV)
    if own and token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    options = flight.FlightCallOptions(timeout=timeout, headers=headers)
    try:
        client = flight.FlightClient(location, **kwargs)
        try:
            table = client.do_get(flight.Ticket(ticket(key, 0)), options).read_all()
        finally:
            client.close()
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise FetchError(
            f"reading {key!r} from the object cache at {location} failed: {exc}"
        ) from exc
    if table.num_rows == 0 or "data" not in table.column_names:
        raise FetchError(f"the object cache at {location} has no object {key!r}")
    data = table.column("data").to_pylist()
    if "kind" in table.column_names:
        kinds = table.column("kind").to_pylist()
        data = [d for d, k in zip(data, kinds, strict=True) if k == ROW_BASE]
    with open(dest, "wb") as out:
        for chunk in data:
            out.write(chunk or b"")


def unpack(package: Path, dest: Path) -> None:
    """Unpack ``package`` into the new folder ``dest``: extract an archive, copy a folder, or
    copy a single file (made executable)."""
    dest.mkdir(parents=True)
    try:
        if package.is_dir():
            shutil.copytree(package, dest, symlinks=True, dirs_exist_ok=True)
        elif tarfile.is_tarfile(package):
            _untar(package, dest)
        elif zipfile.is_zipfile(package):
            _unzip(package, dest)
        else:
            target = dest / package.name
            shutil.copyfile(package, target)
            target.chmod(0o755)
    except (OSError, tarfile.TarError, zipfile.BadZipFile) as exc:
        raise FetchError(f"unpacking {package.name} failed: {exc}") from exc


def _untar(package: Path, dest: Path) -> None:
    with tarfile.open(package) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
            return
        # Python without extraction filters (3.10 before 3.10.12): check members ourselves.
        root = dest.resolve()
        for member in tar.getmembers():
            if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
                raise FetchError(f"archive member {member.name!r} is not a file or folder")
            _inside(root, root / member.name, member.name)
            if member.issym():
                _inside(root, (root / member.name).parent / member.linkname, member.name)
            elif member.islnk():
                _inside(root, root / member.linkname, member.name)
        tar.extractall(dest)


def _unzip(package: Path, dest: Path) -> None:
    root = dest.resolve()
    with zipfile.ZipFile(package) as archive:
        for info in archive.infolist():
            target = _inside(root, root / info.filename, info.filename)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, _CHUNK)
            mode = (info.external_attr >> 16) & 0o777
            if mode and not stat.S_ISLNK(info.external_attr >> 16):
                target.chmod(mode & 0o755 | 0o600)


def _inside(root: Path, path: Path, name: str) -> Path:
    resolved = path.resolve()
    if resolved != root and root not in resolved.parents:
        raise FetchError(f"archive member {name!r} would be written outside the package folder")
    return resolved
