"""What the CLI needs from the agent layer: JSON Schemas of agents and a view of agent state.

* :func:`agent_schemas` / :func:`application_schema`: the context, request and reply JSON
  Schemas of an :class:`Agent`; the latter in ``ApplicationSpec.schema`` form (JSON texts).
* :func:`generate_schemas`: write (or check) ``schemas/<app>.{context,request,reply}.schema.json``
  for the example agents (``flame-agents schema [--check]``).
* :func:`schema_for_labels`: an app YAML labelled ``flame-agents.agent=<module>:<Class>`` gets
  its ``schema`` filled at registration.
* :func:`describe_agent_state`: ``flame-agents view -s ID`` of an agent session: the context as
  JSON, its version, patch count and size, turns in progress and the interrupt waiting for an
  answer, read without importing user code.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flame_agents.agent._agent import Agent
from flame_agents.agent._journal import KEYS_LOG, chunk_key, decode_base, decode_chunk, full_log
from flame_agents.agent._progress import pending_interrupt
from flame_agents.agent._store import CacheStore, StateStore
from flame_agents.errors import InvalidArgumentError

__all__ = [
    "AGENT_LABEL",
    "EXAMPLE_AGENTS",
    "ExampleAgent",
    "agent_schemas",
    "application_schema",
    "describe_agent_state",
    "generate_schemas",
    "load_agent",
    "schema_for_labels",
]

AGENT_LABEL = "flame-agents.agent="
"""Label prefix naming the agent class an application serves (``<module>:<Class>``)."""


@dataclass(frozen=True)
class ExampleAgent:
    """An example agent whose schemas are committed under ``schemas/``."""

    app: str
    folder: str
    target: str


EXAMPLE_AGENTS = (
    ExampleAgent("chat-agent", "examples/agents/chat", "chat_agent:ChatAgent"),
    ExampleAgent("crawler-agent", "examples/agents/crawler", "crawler_agent:CrawlerAgent"),
)


def load_agent(target: str, *, search_path: Sequence[Path] = ()) -> type[Agent[Any]]:
    """Import ``<module>:<Class>`` (``search_path`` folders first) and check it is an Agent."""
    module_name, _, qualname = target.partition(":")
    if not module_name or not qualname:
        raise InvalidArgumentError(f"agent reference {target!r} must be <module>:<Class>")
    added = [str(p) for p in search_path if str(p) not in sys.path]
    sys.path[:0] = added
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise InvalidArgumentError(f"cannot import agent {target!r}: {exc}") from exc
    finally:
        for path in added:
            sys.path.remove(path)
    if not (isinstance(obj, type) and issubclass(obj, Agent) and hasattr(obj, "request_type")):
        raise InvalidArgumentError(f"{target!r} is not an Agent subclass with a handle()")
    return obj


def agent_schemas(agent: type[Agent[Any]]) -> dict[str, dict[str, Any]]:
    """``{"context": ..., "request": ..., "reply": ...}`` JSON Schemas of ``agent``."""
    context = agent.context_type.model_json_schema()
    context["x-flame-agents-schema-version"] = agent.context_type.schema_version
    return {
        "context": context,
        "request": agent.request_type.model_json_schema(),
        "reply": agent.reply_type.model_json_schema(),
    }


def application_schema(agent: type[Agent[Any]]) -> dict[str, str]:
    """``ApplicationSpec.schema`` for an agent app: input, output, common_data as JSON texts.

    ``input``/``output`` describe the task payload envelopes (the request/reply inside them);
    ``common_data`` describes the context stored behind the session's state reference.
    """
    schemas = agent_schemas(agent)
    request_envelope = {
        "type": "object",
        "title": f"{agent.__name__} request envelope",
        "properties": {"key": {"type": "string"}, "request": schemas["request"]},
        "required": ["key", "request"],
    }
    reply_envelope = {
        "type": "object",
        "title": f"{agent.__name__} reply envelope",
        "properties": {
            "reply": schemas["reply"],
            "replayed": {"type": "boolean"},
            "version": {"type": "integer"},
            "type": {"type": "string"},
        },
        "required": ["reply", "replayed", "version", "type"],
    }
    return {
        "input": json.dumps(request_envelope, sort_keys=True),
        "output": json.dumps(reply_envelope, sort_keys=True),
        "common_data": json.dumps(schemas["context"], sort_keys=True),
    }


def schema_for_labels(labels: Iterable[str], *, working_directory: Path) -> dict[str, str] | None:
    """The application schema of the agent named by an ``flame-agents.agent=`` label, if any."""
    for label in labels:
        if label.startswith(AGENT_LABEL):
            target = label[len(AGENT_LABEL) :]
            return application_schema(load_agent(target, search_path=[working_directory]))
    return None


def _render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def generate_schemas(root: Path, *, check: bool = False) -> list[Path]:
    """Write ``schemas/<app>.<part>.schema.json`` for the example agents under ``root``.

    Returns the files that changed (with ``check=True``: that would change, writing nothing).
    """
    changed: list[Path] = []
    for example in EXAMPLE_AGENTS:
        agent = load_agent(example.target, search_path=[root / example.folder])
        for part, schema in agent_schemas(agent).items():
            path = root / "schemas" / f"{example.app}.{part}.schema.json"
            text = _render(schema)
            if not path.exists() or path.read_text() != text:
                changed.append(path)
                if not check:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(text)
    return changed


def describe_agent_state(
    common_data: bytes | None, *, store: StateStore | None = None, items: int = 20
) -> dict[str, Any] | None:
    """The agent state of a session as JSON-able data, or None if it is not an agent session.

    Shows scalar fields whole, and for each history its length and last ``items`` items;
    ``open_turns`` counts turns that recorded progress and have not committed, and
    ``pending_interrupt`` is the turn waiting for an answer (``{"idempotency_key", "index",
    "payload"}``) or None.
    """
    from flame_agents.cache import ObjectRef

    if not common_data:
        return None
    try:
        ref = ObjectRef.decode(common_data)
    except Exception:  # not BSON: not an agent session
        return None
    store = store or CacheStore(ref.endpoint)
    fetched = store.fetch(ref.key)
    if fetched.base is None:
        return None
    try:
        journal = decode_base(fetched.base, version=fetched.base_version)
    except Exception:  # a flamepy context object, not an agent state object
        return None
    journal.apply_stored(fetched.patches)

    def read(log: str, index: int) -> list[Any]:
        key = chunk_key(ref.key, journal.gen, log, index)
        return decode_chunk(store.read(key), key=key, expected=journal.chunk)

    histories: dict[str, Any] = {}
    for name, hlog in journal.histories.items():
        length = hlog.length(journal.chunk)
        tail = hlog.tail[-items:] if items else []
        if len(tail) < min(items, length):
            tail = full_log(journal, name, read)[-items:]
        histories[name] = {"length": length, "last": tail}
    pending = pending_interrupt(journal.turns)
    return {
        "key": ref.key,
        "endpoint": ref.endpoint,
        "version": journal.version,
        "base_version": journal.base_version,
        "schema_version": journal.schema,
        "patches": len(fetched.patches),
        "bytes": len(fetched.base) + sum(len(d) for _, d in fetched.patches),
        "commits": journal.keys.length(journal.chunk),
        "context": {**journal.fields, **histories},
        "sealed_chunks": {
            **{n: h.sealed for n, h in journal.histories.items()},
            KEYS_LOG: journal.keys.sealed,
        },
        "open_turns": len(journal.turns),
        "pending_interrupt": None
        if pending is None
        else {"idempotency_key": pending[0], "index": pending[1], "payload": pending[2]},
    }
