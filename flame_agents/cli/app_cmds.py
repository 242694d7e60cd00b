"""The flmctl verbs: ``register``, ``update``, ``unregister``, ``list``, ``view``, ``create``,
``close``, with the options and short flags of Flame's ``flmctl`` (flame-wire §6).

People get tables and ``key: value`` views; ``-o json`` prints the same data as JSON for scripts.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from flame_agents.cli import _client, app_yaml
from flame_agents.cli._client import connection
from flame_agents.cli.agent_support import agent_state, print_agent_state, spec_with_agent_schema
from flame_agents.cli.output import Column, format_time, print_json, print_kv, print_table
from flame_agents.errors import FlameAgentsError, NotFoundError
from flame_agents.types import (
    Application,
    ApplicationSpec,
    ResourceRequirement,
    SessionInfo,
)

if TYPE_CHECKING:  # the client stack is imported only when a verb connects
    from flame_agents.core import Connection

__all__ = ["add_parsers"]

_APP_COLUMNS: Sequence[Column] = (
    ("NAME", lambda a: a.name),
    ("STATE", lambda a: a.state),
    ("SHIM", lambda a: a.spec.shim),
    ("COMMAND", lambda a: " ".join([a.spec.command or "", *a.spec.arguments]).strip()),
    ("CREATED", lambda a: format_time(a.creation_time)),
)
_SESSION_COLUMNS: Sequence[Column] = (
    ("ID", lambda s: s.id),
    ("APPLICATION", lambda s: s.application),
    ("STATE", lambda s: s.state),
    ("PENDING", lambda s: s.pending),
    ("RUNNING", lambda s: s.running),
    ("SUCCEED", lambda s: s.succeed),
    ("FAILED", lambda s: s.failed),
    ("CANCELLED", lambda s: s.cancelled),
    ("CREATED", lambda s: format_time(s.creation_time)),
)
_TASK_COLUMNS: Sequence[Column] = (
    ("ID", lambda t: t.id),
    ("STATE", lambda t: t.state),
    ("CREATED", lambda t: format_time(t.creation_time)),
    ("COMPLETED", lambda t: format_time(t.completion_time)),
    ("ERROR", lambda t: t.error_message() or ""),
)
_EXECUTOR_COLUMNS: Sequence[Column] = (
    ("ID", lambda e: e["id"]),
    ("NODE", lambda e: e["node"]),
    ("STATE", lambda e: e["state"]),
    ("SESSION", lambda e: e["session_id"] or ""),
)
_INSTANCE_COLUMNS: Sequence[Column] = (
    ("INSTANCE", lambda e: e["id"]),
    ("PID", lambda e: e["pid"] if e["pid"] is not None else "-"),
    ("STATE", lambda e: e["state"]),
    ("UPTIME", lambda e: _uptime(e["start_time"])),
    ("NODE", lambda e: e["node"]),
)


def _uptime(start_ms: int | None, *, now: float | None = None) -> str:
    """``3s``, ``4m05s``, ``2h03m`` or ``1d02h`` since ``start_ms`` (epoch ms); ``-`` if unknown."""
    if start_ms is None:
        return "-"
    seconds = max(0, int((now if now is not None else time.time()) - start_ms / 1000))
    minutes, secs = divmod(seconds, 60)
    hours, mins = divmod(minutes, 60)
    days, hrs = divmod(hours, 24)
    if days:
        return f"{days}d{hrs:02d}h"
    if hours:
        return f"{hours}h{mins:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _spec_pairs(spec: ApplicationSpec) -> list[tuple[str, Any]]:
    envs = ", ".join(f"{k}={v}" for k, v in sorted(spec.environments.items()))
    pairs: list[tuple[str, Any]] = [
        ("shim", spec.shim),
        ("command", spec.command),
        ("arguments", " ".join(spec.arguments)),
        ("working_directory", spec.working_directory),
        ("environments", envs),
        ("description", spec.description),
        ("labels", ", ".join(spec.labels)),
        ("image", spec.image),
        ("max_instances", spec.max_instances),
        ("delay_release", spec.delay_release),
        ("url", spec.url),
        ("installer", spec.installer),
    ]
    if spec.schema is not None:
        pairs += [
            ("schema.input", spec.schema.input),
            ("schema.output", spec.schema.output),
            ("schema.common_data", spec.schema.common_data),
        ]
    return pairs


def _load_specs(path: str) -> list[tuple[app_yaml.AppDocument, ApplicationSpec]]:
    """Every application of a YAML file with its spec, all checked before any is sent, so a
    typo in document 3 does not leave documents 1 and 2 registered."""
    docs = app_yaml.load_app_file(path)
    for doc in docs:
        app_yaml.require_runnable(doc)
    return [(doc, ApplicationSpec.from_dict(spec_with_agent_schema(doc))) for doc in docs]


def _in_document(doc: app_yaml.AppDocument, exc: FlameAgentsError, op: str) -> FlameAgentsError:
    """The runtime's refusal of ``doc`` (``spec.working_directory ... does not exist``),
    worded like the loader's own errors: the file and document, then the field."""
    text = exc.message.removeprefix(f"{op}: ")
    return type(exc)(f"{doc.source}, document {doc.index}: {text}", **exc.fields)


def _cmd_register(args: argparse.Namespace) -> int:
    specs = _load_specs(args.file)
    with connection(args.endpoint) as conn:
        for doc, spec in specs:
            try:
                conn.register_application(doc.name, spec)
            except FlameAgentsError as exc:
                raise _in_document(doc, exc, "register_application") from exc
            print(f"registered {doc.name}")
    return 0


def _cmd_update(args: argparse.Namespace) -> int:
    specs = _load_specs(args.application)
    with connection(args.endpoint) as conn:
        for doc, spec in specs:
            try:
                conn.update_application(doc.name, spec)
            except FlameAgentsError as exc:
                raise _in_document(doc, exc, "update_application") from exc
            print(f"updated {doc.name}")
    return 0


def _cmd_unregister(args: argparse.Namespace) -> int:
    with connection(args.endpoint) as conn:
        conn.unregister_application(args.application)
    print(f"unregistered {args.application}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    with connection(args.endpoint) as conn:
        if args.application:
            apps: list[Application] = sorted(conn.list_applications(), key=lambda a: a.name)
            rows: list[Any] = apps
            columns = _APP_COLUMNS
        elif args.session:
            sessions: list[SessionInfo] = list(conn.list_sessions())
            rows = sorted(sessions, key=lambda s: (s.creation_time is None, s.creation_time, s.id))
            columns = _SESSION_COLUMNS
        else:
            rows = _client.list_executors(conn)
            columns = _EXECUTOR_COLUMNS
    if args.output == "json":
        print_json(rows)
    else:
        print_table(columns, rows)
    return 0


def _view_application(conn: Connection, name: str, output: str) -> None:
    app: Application | None = conn.get_application(name)
    if app is None:
        raise NotFoundError(
            f"application {name!r} is not registered (see `flmctl list -a`)", application=name
        )
    if output == "json":
        print_json(app)
        return
    print_kv(
        [
            ("name", app.name),
            ("state", app.state),
            ("created", format_time(app.creation_time)),
            *_spec_pairs(app.spec),
        ]
    )


def _view_task(conn: Connection, session_id: str, task_id: str, output: str) -> None:
    task = conn.get_task(session_id, task_id)
    if output == "json":
        print_json(task)
        return
    print_kv(
        [
            ("id", task.id),
            ("session", task.session_id),
            ("state", task.state),
            ("created", format_time(task.creation_time)),
            ("completed", format_time(task.completion_time)),
            ("input", task.input),
            ("output", task.output),
            ("error", task.error_message()),
        ]
    )


def _view_session(conn: Connection, session_id: str, output: str) -> None:
    info: SessionInfo = conn.get_session(session_id)
    tasks = sorted(conn.list_tasks(session_id), key=lambda t: int(t.id))
    instances = sorted(
        (
            row
            for row in _client.list_executors(conn, with_process=True)
            if row["session_id"] == session_id
        ),
        key=lambda row: (row["start_time"] is None, row["start_time"] or 0, row["id"]),
    )
    state = agent_state(info.common_data)
    if output == "json":
        print_json({"session": info, "tasks": tasks, "instances": instances, "agent_state": state})
        return
    print_kv(
        [
            ("id", info.id),
            ("application", info.application),
            ("state", info.state),
            ("created", format_time(info.creation_time)),
            ("completed", format_time(info.completion_time)),
            ("priority", info.priority),
            ("min_instances", info.min_instances),
            ("max_instances", info.max_instances),
            ("resreq", info.resreq),
            ("common_data", info.common_data),
            *[(f"event {e.code}", e.message) for e in info.events],
        ]
    )
    print()
    print_table(_TASK_COLUMNS, tasks)
    print()
    print_table(_INSTANCE_COLUMNS, instances)
    if state is not None:
        print()
        print_agent_state(state)


def _cmd_view(args: argparse.Namespace) -> int:
    with connection(args.endpoint) as conn:
        if args.application:
            _view_application(conn, args.application, args.output)
        elif args.task:
            _view_task(conn, args.session, args.task, args.output)
        else:
            _view_session(conn, args.session, args.output)
    return 0


def _check_view(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.task is not None and args.session is None:
        parser.error("-t/--task needs -s/--session (task ids are per session)")


def _priority(text: str) -> int:
    # The wire field is uint32; reject what the Frontend would refuse, with a usage error.
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be between 0 and {2**32 - 1}, got {value}")
    return value


def _cmd_create(args: argparse.Namespace) -> int:
    resreq = ResourceRequirement.from_string(args.resreq) if args.resreq else None
    with connection(args.endpoint) as conn:
        session = conn.create_session(args.application, priority=args.priority, resreq=resreq)
        if args.output == "json":
            print_json(session.info())
        else:
            print(session.id)
    return 0


def _cmd_close(args: argparse.Namespace) -> int:
    with connection(args.endpoint) as conn:
        conn.close_session(args.session)
    print(f"closed {args.session}")
    return 0


def _cmd_cancel(args: argparse.Namespace) -> int:
    with connection(args.endpoint) as conn:
        tasks = conn.cancel_task(args.session, args.task)
    if not tasks:
        print(f"no task of {args.session} in flight")
    for task in tasks:
        print(f"task {task.id} {task.state.name}")
    return 0


def _add_output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--output",
        choices=("table", "json"),
        default="table",
        help="table for people (default) or json for scripts",
    )


def add_parsers(verbs: Any) -> None:
    """Add the flmctl verbs to the sub-parsers ``verbs``."""
    p = verbs.add_parser(
        "register",
        help="register the applications of an application YAML file",
        description="Register every application document of FILE (documents separated by "
        "---). A relative working_directory is resolved against the folder of FILE.",
    )
    p.add_argument("-f", "--file", required=True, metavar="FILE", help="application YAML")
    p.set_defaults(func=_cmd_register)

    p = verbs.add_parser("update", help="replace the spec of registered applications from YAML")
    p.add_argument("-a", "--application", required=True, metavar="FILE", help="application YAML")
    p.set_defaults(func=_cmd_update)

    p = verbs.add_parser("unregister", help="remove a registered application")
    p.add_argument("-a", "--application", required=True, metavar="NAME")
    p.set_defaults(func=_cmd_unregister)

    p = verbs.add_parser("list", help="list applications, sessions or executors")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("-a", "--application", action="store_true", help="list applications")
    which.add_argument("-s", "--session", action="store_true", help="list sessions")
    which.add_argument("-e", "--executor", action="store_true", help="list executors")
    _add_output(p)
    p.set_defaults(func=_cmd_list)

    p = verbs.add_parser(
        "view",
        help="show one application, session or task",
        description="Show an application (-a), a session and its tasks (-s), or one task of a "
        "session (-s SSN -t TASK).",
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("-a", "--application", metavar="APP")
    which.add_argument("-s", "--session", metavar="SSN")
    p.add_argument("-t", "--task", metavar="TASK", help="task id (with -s)")
    _add_output(p)
    p.set_defaults(func=_cmd_view, validate_usage=functools.partial(_check_view, p))

    p = verbs.add_parser("create", help="create a session of an application and print its id")
    p.add_argument("-a", "--app", "--application", dest="application", required=True)
    p.add_argument(
        "-r", "--resreq", metavar="RESREQ", help='resources per instance, e.g. "cpu=1,mem=1g"'
    )
    p.add_argument("-p", "--priority", type=_priority, default=0, help="priority, higher first")
    _add_output(p)
    p.set_defaults(func=_cmd_create)

    p = verbs.add_parser("close", help="close a session (its pending tasks are cancelled)")
    p.add_argument("-s", "--session", required=True, metavar="ID")
    p.set_defaults(func=_cmd_close)

    p = verbs.add_parser(
        "cancel",
        help="cancel a task of a session, or every task of it in flight",
        description="Cancel task TASK of session ID (without -t: each of its tasks that has not "
        "ended) and print how each ended. Needs the flame-agents runtime.",
    )
    p.add_argument("-s", "--session", required=True, metavar="ID")
    p.add_argument("-t", "--task", metavar="TASK", help="task id (default: every task in flight)")
    p.set_defaults(func=_cmd_cancel)
