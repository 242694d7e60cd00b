"""The Arrow Flight object cache server of the embedded runtime (flame-wire §4.2, byte for byte).

Descriptors, tickets and replies are Flame 0.6's, so flamepy's cache API works unmodified
against it. Our extensions, all spelled in :mod:`flame_agents._wire.cache`: the conditional
commands ``PATCHIF:<expected>:<key>`` and ``PUTIF:<expected>:<key>``, the follow read (an action
that waits for an object's next patches, :mod:`.follow`), and structured rejections
(a code and fields in the Flight error's ``extra_info``; for NOT_FOUND and INVALID_ARGUMENT only
when the call asks for them, so flamepy still sees Flame's errors).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight

from flame_agents._logging import get_logger
from flame_agents._wire.cache.aliases import FORMER_ENDPOINTS_ACTION, encode_former
from flame_agents._wire.cache.commands import (
    DELETE_ACTION,
    PUT_IF,
    UNKNOWN_COMMAND,
    encode_put_result,
    parse_command,
    parse_ticket,
)
from flame_agents._wire.cache.follow import FOLLOW_ACTION, decode_follow, encode_follow_reply
from flame_agents._wire.cache.keys import CacheKey, parse_key
from flame_agents._wire.cache.rejections import (
    REJECTIONS_HEADER,
    REJECTIONS_VALUE,
    flight_error,
)
from flame_agents._wire.cache.schemas import REPLY_SCHEMA, is_native
from flame_agents.errors import (
    FlameAgentsError,
    InternalError,
    InvalidArgumentError,
    LimitExceededError,
)
from flame_agents.runtime.cache.follow import Follows
from flame_agents.runtime.cache.object_store import (
    DEFAULT_MAX_MEMORY,
    DEFAULT_MAX_PATCHES,
    NativeBody,
    NativeReply,
    NotModified,
    ObjectStore,
    ReadReply,
)

__all__ = ["DEFAULT_MAX_OBJECT_BYTES", "NO_FOLLOW_ENV", "CacheServer"]

DEFAULT_MAX_OBJECT_BYTES = 1024**3
"""Largest single upload (a base or a patch) accepted; ``--max-object-bytes`` changes it."""

NO_FOLLOW_ENV = "FLAME_AGENTS_CACHE_NO_FOLLOW"
"""Test switch: set to 1, the server rejects the follow action as a Flame cache would (unknown),
so the clients' polling fallback can be exercised against a real runtime."""

_log = get_logger(__name__)
_STRUCTURED = "rejections"
"""Middleware key present on calls that asked for structured rejections."""


class _Structured(flight.ServerMiddleware):  # type: ignore[misc]
    """Marks a call that sent the structured-rejections header."""


class _StructuredFactory(flight.ServerMiddlewareFactory):  # type: ignore[misc]
    def start_call(self, info: Any, headers: dict[str, list[Any]]) -> _Structured | None:
        """Mark the call if it asked for structured rejections."""
        values = headers.get(REJECTIONS_HEADER, ())
        return _Structured() if REJECTIONS_VALUE in values else None


@contextlib.contextmanager
def _as_flight_errors(op: str, context: Any) -> Iterator[None]:
    """Translate store errors to Flight errors (:mod:`flame_agents._wire.cache.rejections`)."""
    try:
        yield
    except FlameAgentsError as exc:
        structured = context.get_middleware(_STRUCTURED) is not None
        error = flight_error(exc, op=op, structured=structured)
        if isinstance(error, flight.FlightInternalError):
            _log.error("cache_op_failed", op=op, error=str(exc))
        raise error from exc
    except ValueError as exc:  # a payload pyarrow could not read
        raise pa.ArrowInvalid(str(exc)) from exc  # -> INVALID_ARGUMENT
    except OSError as exc:
        _log.error("cache_io_failed", op=op, error=str(exc))
        raise flight_error(
            InternalError(f"storage failure: {exc}"), op=op, structured=True
        ) from exc


def _read_upload(reader: Any, max_bytes: int) -> tuple[pa.Schema, list[pa.RecordBatch]]:
    """The uploaded batches; refused as soon as they pass ``max_bytes`` (not after buffering)."""
    batches: list[pa.RecordBatch] = []
    size = 0
    for chunk in reader:
        if chunk.data is None:
            continue
        size += chunk.data.nbytes
        if size > max_bytes:
            raise LimitExceededError(
                f"upload larger than {max_bytes} bytes (the limit); store less per object, or "
                "start the runtime with a larger --max-object-bytes",
                limit=max_bytes,
            )
        batches.append(chunk.data)
    if not batches:
        raise InvalidArgumentError("No data received")
    return reader.schema, batches


def _opaque_bytes(schema: pa.Schema, batches: list[pa.RecordBatch]) -> bytes:
    """Concatenate column 1 of every row of every batch (columns are read by position)."""
    if len(schema) < 2 or not (
        pa.types.is_binary(schema.types[1]) or pa.types.is_large_binary(schema.types[1])
    ):
        raise InvalidArgumentError(
            "opaque uploads need columns (version: uint64, data: binary); got "
            f"{schema.names} {schema.types}"
        )
    return b"".join(v or b"" for batch in batches for v in batch.column(1).to_pylist())


class CacheServer(flight.FlightServerBase):  # type: ignore[misc]
    """Arrow Flight object cache serving the objects stored under ``root``.

    Everything on disk is loaded (and checked) before the server listens; a damaged file
    raises CacheError naming it. ``endpoint`` is the URL advertised in every ObjectRef.
    """

    def __init__(
        self,
        root: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_memory: int = DEFAULT_MAX_MEMORY,
        max_patches: int = DEFAULT_MAX_PATCHES,
        max_object_bytes: int = DEFAULT_MAX_OBJECT_BYTES,
        token: str | None = None,
        tls: tuple[bytes, bytes] | None = None,
        fsync: bool = False,
    ) -> None:
        """Load the store under ``root`` and listen on ``host:port``.

        ``token``: refuse calls without ``authorization: Bearer <token>``. ``tls``: a PEM
        certificate chain and key; the server then speaks TLS and advertises ``grpcs://``.
        ``fsync``: flush every write to disk before acknowledging it (survives power loss);
        by default an acknowledged write is in the OS page cache (survives any process kill).
        """
        self.store = ObjectStore(
            Path(root), max_memory=max_memory, max_patches=max_patches, fsync=fsync
        )
        self._max_object_bytes = max_object_bytes
        self.follows: Follows | None = None
        """The waiting follow reads, woken by every acknowledged write (None: not served)."""
        if os.environ.get(NO_FOLLOW_ENV) != "1":
            self.follows = Follows()
        middleware: dict[str, flight.ServerMiddlewareFactory] = {_STRUCTURED: _StructuredFactory()}
        if token:
            from flame_agents.runtime._auth import FlightTokenMiddlewareFactory

            middleware["auth"] = FlightTokenMiddlewareFactory(token)
        scheme = "grpc+tls" if tls else "grpc"
        super().__init__(
            f"{scheme}://{host}:{port}",
            middleware=middleware,
            tls_certificates=[tls] if tls else None,
        )
        # A wildcard bind address cannot be dialled: advertise loopback instead.
        advertised = "127.0.0.1" if host in ("0.0.0.0", "") else host
        self._endpoint = f"{'grpcs' if tls else 'grpc'}://{advertised}:{self.port}"
        self._thread: threading.Thread | None = None
        self._stopped = False
        self.former_endpoints: tuple[str, ...] = ()
        """Endpoints earlier runs of this cache advertised (answered by FORMER_ENDPOINTS_ACTION)."""
        _log.info("cache_server_listening", endpoint=self._endpoint, root=str(root))

    @property
    def endpoint(self) -> str:
        """The advertised ``grpc://<host>:<port>`` that clients dial."""
        return self._endpoint

    def serve_in_background(self) -> None:
        """Serve on a daemon thread (the server already accepts calls; this waits on it)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self.serve, name="cache-server", daemon=True)
            self._thread.start()

    def shutdown(self) -> None:
        """Stop serving (in-flight calls finish first) and release the store's memory."""
        if self._stopped:
            return
        self._stopped = True
        if self.follows is not None:
            self.follows.close()
        super().shutdown()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.store.close()

    # -- helpers --------------------------------------------------------------------------

    def _put_result(self, writer: Any, key: str, version: int) -> None:
        writer.write(pa.py_buffer(encode_put_result(self._endpoint, key, version)))

    def _location(self) -> flight.Location:
        # pyarrow spells TLS gRPC "grpc+tls"; the advertised endpoint uses Flame's "grpcs".
        return flight.Location(self._endpoint.replace("grpcs://", "grpc+tls://", 1))

    # -- Flight methods -------------------------------------------------------------------

    def do_put(self, context: Any, descriptor: Any, reader: Any, writer: Any) -> None:
        """Put (prefix path), update (full-key path), PATCH / PATCHIF / PUTIF (command)."""
        with _as_flight_errors("do_put", context):
            if descriptor.descriptor_type == flight.DescriptorType.PATH:
                target = parse_key(
                    "/".join(p.decode("utf-8") for p in descriptor.path), allow_prefix=True
                )
                schema, batches = _read_upload(reader, self._max_object_bytes)
                key, version = self.store.put(target, self._body(schema, batches))
            else:
                key, version = self._command_put(descriptor.command, reader)
            if self.follows is not None:
                self.follows.changed(key)
            self._put_result(writer, key, version)

    def _body(self, schema: pa.Schema, batches: list[pa.RecordBatch]) -> bytes | NativeBody:
        if is_native(schema):
            return NativeBody(schema, batches)
        return _opaque_bytes(schema, batches)

    def _command_put(self, command: bytes, reader: Any) -> tuple[str, int]:
        parsed = parse_command(command)
        key, expected = parsed.key, parsed.expected
        schema, batches = _read_upload(reader, self._max_object_bytes)
        if parsed.verb == PUT_IF:
            return self.store.put(key, self._body(schema, batches), expected=expected)
        if is_native(schema):
            raise InvalidArgumentError(f"a patch of {key} must be opaque (version, data) rows")
        version = self.store.patch(key, _opaque_bytes(schema, batches), expected=expected)
        return str(key), version

    def do_get(self, context: Any, ticket: Any) -> Any:
        """Ticket ``<key>:<client_version>``: not-modified, native, patches-only or full."""
        with _as_flight_errors("do_get", context):
            key, since = parse_ticket(ticket.ticket)
            reply = self.store.read(key, since)
        return _reply_stream(reply)

    def get_flight_info(self, context: Any, descriptor: Any) -> flight.FlightInfo:
        """Where to fetch a key; the schema is the stored one for native Arrow objects."""
        with _as_flight_errors("get_flight_info", context):
            if descriptor.descriptor_type == flight.DescriptorType.PATH:
                text = "/".join(p.decode("utf-8") for p in descriptor.path)
            else:
                text = descriptor.command.decode("utf-8")
            key = parse_key(text, allow_prefix=True)
            info = self.store.info(key) if key.object_id is not None else None
        schema = info.native_schema if info is not None and info.native_schema else pa.schema([])
        endpoint = flight.FlightEndpoint(text.encode("utf-8"), [self._location()])
        return flight.FlightInfo(schema, descriptor, [endpoint], -1, -1)

    def get_schema(self, context: Any, descriptor: Any) -> flight.SchemaResult:
        """The 3-column reply schema."""
        return flight.SchemaResult(REPLY_SCHEMA)

    def list_flights(self, context: Any, criteria: bytes) -> Iterator[flight.FlightInfo]:
        """One FlightInfo per object (criteria, if any, is a key prefix to filter on)."""
        prefix = criteria.decode("utf-8", errors="replace") if criteria else ""
        for info in self.store.objects():
            if not info.key.startswith(prefix):
                continue
            endpoint = flight.FlightEndpoint(info.key.encode("utf-8"), [self._location()])
            yield flight.FlightInfo(
                info.native_schema or REPLY_SCHEMA,
                flight.FlightDescriptor.for_path(info.key),
                [endpoint],
                -1,
                info.size,
            )

    def do_action(self, context: Any, action: Any) -> Iterator[bytes]:
        """``DELETE`` of a key, ``<app>/<session>`` or ``<app>/*``: one result ``b"OK"``;
        :data:`FORMER_ENDPOINTS_ACTION`: one result, the JSON list of earlier endpoints;
        :data:`FOLLOW_ACTION`: the follow read's results. Any other type is rejected with the
        code ``unknown-command``."""
        with _as_flight_errors("do_action", context):
            if action.type == FORMER_ENDPOINTS_ACTION:
                return iter([encode_former(self.former_endpoints)])
            if action.type == FOLLOW_ACTION and self.follows is not None:
                request = decode_follow(action.body.to_pybytes())
                return iter(encode_follow_reply(self.follows.follow(request, self.store.read)))
            if action.type != DELETE_ACTION:
                raise InvalidArgumentError(
                    f"unknown action {action.type!r}: the actions are "
                    f"{', '.join(name for name, _ in self.list_actions(context))}",
                    action=str(action.type),
                    rejection_code=UNKNOWN_COMMAND,
                )
            body = action.body.to_pybytes().decode("utf-8", errors="replace")
            pattern: CacheKey = parse_key(body, allow_prefix=True, allow_wildcard=True)
            count = self.store.delete(pattern)
            if self.follows is not None:
                self.follows.deleted(pattern)
        _log.info("cache_deleted", pattern=body, objects=count)
        return iter([b"OK"])

    def list_actions(self, context: Any) -> list[tuple[str, str]]:
        """DELETE, the earlier endpoints of this cache, and the follow read (when served)."""
        actions = [
            (DELETE_ACTION, "Delete an object, '<app>/<session>' or '<app>/*'"),
            (FORMER_ENDPOINTS_ACTION, "Endpoints earlier runs of this cache advertised (JSON)"),
        ]
        if self.follows is not None:
            actions.append((FOLLOW_ACTION, "The patches of an object after a version, waiting"))
        return actions


def _reply_stream(reply: ReadReply) -> Any:
    if isinstance(reply, NotModified):
        return flight.RecordBatchStream(REPLY_SCHEMA.empty_table())
    if isinstance(reply, NativeReply):
        return flight.RecordBatchStream(reply.table)
    rows = reply.rows

    def batches() -> Iterator[pa.RecordBatch]:
        # One row per batch: a reply may carry many large blobs, never concatenated here.
        for version, kind, data in rows:
            yield pa.RecordBatch.from_arrays(
                [
                    pa.array([version], pa.uint64()),
                    pa.array([kind], pa.utf8()),
                    pa.array([data], pa.binary()),
                ],
                schema=REPLY_SCHEMA,
            )

    return flight.GeneratorStream(REPLY_SCHEMA, batches())
