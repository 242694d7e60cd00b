"""What the CLI adds for agent applications: schemas from an agent label at registration, the
agent state in ``view -s``, and the ``schema`` verb that keeps the example agents' JSON Schemas
under ``schemas/`` current.

The agent layer (pydantic, user agent classes) is imported only when one of these is used.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from flame_agents.cli.app_yaml import AppDocument
from flame_agents.errors import FlameAgentsError, InvalidStateError

__all__ = ["add_parser", "agent_state", "print_agent_state", "spec_with_agent_schema"]


def spec_with_agent_schema(doc: AppDocument) -> dict[str, Any]:
    """``doc.spec``, with ``schema`` filled from the agent class its ``flame-agents.agent=``
    label names, unless the document gives a schema itself."""
    from flame_agents.agent.cli_support import AGENT_LABEL, schema_for_labels

    labels = doc.spec.get("labels") or []
    if "schema" in doc.spec or not any(label.startswith(AGENT_LABEL) for label in labels):
        return doc.spec
    # The agent module sits next to the service, in the working directory.
    folder = Path(doc.spec.get("working_directory") or Path(doc.source).parent)
    schema = schema_for_labels(labels, working_directory=folder)
    return {**doc.spec, "schema": schema} if schema else doc.spec


def agent_state(common_data: bytes | None) -> dict[str, Any] | None:
    """The agent state of a session (None for other sessions); a cache failure is reported in
    the result rather than failing the whole view."""
    from flame_agents.agent.cli_support import describe_agent_state

    try:
        return describe_agent_state(common_data)
    except FlameAgentsError as exc:
        return {"error": exc.message}


def print_agent_state(state: dict[str, Any]) -> None:
    """The agent state block of ``view -s`` for people: a summary line, then the context."""
    if "error" in state:
        print(f"agent state: unavailable ({state['error']})")
        return
    print(
        f"agent state: version {state['version']}, {state['patches']} patches, "
        f"{state['bytes']} bytes, {state['commits']} commits"
    )
    pending = state.get("pending_interrupt")
    if pending:
        print(
            f"pending interrupt: turn {pending['idempotency_key']} (interrupt "
            f"{pending['index']}) waits for an answer; payload "
            f"{json.dumps(pending['payload'], default=str)}"
        )
    print(json.dumps(state["context"], indent=2, default=str))


def _repo_root() -> Path:
    for root in (Path(__file__).resolve().parents[2], Path.cwd()):
        if (root / "examples" / "agents").is_dir() and (root / "schemas").is_dir():
            return root
    raise InvalidStateError("`schema` works in a source checkout: run it from the repository")


def _cmd_schema(args: argparse.Namespace) -> int:
    from flame_agents.agent.cli_support import generate_schemas

    root = _repo_root()
    changed = generate_schemas(root, check=args.check)
    for path in changed:
        print(f"{'out of date' if args.check else 'wrote'}: {path.relative_to(root)}")
    if args.check and changed:
        raise InvalidStateError(
            f"{len(changed)} agent schema file(s) are out of date: run `flame-agents schema`"
        )
    if not changed:
        print("agent schemas are up to date")
    return 0


def add_parser(verbs: Any) -> None:
    """Add ``schema`` to the sub-parsers ``verbs``."""
    p = verbs.add_parser(
        "schema",
        help="write the example agents' JSON Schemas under schemas/",
        description="Write schemas/<app>.{context,request,reply}.schema.json of the example "
        "agents from their classes; --check only reports files that are out of date (exit 1).",
    )
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if out of date")
    p.set_defaults(func=_cmd_schema)
