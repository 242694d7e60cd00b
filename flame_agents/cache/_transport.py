"""Arrow Flight calls of the cache client: pooled clients per location and the wire forms of
put, get and delete (flame-wire §4.2, §8.6), as :mod:`flame_agents._wire.cache` spells them.

Every call asks for structured rejections (:data:`~flame_agents._wire.cache.rejections.
REJECTIONS_HEADER`); a server that ignores the header (Flame) still gets Flame's calls.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import pyarrow as pa
import pyarrow.flight as flight

from flame_agents._wire.cache.commands import DELETE_ACTION, decode_put_result, ticket
from flame_agents._wire.cache.rejections import (
    REJECTIONS_HEADER,
    REJECTIONS_VALUE,
    map_flight_error,
)
from flame_agents._wire.cache.schemas import ROW_BASE, ROW_PATCH, is_native, native_version
from flame_agents.cache import _aliases
from flame_agents.cache._ref import ObjectRef
from flame_agents.config import auth_metadata
from flame_agents.errors import CacheError, ObjectNotFoundError, RuntimeUnavailableError

__all__ = ["Reply", "action", "delete", "get", "put", "reset_clients"]

_T = TypeVar("_T")

# Objects can be large: never let gRPC's default 4 MiB message limit cut them off.
_GRPC_OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]

_HEADERS = [(REJECTIONS_HEADER.encode(), REJECTIONS_VALUE.encode())]
_OPTIONS = flight.FlightCallOptions(headers=_HEADERS)

_pool: dict[str, flight.FlightClient] = {}
_pool_lock = threading.Lock()

unconditional_endpoints: set[str] = set()
"""Endpoints found to lack PATCHIF/PUTIF (a Flame server): conditional commits fall back."""

unfollowable_endpoints: set[str] = set()
"""Endpoints found to lack the follow action (a Flame server): follows fall back to polling."""


def _location(endpoint: str) -> str:
    # flamepy's rewrite: pyarrow spells TLS gRPC "grpc+tls".
    if endpoint.startswith("grpcs://"):
        return "grpc+tls://" + endpoint[len("grpcs://") :]
    return endpoint


class _AuthMiddleware(flight.ClientMiddleware):  # type: ignore[misc]
    def __init__(self, headers: dict[str, list[str]]) -> None:
        super().__init__()
        self._headers = headers

    def sending_headers(self) -> dict[str, list[str]]:
        """The ``authorization`` header of the runtime's shared token."""
        return self._headers


class _AuthMiddlewareFactory(flight.ClientMiddlewareFactory):  # type: ignore[misc]
    """Sends ``authorization: Bearer <token>`` with every Flight call."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        super().__init__()
        self._headers = {k: [v] for k, v in metadata}

    def start_call(self, info: object) -> flight.ClientMiddleware:
        """Attach the header to this call."""
        return _AuthMiddleware(self._headers)


def _client(endpoint: str) -> flight.FlightClient:
    location = _location(endpoint)
    with _pool_lock:
        client = _pool.get(location)
        if client is None:
            kwargs: dict[str, object] = {"generic_options": _GRPC_OPTIONS}
            metadata = auth_metadata()
            if metadata:
                kwargs["middleware"] = [_AuthMiddlewareFactory(metadata)]
            ca_file = os.environ.get("FLAME_CA_FILE")
            if location.startswith("grpc+tls://") and ca_file:
                with open(ca_file, "rb") as handle:
                    kwargs["tls_root_certs"] = handle.read()
            client = flight.FlightClient(location, **kwargs)
            _pool[location] = client
        return client


def reset_clients() -> None:
    """Close and forget every pooled Flight client."""
    with _pool_lock:
        clients = list(_pool.values())
        _pool.clear()
        unconditional_endpoints.clear()
        unfollowable_endpoints.clear()
    _aliases.forget()
    for client in clients:
        client.close()


def _run_action(endpoint: str, action: flight.Action) -> list[bytes]:
    return [r.body.to_pybytes() for r in _client(endpoint).do_action(action, _OPTIONS)]


def _aliased(endpoint: str, attempt: Callable[[str], _T]) -> _T:
    """Run ``attempt`` on ``endpoint``, or on the current cache if that is an earlier address of it.

    Only failures that prove the call reached no copy of the object are retried elsewhere: no
    server there (unavailable), or another server that never held it (not found).
    """
    target = _aliases.resolve(endpoint)
    try:
        return attempt(target)
    except (RuntimeUnavailableError, ObjectNotFoundError):
        current = _aliases.learn(target, _run_action)
        if current is None:
            raise
        return attempt(current)


@contextmanager
def _call(endpoint: str, op: str, key: str) -> Iterator[flight.FlightClient]:
    try:
        yield _client(endpoint)
    except (flight.FlightUnavailableError, flight.FlightTimedOutError) as exc:
        # The channel may be stale (server restarted): dial afresh next time.
        with _pool_lock:
            _pool.pop(_location(endpoint), None)
        raise map_flight_error(exc, op=op, key=key, endpoint=endpoint) from exc
    except (pa.ArrowException, KeyError, ValueError, OSError) as exc:
        raise map_flight_error(exc, op=op, key=key, endpoint=endpoint) from exc


def put(
    endpoint: str,
    descriptor: flight.FlightDescriptor,
    schema: pa.Schema,
    batches: list[pa.RecordBatch],
    *,
    op: str,
    key: str,
) -> ObjectRef:
    """do_put ``batches`` and return the ObjectRef from the one BSON PutResult."""

    def attempt(target: str) -> object:
        with _call(target, op, key) as client:
            writer, reader = client.do_put(descriptor, schema, _OPTIONS)
            try:
                for batch in batches:
                    writer.write_batch(batch)
                writer.done_writing()
                return reader.read()
            finally:
                writer.close()

    metadata = _aliased(endpoint, attempt)
    if metadata is None:
        raise CacheError(f"{op}: the cache server sent no PutResult", key=key, endpoint=endpoint)
    return ObjectRef(*decode_put_result(bytes(metadata)))  # type: ignore[call-overload]


@dataclass
class Reply:
    """A decoded do_get answer (payloads still encoded)."""

    mode: Literal["not_modified", "full", "patches", "native"]
    version: int
    base: bytes | None = None
    base_version: int = 0
    patches: list[tuple[int, bytes]] = field(default_factory=list)
    table: pa.Table | None = None


def get(endpoint: str, key: str, since: int, *, aliases: bool = True) -> Reply:
    """do_get ticket ``<key>:<since>`` and classify the answer. ``aliases``: on a failure that
    may mean ``endpoint`` is an earlier address of the cache, ask for its current one (a poll of
    an object that does not exist yet passes False: its not-found is expected)."""

    def attempt(target: str) -> pa.Table:
        with _call(target, "get_object", key) as client:
            return client.do_get(flight.Ticket(ticket(key, since)), _OPTIONS).read_all()

    table = _aliased(endpoint, attempt) if aliases else attempt(_aliases.resolve(endpoint))
    if is_native(table.schema):
        return Reply("native", native_version(table.schema), table=table)
    if table.num_rows == 0:
        return Reply("not_modified", since)
    return _rows_reply(table, key)


def _rows_reply(table: pa.Table, key: str) -> Reply:
    versions = [int(v) for v in table.column(0).to_pylist()]
    if "kind" not in table.column_names:
        # Legacy two-column answer: the first batch is the base, later batches are patches.
        rows = [(int(b.column(0)[0].as_py()), b.column(1)[0].as_py()) for b in table.to_batches()]
        base_version, base = rows[0]
        return Reply("full", max(v for v, _ in rows), base, base_version, rows[1:])
    kinds = table.column("kind").to_pylist()
    data = table.column("data").to_pylist()
    patches = [(v, d) for v, k, d in zip(versions, kinds, data, strict=True) if k == ROW_PATCH]
    patch_versions = [v for v, _ in patches]
    if patch_versions != sorted(set(patch_versions)):
        raise CacheError(f"get_object: patches of {key} arrive out of order", key=key)
    if kinds[0] == ROW_BASE:
        if kinds.count(ROW_BASE) != 1:
            raise CacheError(f"get_object: reply for {key} has several base rows", key=key)
        return Reply("full", max(versions), data[0], versions[0], patches)
    if ROW_BASE in kinds:
        raise CacheError(f"get_object: reply for {key} does not start with its base", key=key)
    return Reply("patches", max(versions), patches=patches)


def action(
    endpoint: str, act: flight.Action, *, op: str, key: str, timeout: float | None = None
) -> list[bytes]:
    """Run the Flight action ``act``; its result bodies. ``timeout``: seconds for the call."""
    options = _OPTIONS
    if timeout is not None:
        options = flight.FlightCallOptions(headers=_HEADERS, timeout=timeout)

    def attempt(target: str) -> list[bytes]:
        with _call(target, op, key) as client:
            return [r.body.to_pybytes() for r in client.do_action(act, options)]

    return _aliased(endpoint, attempt)


def delete(endpoint: str, pattern: str) -> None:
    """DELETE action for a key, ``<app>/<session>`` or ``<app>/*``."""

    def attempt(target: str) -> list[object]:
        with _call(target, "delete_objects", pattern) as client:
            return list(client.do_action(flight.Action(DELETE_ACTION, pattern.encode()), _OPTIONS))

    results = _aliased(endpoint, attempt)
    if not results:
        raise CacheError(f"delete_objects: no result for {pattern}", key=pattern)
