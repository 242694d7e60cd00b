"""Where to connect: explicit arguments > environment > ``~/.flame/flame.yaml`` > embedded runtime.

The environment variables and the flame.yaml format are Flame's own (``FLAME_ENDPOINT``,
``FLAME_CACHE_ENDPOINT``, ``FLAME_CA_FILE``; ``current-context`` + ``contexts``), so one setting
moves the same code between our embedded runtime and a Flame cluster. This module also owns the
embedded runtime's home folder layout shared by the runtime and its clients (``runtime.json``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import yaml

from flame_agents.errors import ConfigError

__all__ = [
    "DEFAULT_CACHE_ENDPOINT",
    "TOKEN_ENV",
    "Endpoints",
    "GrpcTarget",
    "RuntimeInfo",
    "agents_home",
    "auth_metadata",
    "auth_token",
    "flame_yaml_path",
    "grpc_target",
    "instance_socket_dir",
    "process_alive",
    "read_runtime_info",
    "resolve_endpoints",
    "runtime_info_path",
    "runtime_lock_path",
    "runtime_serves_home",
    "write_runtime_info",
]

DEFAULT_CACHE_ENDPOINT = "grpc://127.0.0.1:9090"
"""Flame's (and flamepy's) default cache endpoint, used when only a Frontend is configured."""

Source = Literal["argument", "environment", "flame.yaml", "embedded"]


@dataclass(frozen=True)
class Endpoints:
    """A resolved pair of endpoints to a Flame-compatible runtime."""

    endpoint: str
    """Frontend URL, e.g. ``http://127.0.0.1:8080`` (``https://`` turns on TLS)."""
    cache_endpoint: str
    """Object cache (Arrow Flight) URL, e.g. ``grpc://127.0.0.1:9090``."""
    ca_file: str | None = None
    """CA bundle for a TLS Frontend: flame.yaml's ``cluster.tls.ca_file``, else
    ``FLAME_CA_FILE``."""
    source: Source = "argument"
    """Where the Frontend endpoint came from, for the log line and error messages."""


def flame_yaml_path() -> Path:
    """The Flame client config file, ``$HOME/.flame/flame.yaml`` as flamepy reads it."""
    return Path.home() / ".flame" / "flame.yaml"


def _load_flame_yaml(path: Path) -> dict[str, Any]:
    """Return the current context of a flame.yaml, validated the way flamepy validates it."""
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}", path=str(path)) from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level", path=str(path))
    current = doc.get("current-context")
    if not current:
        raise ConfigError(
            f"{path}: 'current-context' is required (name one of the 'contexts')", path=str(path)
        )
    for ctx in doc.get("contexts") or []:
        if isinstance(ctx, dict) and ctx.get("name") == current:
            return ctx
    raise ConfigError(
        f"{path}: current-context {current!r} is not listed under 'contexts'", path=str(path)
    )


def resolve_endpoints(
    endpoint: str | None = None, *, cache_endpoint: str | None = None
) -> Endpoints | None:
    """Resolve where to connect; ``None`` means nothing is configured (use the embedded runtime).

    Each endpoint is taken from the first of: the argument, ``FLAME_ENDPOINT`` /
    ``FLAME_CACHE_ENDPOINT``, the current context of ``~/.flame/flame.yaml``. A configured
    Frontend without a cache gets Flame's default cache endpoint.
    """
    source: Source = "argument"
    ctx: dict[str, Any] = {}
    path = flame_yaml_path()
    if path.exists():
        ctx = _load_flame_yaml(path)
    cluster = ctx.get("cluster") or {}
    cache = ctx.get("cache") or {}
    if endpoint is None:
        if os.environ.get("FLAME_ENDPOINT"):
            endpoint, source = os.environ["FLAME_ENDPOINT"], "environment"
        elif cluster.get("endpoint"):
            endpoint, source = str(cluster["endpoint"]), "flame.yaml"
    if cache_endpoint is None:
        cache_endpoint = os.environ.get("FLAME_CACHE_ENDPOINT") or cache.get("endpoint")
    # As in flamepy: the cluster's own CA from the file wins; FLAME_CA_FILE fills in a missing
    # one. The cache's CA is not the Frontend's, so it is not used here.
    ca_file = (cluster.get("tls") or {}).get("ca_file") or os.environ.get("FLAME_CA_FILE") or None
    if endpoint is None:
        return None
    grpc_target(endpoint)  # validate early, with a clear error
    return Endpoints(
        endpoint=endpoint,
        cache_endpoint=str(cache_endpoint or DEFAULT_CACHE_ENDPOINT),
        ca_file=ca_file,
        source=source,
    )


@dataclass(frozen=True)
class GrpcTarget:
    """A gRPC dial target derived from an endpoint URL."""

    target: str
    """``host:port`` for ``grpc.insecure_channel`` / ``grpc.secure_channel``."""
    tls: bool
    """True for ``https``/``grpcs``/``grpc+tls`` schemes."""


_TLS_SCHEMES = {"https", "grpcs", "grpc+tls"}
_PLAIN_SCHEMES = {"http", "grpc", "grpc+tcp"}


def grpc_target(endpoint: str, *, default_port: int = 8080) -> GrpcTarget:
    """Parse ``http://host:port`` (or ``grpc://``, ``https://``, ``grpcs://``) into a target."""
    if not isinstance(endpoint, str) or not endpoint:
        raise ConfigError("endpoint must be a non-empty URL such as http://127.0.0.1:8080")
    url = urlparse(endpoint)
    scheme = url.scheme.lower()
    if scheme not in _TLS_SCHEMES | _PLAIN_SCHEMES or not url.hostname:
        raise ConfigError(
            f"endpoint {endpoint!r} needs a scheme and a host, e.g. http://127.0.0.1:8080 "
            "(https:// or grpcs:// for TLS)",
            endpoint=endpoint,
        )
    try:
        port = url.port or default_port
    except ValueError as exc:
        raise ConfigError(f"endpoint {endpoint!r} has an invalid port", endpoint=endpoint) from exc
    host = url.hostname
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return GrpcTarget(target=f"{host}:{port}", tls=scheme in _TLS_SCHEMES)


TOKEN_ENV = "FLAME_AGENTS_TOKEN"
"""Environment variable holding the shared token, read by the runtime and by clients."""


def auth_token() -> str | None:
    """The shared token to send as ``authorization: Bearer <token>``, or None.

    ``$FLAME_AGENTS_TOKEN``, else ``cluster.token`` of the current context of
    ``~/.flame/flame.yaml``. Only our runtime checks it (started with a token); Flame ignores it.
    """
    token = os.environ.get(TOKEN_ENV)
    if token:
        return token.strip()
    path = flame_yaml_path()
    if not path.exists():
        return None
    value = (_load_flame_yaml(path).get("cluster") or {}).get("token")
    return str(value).strip() if value else None


def auth_metadata() -> tuple[tuple[str, str], ...]:
    """gRPC metadata carrying :func:`auth_token`, empty without one."""
    token = auth_token()
    return (("authorization", f"Bearer {token}"),) if token else ()


def agents_home() -> Path:
    """The embedded runtime's home folder: ``$FLAME_AGENTS_HOME`` or ``~/.flame-agents``."""
    env = os.environ.get("FLAME_AGENTS_HOME")
    return Path(env).expanduser() if env else Path.home() / ".flame-agents"


@dataclass(frozen=True)
class RuntimeInfo:
    """What a running embedded runtime publishes in ``<home>/runtime.json``."""

    endpoint: str
    """Frontend URL (``http://127.0.0.1:<port>``)."""
    cache_endpoint: str
    """Arrow Flight cache URL (``grpc://127.0.0.1:<port>``)."""
    home: str
    """The runtime's home folder."""
    pid: int
    """Process id of the runtime."""
    former_cache_endpoints: tuple[str, ...] = ()
    """Endpoints earlier runs of this home's cache advertised: object refs naming one of them
    mean this cache (see ``docs/runtime.md``, restarts)."""


_SUN_PATH_MAX = 107
"""AF_UNIX paths hold 108 bytes including the terminating NUL."""
_SOCKET_NAME_LEN = len("/00000000-0000-0000-0000-000000000000.sock")


def instance_socket_dir(home: Path) -> Path:
    """Folder of the instance sockets of the runtime for ``home``.

    ``<home>/sock`` when a socket path there fits an AF_UNIX address (108 bytes), else a short
    per-home folder under the temp dir (which is not removed with the home: the runtime and
    :func:`flame_agents.embedded.stop_runtime` remove it).
    """
    preferred = home / "sock"
    if len(str(preferred)) + _SOCKET_NAME_LEN <= _SUN_PATH_MAX:
        return preferred
    digest = hashlib.sha256(str(home).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"flame-agents-{os.getuid()}-{digest}"


def runtime_info_path(home: Path) -> Path:
    """Where a runtime with this home publishes its :class:`RuntimeInfo`."""
    return home / "runtime.json"


def runtime_lock_path(home: Path) -> Path:
    """The flock a runtime holds on its home for as long as it runs."""
    return home / "runtime.lock"


def runtime_serves_home(home: Path) -> bool:
    """True while a runtime process holds the lock of ``home``.

    The lock is released by the kernel the moment its holder dies, so this is right where a pid
    check is not: a runtime killed with SIGKILL in a container whose pid 1 does not reap stays a
    zombie that ``kill(pid, 0)`` still finds. The probe takes a shared lock for an instant; a
    starting runtime retries its exclusive lock past such probes.
    """
    try:
        fd = os.open(runtime_lock_path(home), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return True
        raise
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def process_alive(pid: int) -> bool:
    """True if ``pid`` names a running process (a zombie is dead, though ``kill(pid, 0)`` works)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by someone else
    with contextlib.suppress(OSError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        # The state follows the parenthesized command name, which may itself hold spaces.
        return stat[stat.rindex(")") + 2] not in "ZX"
    return True


def read_runtime_info(home: Path) -> RuntimeInfo | None:
    """The published info of the runtime for ``home``, or ``None`` if none is running there.

    A runtime is running when it holds the home's lock and its process is alive; a file left
    behind by a runtime that died (killed, or a zombie nobody reaped) counts as none.
    """
    path = runtime_info_path(home)
    try:
        data = json.loads(path.read_text())
        info = RuntimeInfo(
            **{k: data[k] for k in ("endpoint", "cache_endpoint", "home", "pid")},
            former_cache_endpoints=tuple(str(e) for e in data.get("former_cache_endpoints", ())),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not process_alive(info.pid) or not runtime_serves_home(home):
        return None
    return info


def write_runtime_info(info: RuntimeInfo) -> None:
    """Publish ``info`` atomically (write a temp file, then rename), readable by the owner only."""
    path = runtime_info_path(Path(info.home))
    tmp = path.with_suffix(".json.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(asdict(info), fh)
    os.replace(tmp, path)
