"""Hostile input to the object cache (Arrow Flight): bad descriptors, tickets, keys, record
batches and sizes get a clear error, the server keeps serving, and nothing escapes the home."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.flight as flight
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from security_support import FUZZ_EXAMPLES, FUZZ_TIMEOUT, MIB, cache_healthy, tree

from flame_agents import cache
from flame_agents.errors import LimitExceededError
from flame_agents.testing import LocalRuntime

SEGMENTS = ["", ".", "..", "../x", "a/b", "*", "a\x00b", "a\\b", "x" * 201, "é" * 120, "ok"]
segments = st.one_of(st.sampled_from(SEGMENTS), st.text(max_size=12))
keys = st.one_of(
    st.lists(segments, min_size=0, max_size=4).map("/".join),
    st.sampled_from(["../../etc/passwd", "a/../../b", "/abs/b/c", "a/b/c/d", "a//c", "fz/s/"]),
)
versions = st.one_of(
    st.sampled_from(["", "0", "1", "-1", "x", "99999999999999999999999", "1e3"]),
    st.integers(0, 2**64).map(str),
)
tickets = st.one_of(
    st.tuples(keys, st.sampled_from([":", "", "::"]), versions).map(lambda t: "".join(t).encode()),
    st.binary(max_size=64),
)
commands = st.one_of(
    st.tuples(
        st.sampled_from(["PATCH", "PATCHIF", "PUTIF", "PUT", "", "DELETE"]),
        st.sampled_from([":", ""]),
        versions,
        st.sampled_from([":", ""]),
        keys,
    ).map(lambda t: "".join(t).encode()),
    st.binary(max_size=64),
)
descriptors = st.one_of(
    st.lists(segments, min_size=0, max_size=4).map(lambda p: flight.FlightDescriptor.for_path(*p)),
    commands.map(flight.FlightDescriptor.for_command),
)

pytestmark = pytest.mark.timeout(FUZZ_TIMEOUT)


def _table(kind: str, rows: int) -> pa.Table:
    """Uploads of every shape a client could send, most of them wrong."""
    shapes: dict[str, Callable[[], pa.Table]] = {
        "opaque": lambda: pa.table(
            {"version": pa.array([0] * rows, pa.uint64()), "data": [b"d" * 8] * rows}
        ),
        "nulls": lambda: pa.table(
            {"version": pa.array([None] * rows, pa.uint64()), "data": pa.array([None] * rows)}
        ),
        "one_column": lambda: pa.table({"x": list(range(rows))}),
        "wrong_types": lambda: pa.table({"version": ["v"] * rows, "data": list(range(rows))}),
        "large_binary": lambda: pa.table(
            {"v": pa.array([1] * rows, pa.int8()), "d": pa.array([b"x"] * rows, pa.large_binary())}
        ),
        "nested": lambda: pa.table(
            {"version": pa.array([0] * rows, pa.uint64()), "data": [[1, 2]] * rows}
        ),
        "native": lambda: pa.table({"a": list(range(rows))}).replace_schema_metadata(
            {b"flame.cache.format": b"arrow-table-v1", b"x": b"y"}
        ),
        "empty_schema": lambda: pa.table({}),
    }
    return shapes[kind]()


tables = st.builds(
    _table,
    st.sampled_from(
        [
            "opaque",
            "nulls",
            "one_column",
            "wrong_types",
            "large_binary",
            "nested",
            "native",
            "empty_schema",
        ]
    ),
    st.integers(0, 3),
)


def _clear(exc: BaseException) -> bool:
    """INVALID_ARGUMENT, NOT_FOUND or a version conflict: the answers hostile input may get."""
    if isinstance(exc, (pa.ArrowInvalid, pa.ArrowKeyError)):
        return bool(str(exc).strip())
    return isinstance(exc, flight.FlightServerError) and "version conflict" in str(exc)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Path]:
    """A folder holding only the runtime's home; anything else appearing in it is a leak."""
    root = Path(tempfile.mkdtemp(prefix="flame-agents-fuzz-")).resolve()
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def target(sandbox: Path) -> Iterator[tuple[LocalRuntime, flight.FlightClient]]:
    """A runtime whose cache accepts uploads up to 1 MiB, and a raw Flight client."""
    extra = ["--max-object-bytes", str(MIB)]
    with LocalRuntime(sandbox / "home", set_env=False, extra_args=extra) as rt:
        client = flight.FlightClient(rt.cache_endpoint)
        try:
            yield rt, client
        finally:
            client.close()


OPTS = flight.FlightCallOptions(timeout=30)
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES * 3,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)


@FUZZ
@given(ticket=tickets)
def test_do_get_hostile_tickets(
    target: tuple[LocalRuntime, flight.FlightClient], ticket: bytes
) -> None:
    """Any ticket is answered with data or INVALID_ARGUMENT / NOT_FOUND with a message."""
    _, client = target
    try:
        client.do_get(flight.Ticket(ticket), options=OPTS).read_all()
    except pa.ArrowException as exc:
        assert _clear(exc), repr(exc)
    assert cache_healthy(client)


@FUZZ
@given(descriptor=descriptors, table=tables)
def test_do_put_hostile_uploads(
    target: tuple[LocalRuntime, flight.FlightClient],
    descriptor: flight.FlightDescriptor,
    table: pa.Table,
) -> None:
    """Any descriptor with any record batches is stored or refused with a clear error."""
    _, client = target
    try:
        writer, reader = client.do_put(descriptor, table.schema, options=OPTS)
        try:
            for batch in table.to_batches():
                writer.write_batch(batch)
            writer.done_writing()
            reader.read()
        finally:
            writer.close()
    except pa.ArrowException as exc:
        assert _clear(exc), repr(exc)
    assert cache_healthy(client)


@FUZZ
@given(
    action=st.one_of(st.sampled_from(["DELETE", "delete", "", "PUT"]), st.text(max_size=10)),
    body=st.one_of(keys.map(str.encode), st.binary(max_size=40)),
)
def test_do_action_hostile(
    target: tuple[LocalRuntime, flight.FlightClient], action: str, body: bytes
) -> None:
    """DELETE of any pattern and unknown actions are answered OK or INVALID_ARGUMENT."""
    _, client = target
    try:
        list(client.do_action(flight.Action(action, body), options=OPTS))
    except pa.ArrowException as exc:
        assert _clear(exc), repr(exc)
    assert cache_healthy(client)


@FUZZ
@given(descriptor=descriptors, criteria=st.binary(max_size=20))
def test_info_and_listing_hostile(
    target: tuple[LocalRuntime, flight.FlightClient],
    descriptor: flight.FlightDescriptor,
    criteria: bytes,
) -> None:
    """get_flight_info of any descriptor and list_flights with any criteria answer clearly."""
    _, client = target
    try:
        client.get_flight_info(descriptor, options=OPTS)
    except pa.ArrowException as exc:
        assert _clear(exc), repr(exc)
    list(client.list_flights(criteria, options=OPTS))
    assert cache_healthy(client)


def test_object_size_limit(target: tuple[LocalRuntime, flight.FlightClient]) -> None:
    """An upload over --max-object-bytes is refused with LimitExceededError naming the limit;
    smaller ones still work."""
    rt, client = target
    with pytest.raises(LimitExceededError, match=f"{MIB} bytes \\(the limit\\)"):
        cache.put_raw("fz/big", b"x" * (2 * MIB), endpoint=rt.cache_endpoint)
    ref = cache.put_raw("fz/big", b"x" * 1000, endpoint=rt.cache_endpoint)
    with pytest.raises(LimitExceededError, match="--max-object-bytes"):
        cache.patch_raw(ref, b"y" * (2 * MIB))
    assert cache.fetch_raw(ref).base == b"x" * 1000
    assert cache_healthy(client)


def test_no_file_outside_home(
    sandbox: Path, target: tuple[LocalRuntime, flight.FlightClient]
) -> None:
    """After the fuzzing, the sandbox holds only the home and no stored path has a '..' part."""
    _, client = target
    assert cache_healthy(client)
    assert {p.name for p in sandbox.iterdir()} == {"home"}
    assert not any(".." in Path(p).parts for p in tree(sandbox))
