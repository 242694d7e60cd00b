"""Run scenarios of the published flamepy 0.6.0 against the runtime under test; print JSON.

flamepy reads its configuration once per process (a singleton connection and cache context), so
scenarios run in their own interpreter with ``FLAME_ENDPOINT``/``FLAME_CACHE_ENDPOINT`` set,
either one per process::

    python flamepy_scenarios.py NAME '{"arg": ...}'

or, to pay flamepy's import once per test module, as a worker (``--serve``) reading one
``{"name", "args"}`` request per stdin line. Each reply is one stdout line,
``REPLY_MARKER`` + ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": {...}}``.
Bytes cross the JSON boundary as ``{"__bytes__": "<base64>"}`` in both directions. Scenarios
never wait without a bound: every future is awaited with a timeout, and the process ends with
``os._exit`` so a watch stream the server never ends cannot keep it alive.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future, wait
from typing import Any

import cloudpickle
import flamepy
import pyarrow as pa
import pyarrow.flight as flight
from flamepy import FlameError, SessionAttributes
from flamepy import cache as fcache
from flamepy.service import Session as ServiceSession
from scenario_json import REPLY_MARKER, from_json, to_json

WAIT = 60.0
"""Upper bound for any single wait; far above what a healthy runtime needs."""

SCENARIOS: dict[str, Callable[..., Any]] = {}


def scenario(fn: Callable[..., Any]) -> Callable[..., Any]:
    SCENARIOS[fn.__name__] = fn
    return fn


def error_json(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, FlameError):
        return {"type": "FlameError", "code": exc.code.name, "message": exc.message}
    return {"type": type(exc).__name__, "code": None, "message": str(exc)}


def outcome(fut: Future[Any]) -> dict[str, Any]:
    """The outcome of a flamepy future, bounded by WAIT."""
    try:
        return {"ok": True, "value": fut.result(timeout=WAIT)}
    except TimeoutError:
        return {"ok": False, "error": {"type": "Timeout", "code": None, "message": "no result"}}
    except Exception as exc:
        return {"ok": False, "error": error_json(exc)}


def attempt(fn: Callable[[], Any]) -> dict[str, Any]:
    try:
        return {"ok": True, "value": fn()}
    except Exception as exc:
        return {"ok": False, "error": error_json(exc)}


def session_json(s: Any) -> dict[str, Any]:
    return {
        "id": s.id,
        "application": s.application,
        "state": s.state.name,
        "pending": s.pending,
        "running": s.running,
        "succeed": s.succeed,
        "failed": s.failed,
        "completed": s.completion_time is not None,
        "created_ms": int(s.creation_time.timestamp() * 1000),
        "common_data": s.common_data(),
        "events": [{"code": e.code, "message": e.message} for e in s.events or []],
    }


def task_json(t: Any) -> dict[str, Any]:
    return {
        "id": t.id,
        "session_id": t.session_id,
        "state": t.state.name,
        "input": t.input,
        "output": t.output,
        "completed": t.completion_time is not None,
        "events": [{"code": e.code, "message": e.message} for e in t.events or []],
    }


def app_json(a: Any) -> dict[str, Any]:
    return {
        "name": a.name,
        "id": a.id,
        "state": a.state.name,
        "shim": a.shim.name if a.shim is not None else None,
        "description": a.description,
        "labels": a.labels,
        "command": a.command,
        "arguments": a.arguments,
        "environments": a.environments,
        "working_directory": a.working_directory,
        "max_instances": a.max_instances,
        "delay_release": a.delay_release,
        "url": a.url,
        "installer": a.installer,
        "created_ms": int(a.creation_time.timestamp() * 1000),
    }


# --------------------------------------------------------------------------- applications


@scenario
def register_apps(apps: dict[str, dict[str, Any]]) -> list[str]:
    for name, attrs in apps.items():
        flamepy.register_application(name, attrs)
    return sorted(a.name for a in flamepy.list_applications())


@scenario
def application_lifecycle(name: str, attrs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    flamepy.register_application(name, attrs)
    out["get"] = app_json(flamepy.get_application(name))
    out["listed"] = name in [a.name for a in flamepy.list_applications()]
    out["duplicate"] = attempt(lambda: flamepy.register_application(name, attrs))
    flamepy.unregister_application(name)
    out["after_unregister"] = flamepy.get_application(name)
    out["listed_after"] = name in [a.name for a in flamepy.list_applications()]
    return out


@scenario
def application_validation(command: str) -> dict[str, Any]:
    schema = flamepy.ApplicationSchema(
        input='{"type": "string"}', output='{"type": "object"}', common_data=None
    )
    with_schema = attempt(
        lambda: flamepy.register_application(
            "conf-schema", flamepy.ApplicationAttributes(command=command, schema=schema)
        )
    )
    got = flamepy.get_application("conf-schema")
    out = {
        "with_schema": with_schema,
        "schema": None
        if got is None or got.schema is None
        else {"input": got.schema.input, "output": got.schema.output},
        "bad_name": attempt(
            lambda: flamepy.register_application("-bad/name", {"command": command})
        ),
        "relative_workdir": attempt(
            lambda: flamepy.register_application(
                "conf-relative", {"command": command, "working_directory": "relative/dir"}
            )
        ),
        "bad_schema": attempt(
            lambda: flamepy.register_application(
                "conf-bad-schema",
                flamepy.ApplicationAttributes(
                    command=command, schema=flamepy.ApplicationSchema(input="{not json")
                ),
            )
        ),
        "unregister_unknown": attempt(lambda: flamepy.unregister_application("conf-never")),
    }
    out["registered"] = sorted(
        a.name for a in flamepy.list_applications() if a.name.startswith("conf-")
    )
    flamepy.unregister_application("conf-schema")
    return out


@scenario
def get_application(name: str) -> dict[str, Any] | None:
    app = flamepy.get_application(name)
    return None if app is None else app_json(app)


@scenario
def unregister_with_open_session(app: str, name: str, attrs: dict[str, Any]) -> dict[str, Any]:
    flamepy.register_application(name, attrs)
    ssn = flamepy.create_session(name)
    blocked = attempt(lambda: flamepy.unregister_application(name))
    still_there = flamepy.get_application(name) is not None
    ssn.close()
    after_close = attempt(lambda: flamepy.unregister_application(name))
    return {
        "blocked": blocked,
        "still_there": still_there,
        "after_close": after_close,
        "gone": flamepy.get_application(name) is None,
    }


# --------------------------------------------------------------------------- core client


@scenario
def create_and_invoke(app: str, common_data: bytes | None, inputs: list[bytes]) -> dict[str, Any]:
    ssn = flamepy.create_session(app, common_data=common_data)
    outputs = [outcome(ssn.run(data)) for data in inputs]
    return {"session": session_json(ssn), "outputs": outputs}


@scenario
def run_futures(app: str, count: int) -> dict[str, Any]:
    # Two instances at most: concurrency without paying a process launch per task.
    ssn = flamepy.create_session(app, common_data=b"F", max_instances=2)
    futures = [ssn.run(f"in-{i}".encode()) for i in range(count)]
    done, not_done = wait(futures, timeout=WAIT)
    results = [outcome(f) for f in futures]
    tasks = sorted((task_json(t) for t in ssn.list_tasks()), key=lambda t: int(t["id"]))
    info = session_json(flamepy.get_session(ssn.id))
    ssn.close()
    return {
        "done": len(done),
        "not_done": len(not_done),
        "results": results,
        "tasks": tasks,
        "session": info,
    }


@scenario
def session_queries(app: str) -> dict[str, Any]:
    ssn = flamepy.create_session(app, common_data=b"Q")
    first = outcome(ssn.run(b"a"))
    second = outcome(ssn.run(b"fail:second task fails"))
    info = session_json(flamepy.get_session(ssn.id))
    listed = [session_json(s) for s in flamepy.list_sessions() if s.id == ssn.id]
    tasks = sorted((task_json(t) for t in ssn.list_tasks()), key=lambda t: int(t["id"]))
    got = task_json(ssn.get_task("1"))
    got2 = task_json(ssn.get_task("2"))
    return {
        "id": ssn.id,
        "first": first,
        "second": second,
        "info": info,
        "listed": listed,
        "tasks": tasks,
        "task1": got,
        "task2": got2,
    }


@scenario
def close_session(app: str) -> dict[str, Any]:
    ssn = flamepy.create_session(app)
    first = outcome(ssn.run(b"before close"))
    ssn.close()
    info = session_json(flamepy.get_session(ssn.id))
    create_after = attempt(lambda: ssn.create_task(b"after close").id)
    close_again = attempt(lambda: session_json(flamepy.close_session(ssn.id)))
    return {"first": first, "info": info, "create_after": create_after, "close_again": close_again}


@scenario
def close_unknown(session_id: str) -> dict[str, Any]:
    return {
        "close": attempt(lambda: flamepy.close_session(session_id).id),
        "get": attempt(lambda: flamepy.get_session(session_id).id),
    }


@scenario
def open_existing(app: str) -> dict[str, Any]:
    ssn = flamepy.create_session(app, common_data=b"OPEN")
    first = outcome(ssn.run(b"one"))
    opened = flamepy.open_session(ssn.id)
    second = outcome(opened.run(b"two"))
    tasks = sorted(t.id for t in opened.list_tasks())
    return {
        "created": ssn.id,
        "opened": session_json(opened),
        "first": first,
        "second": second,
        "task_ids": tasks,
    }


@scenario
def open_create_if_absent(app: str, session_id: str) -> dict[str, Any]:
    spec = SessionAttributes(application=app, common_data=b"SPEC", min_instances=0)
    created = flamepy.open_session(session_id, spec)
    result = outcome(created.run(b"hi"))
    again = flamepy.open_session(session_id, spec)
    return {"created": session_json(created), "result": result, "again": session_json(again)}


@scenario
def open_existing_by_id(session_id: str) -> dict[str, Any]:
    ssn = flamepy.open_session(session_id)
    info = session_json(flamepy.get_session(session_id))
    result = outcome(ssn.run(b"again"))
    tasks = sorted(t.id for t in ssn.list_tasks())
    ssn.close()
    return {
        "app": get_application(ssn.application),
        "info": info,
        "result": result,
        "task_ids": tasks,
    }


@scenario
def open_ids(app: str, ids: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for sid in ids:

        def create_and_close(sid: str = sid) -> str:
            ssn = flamepy.open_session(sid, SessionAttributes(application=app))
            same = flamepy.get_session(sid).id
            ssn.close()
            return same

        out[sid] = attempt(create_and_close)
    return out


@scenario
def open_spec_mismatch(app: str, other_app: str) -> dict[str, Any]:
    ssn = flamepy.create_session(app)
    out = {
        "application": attempt(
            lambda: flamepy.open_session(ssn.id, SessionAttributes(application=other_app)).id
        ),
        "min_instances": attempt(
            lambda: (
                flamepy.open_session(ssn.id, SessionAttributes(application=app, min_instances=3)).id
            )
        ),
        "max_instances": attempt(
            lambda: (
                flamepy.open_session(ssn.id, SessionAttributes(application=app, max_instances=2)).id
            )
        ),
        "resreq": attempt(
            lambda: (
                flamepy.open_session(
                    ssn.id,
                    SessionAttributes(
                        application=app,
                        resreq=flamepy.ResourceRequirement.from_string("cpu=3,mem=2g"),
                    ),
                ).id
            )
        ),
        "default_resreq_matches": attempt(
            lambda: (
                flamepy.open_session(
                    ssn.id,
                    SessionAttributes(
                        application=app,
                        resreq=flamepy.ResourceRequirement.from_string("cpu=1,mem=1g"),
                    ),
                ).id
            )
        ),
        "common_data_ignored": attempt(
            lambda: (
                flamepy.open_session(
                    ssn.id, SessionAttributes(application=app, common_data=b"different")
                ).id
            )
        ),
    }
    ssn.close()
    return out


@scenario
def open_not_found(session_id: str) -> dict[str, Any]:
    return attempt(lambda: flamepy.open_session(session_id).id)


@scenario
def open_closed(app: str) -> dict[str, Any]:
    ssn = flamepy.create_session(app)
    ssn.close()
    return {
        "plain": attempt(lambda: flamepy.open_session(ssn.id).id),
        "with_spec": attempt(
            lambda: flamepy.open_session(ssn.id, SessionAttributes(application=app)).id
        ),
    }


@scenario
def create_duplicate(app: str) -> dict[str, Any]:
    ssn = flamepy.create_session(app)
    return {
        "duplicate": attempt(lambda: flamepy.create_session(app, session_id=ssn.id).id),
        "unknown_app": attempt(lambda: flamepy.create_session("conf-no-such-app").id),
    }


@scenario
def watch_terminal(app: str) -> dict[str, Any]:
    ssn = flamepy.create_session(app)
    value = outcome(ssn.run(b"w"))
    updates = [task_json(t) for t in ssn.watch_task("1", timeout=WAIT)]
    return {"value": value, "updates": updates}


@scenario
def watch_unknown(app: str) -> dict[str, Any]:
    ssn = flamepy.create_session(app)
    out = {
        "unknown_task": attempt(lambda: [t.id for t in ssn.watch_task("99", timeout=WAIT)]),
        "get_unknown_task": attempt(lambda: ssn.get_task("99").id),
    }
    ssn.close()
    return out


@scenario
def cluster_views(app: str) -> dict[str, Any]:
    # min_instances keeps the instance bound however long the listing takes after the task.
    ssn = flamepy.create_session(app, min_instances=1)
    value = outcome(ssn.run(b"bound"))
    executors = [
        {"id": e.metadata.id, "state": e.status.state, "session_id": e.status.session_id}
        for e in flamepy.list_executors()
    ]
    nodes = [{"name": n.metadata.name, "state": n.status.state} for n in flamepy.list_nodes()]
    ssn.close()
    return {"id": ssn.id, "value": value, "executors": executors, "nodes": nodes}


@scenario
def ping(app: str, count: int) -> dict[str, Any]:
    info = flamepy.get_application(app)
    ssn = flamepy.create_session(app)
    results = [outcome(ssn.run(b"ping")) for _ in range(count)]
    ssn.close()
    return {"app": None if info is None else app_json(info), "results": results}


# --------------------------------------------------------------------------- service layer


@scenario
def service_context(app: str, texts: list[str]) -> dict[str, Any]:
    with ServiceSession(app, ctx=["seed"]) as ssn:
        replies = [ssn.invoke({"op": "append", "text": t}) for t in texts]
        remote = ssn.invoke({"op": "context"})
        local = ssn.context()
        none = ssn.invoke({"op": "none"})
        sid = ssn.id()
    info = session_json(flamepy.get_session(sid))
    return {
        "id": sid,
        "replies": replies,
        "remote": remote,
        "local": local,
        "none": none,
        "info": info,
    }


@scenario
def service_without_context(app: str) -> dict[str, Any]:
    with ServiceSession(app) as ssn:
        return {
            "append": attempt(lambda: ssn.invoke({"op": "append", "text": "x"})),
            "context": ssn.invoke({"op": "context"}),
            "local": ssn.context(),
        }


@scenario
def service_failure(app: str, text: str) -> dict[str, Any]:
    with ServiceSession(app, ctx=[]) as ssn:
        failed = attempt(lambda: ssn.invoke({"op": "fail", "text": text}))
        after = ssn.invoke({"op": "append", "text": "after"})
        tasks = sorted(
            (task_json(t) for t in ssn._session.list_tasks()), key=lambda t: int(t["id"])
        )
    return {"failed": failed, "after": after, "tasks": tasks}


@scenario
def service_open_by_id(app: str) -> dict[str, Any]:
    first = ServiceSession(app, ctx=["a"])
    first.invoke({"op": "append", "text": "b"})
    sid = first.id()
    second = ServiceSession(session_id=sid)
    reply = second.invoke({"op": "append", "text": "c"})
    ctx = second.context()
    second.close()
    return {"reply": reply, "context": ctx}


@scenario
def service_context_of(session_id: str) -> Any:
    ssn = ServiceSession(session_id=session_id)
    return ssn.context()


@scenario
def enter_fails(app: str, want_code: int, wait: float = WAIT) -> dict[str, Any]:
    ssn = flamepy.create_session(app)
    fut = ssn.run(b"never runs")
    deadline = time.monotonic() + wait
    info = session_json(flamepy.get_session(ssn.id))
    while time.monotonic() < deadline and not any(e["code"] == want_code for e in info["events"]):
        time.sleep(0.2)
        info = session_json(flamepy.get_session(ssn.id))
    task = task_json(ssn.get_task("1"))
    pending_before_close = not fut.done()
    ssn.close()
    closed = session_json(flamepy.get_session(ssn.id))
    return {
        "id": ssn.id,
        "info": info,
        "task": task,
        "pending_before_close": pending_before_close,
        "future": outcome(fut),
        "closed": closed,
    }


# --------------------------------------------------------------------------- object cache


def _flight(endpoint: str) -> flight.FlightClient:
    return flight.FlightClient(endpoint.replace("grpcs://", "grpc+tls://"))


def _raw_get(ref: Any, version: int) -> dict[str, Any]:
    table = _flight(ref.endpoint).do_get(flight.Ticket(f"{ref.key}:{version}".encode())).read_all()
    out: dict[str, Any] = {
        "columns": table.column_names,
        "rows": table.num_rows,
        "metadata": {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()},
    }
    if "kind" in table.column_names:
        out["kinds"] = table.column("kind").to_pylist()
        out["versions"] = table.column("version").to_pylist()
    return out


def _ref_json(ref: Any) -> dict[str, Any]:
    return {"endpoint": ref.endpoint, "key": ref.key, "version": ref.version}


def _concat(base: list[Any], deltas: list[list[Any]]) -> list[Any]:
    out = list(base)
    for delta in deltas:
        out.extend(delta)
    return out


@scenario
def cache_roundtrip(prefix: str) -> dict[str, Any]:
    ref = flamepy.put_object(prefix, {"a": 1, "b": [1, 2]})
    blob = fcache.put_object(prefix, b"\x00raw bytes\xff")
    decoded = flamepy.ObjectRef.decode(ref.encode())
    return {
        "ref": _ref_json(ref),
        "value": flamepy.get_object(ref),
        "cached": flamepy.get_object(ref),
        "bytes": fcache.get_object(blob),
        "bytes_ref": _ref_json(blob),
        "decoded": _ref_json(decoded),
        "fresh": flamepy.get_object(flamepy.ObjectRef(ref.endpoint, ref.key, 0)),
        "raw_not_modified": _raw_get(ref, ref.version),
        "raw_full": _raw_get(ref, 0),
    }


@scenario
def cache_update_patch(prefix: str) -> dict[str, Any]:
    ref1 = fcache.put_object(prefix, [1])
    ref2 = fcache.update_object(ref1, [1, 2])
    ref3 = fcache.patch_object(ref2, [3])
    ref4 = fcache.patch_object(ref3, [4])
    return {
        "versions": [ref1.version, ref2.version, ref3.version, ref4.version],
        "keys": sorted({ref1.key, ref2.key, ref3.key, ref4.key}),
        "base_only": fcache.get_object(ref4),
        "materialized": fcache.get_object(ref4, _concat),
        "stale_ref": fcache.get_object(ref1, _concat),
        "raw_full": _raw_get(ref4, 0),
        "raw_not_modified": _raw_get(ref4, 4),
        "raw_patches_only": _raw_get(ref4, 2),
        "update_drops_patches": _update_drops_patches(ref4),
        "patch_missing": attempt(
            lambda: fcache.patch_object(
                flamepy.ObjectRef(ref1.endpoint, prefix + "/no-such-object", 1), [0]
            )
        ),
    }


def _update_drops_patches(ref: Any) -> dict[str, Any]:
    ref5 = fcache.update_object(ref, ["fresh"])
    return {
        "version": ref5.version,
        "value": fcache.get_object(ref5, _concat),
        "raw": _raw_get(ref5, 0),
    }


@scenario
def cache_foreign_patch(prefix: str) -> dict[str, Any]:
    """A patch written by someone else reaches a reader that has the older version cached."""
    ref = fcache.put_object(prefix, [1])
    ref = fcache.patch_object(ref, [2])
    seen = fcache.get_object(ref, _concat)
    # A foreign writer: flamepy's own wire form, sent without flamepy so its local cache stays.
    batch = pa.RecordBatch.from_arrays(
        [
            pa.array([0], type=pa.uint64()),
            pa.array([b"FLM\x00" + cloudpickle.dumps([3])], type=pa.binary()),
        ],
        names=["version", "data"],
    )
    writer, reader = _flight(ref.endpoint).do_put(
        flight.FlightDescriptor.for_command(f"PATCH:{ref.key}".encode()), batch.schema
    )
    writer.write_batch(batch)
    writer.done_writing()
    meta = reader.read()
    writer.close()
    new_ref = flamepy.ObjectRef.decode(meta.to_pybytes())
    raw = _raw_get(ref, ref.version)
    after = fcache.get_object(new_ref, _concat)
    return {"seen": seen, "foreign": _ref_json(new_ref), "raw_patches_only": raw, "after": after}


@scenario
def cache_native_arrow(prefix: str) -> dict[str, Any]:
    table = pa.table({"x": pa.array([1, 2, 3], type=pa.int64()), "y": ["a", "b", "c"]})
    ref = fcache.put_object(prefix, table)
    back = fcache.get_object(ref)
    batch = table.to_batches()[0]
    bref = fcache.put_object(prefix, batch)
    bback = fcache.get_object(bref)
    raw = _raw_get(ref, 0)
    updated = fcache.update_object(ref, table.slice(1))
    return {
        "ref": _ref_json(ref),
        "type": type(back).__name__,
        "equal": isinstance(back, pa.Table) and back.equals(table),
        "batch_type": type(bback).__name__,
        "batch_rows": bback.num_rows,
        "raw": raw,
        "raw_updated": _raw_get(ref, 0),
        "updated_version": updated.version,
        "updated_rows": fcache.get_object(flamepy.ObjectRef(ref.endpoint, ref.key, 0)).num_rows,
    }


@scenario
def cache_delete(app: str) -> dict[str, Any]:
    def gone(ref: Any) -> bool:
        try:
            fcache.get_object(flamepy.ObjectRef(ref.endpoint, ref.key, 0))
        except Exception:
            return True
        return False

    k1 = fcache.put_object(f"{app}/s1", "k1")
    k2 = fcache.put_object(f"{app}/s1", "k2")
    s2 = fcache.put_object(f"{app}/s2", "s2")
    s3 = fcache.put_object(f"{app}/s3", "s3")
    other = fcache.put_object(f"{app}-other/s1", "other")
    out: dict[str, Any] = {}
    fcache.delete_objects(k1.key)
    out["by_key"] = {"k1": gone(k1), "k2": gone(k2)}
    fcache.delete_objects(f"{app}/s1")
    out["by_session"] = {"k2": gone(k2), "s2": gone(s2)}
    fcache.delete_objects(f"{app}/*")
    out["by_app"] = {"s2": gone(s2), "s3": gone(s3), "other_app": gone(other)}
    out["delete_nothing"] = attempt(lambda: fcache.delete_objects(f"{app}/empty"))
    out["listed"] = sorted(
        info.descriptor.path[0].decode() if info.descriptor.path else ""
        for info in _flight(k1.endpoint).list_flights()
    )
    out["list_tickets"] = sorted(
        info.endpoints[0].ticket.ticket.decode() for info in _flight(k1.endpoint).list_flights()
    )
    out["other_key"] = other.key
    return out


@scenario
def cache_many_writes(prefix: str, objects: int, patches: int) -> dict[str, Any]:
    refs = [fcache.put_object(prefix, {"i": i, "pad": "x" * 512}) for i in range(objects)]
    ref = fcache.put_object(prefix, [])
    for i in range(patches):
        ref = fcache.patch_object(ref, [i])
    bad = [
        r.key
        for i, r in enumerate(refs)
        if fcache.get_object(flamepy.ObjectRef(r.endpoint, r.key, 0))["i"] != i
    ]
    joined = fcache.get_object(flamepy.ObjectRef(ref.endpoint, ref.key, 0), _concat)
    return {
        "bad": bad,
        "version": ref.version,
        "joined_ok": joined == list(range(patches)),
        "joined_len": len(joined),
    }


@scenario
def cache_put_for_restart(prefix: str) -> dict[str, Any]:
    ref = fcache.put_object(prefix, {"hello": "world"})
    ref = fcache.patch_object(ref, {"patch": 1})
    table_ref = fcache.put_object(prefix, pa.table({"x": [1, 2]}))
    blob = fcache.put_object(prefix, b"raw")
    return {"ref": _ref_json(ref), "table": _ref_json(table_ref), "blob": _ref_json(blob)}


@scenario
def cache_get_after_restart(
    ref: dict[str, Any], table: dict[str, Any], blob: dict[str, Any]
) -> dict[str, Any]:
    r = flamepy.ObjectRef(**ref)
    out = {
        "base": fcache.get_object(r),
        "all": fcache.get_object(r, lambda base, deltas: [base, *deltas]),
        "table": fcache.get_object(flamepy.ObjectRef(**table)).to_pydict(),
        "blob": fcache.get_object(flamepy.ObjectRef(**blob)),
    }
    out["next_version"] = fcache.patch_object(r, {"patch": 2}).version
    return out


# --------------------------------------------------------------------------- entry point


def run_one(name: str, args: dict[str, Any]) -> dict[str, Any]:
    try:
        return {"ok": True, "result": SCENARIOS[name](**from_json(args))}
    except BaseException as exc:
        return {"ok": False, "error": error_json(exc), "traceback": traceback.format_exc()}


def reply(result: dict[str, Any]) -> None:
    sys.stdout.write("\n" + REPLY_MARKER + json.dumps(to_json(result)) + "\n")
    sys.stdout.flush()


def main() -> None:
    if sys.argv[1:] == ["--serve"]:
        # One request per stdin line ({"name", "args"}), one reply line each; EOF ends the
        # worker. Scenarios share flamepy's process-wide connection, as one application would.
        for line in sys.stdin:
            if line.strip():
                request = json.loads(line)
                reply(run_one(request["name"], request["args"]))
    else:
        reply(run_one(sys.argv[1], json.loads(sys.argv[2] if len(sys.argv) > 2 else "{}")))
    sys.stderr.flush()
    # flamepy's watcher threads may still block on a stream; do not wait for them.
    os._exit(0)


if __name__ == "__main__":
    main()
