"""Turn progress: what a turn that has not committed yet has recorded in the session's journal.

A durable turn writes small *progress records* to the state journal before it commits its reply:
a step's intent (before its function runs), a step's result, an interrupt with its payload, the
answer to an interrupt, and ``drop`` (the turn was cancelled or its interrupt dropped). Each is
one patch of the state object, so a record costs O(its value), and a turn that runs again (its
instance died, the runtime restarted, the client retried with the same idempotency key, or a
human answered its interrupt) finds them and replays instead of calling the function again.

Record (inside a patch, ``{"base", "prev", "schema", "turn": <record>}``)::

    {"k": <turn's idempotency key>, "op": "intent" | "result" | "interrupt" | "answer" | "drop",
     "name": <step name>, "value": <JSON>, "request": <request JSON>, "req": <request digest>}

``name`` belongs to step records, ``request``/``req`` to interrupts (a resumed turn runs on the
request it was interrupted with). The turn's final commit (the patch carrying its idempotency
key) ends its progress; a base keeps the progress of turns still open, at most
:data:`MAX_OPEN_TURNS` of them besides those waiting for an answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MAX_OPEN_TURNS",
    "OPS",
    "TurnProgress",
    "apply_progress",
    "bound_open_turns",
    "pending_interrupt",
    "turns_from_json",
    "turns_to_json",
]

#: Open turns (not committed, not waiting for an answer) whose progress a base keeps; older
#: ones were abandoned by their clients, and re-running one starts it from the top.
MAX_OPEN_TURNS = 16
OPS = frozenset({"intent", "result", "interrupt", "answer", "drop"})


@dataclass
class TurnProgress:
    """The recorded progress of one turn (JSON values only)."""

    steps: dict[str, Any] = field(default_factory=dict)
    """Completed steps: name -> recorded result (``{"v": value}`` or ``{"m": type, "v": ...}``)."""
    intents: list[str] = field(default_factory=list)
    """Steps whose function started and has no recorded result (the effect ledger)."""
    interrupts: list[Any] = field(default_factory=list)
    """Payloads of the turn's interrupts, in the order the turn raised them."""
    answers: list[Any] = field(default_factory=list)
    """Answers given to them, same order; fewer answers than interrupts means one is pending."""
    request: Any = None
    """The request JSON the turn was interrupted with (what a resume runs again)."""
    digest: str | None = None
    """The request's digest (checked when the same key is sent again)."""

    def pending(self) -> tuple[int, Any] | None:
        """``(index, payload)`` of the interrupt waiting for an answer, else None."""
        if len(self.answers) < len(self.interrupts):
            index = len(self.answers)
            return index, self.interrupts[index]
        return None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"steps": self.steps}
        if self.intents:
            doc["intents"] = self.intents
        if self.interrupts:
            doc["interrupts"] = self.interrupts
            doc["answers"] = self.answers
            doc["request"] = self.request
            doc["req"] = self.digest
        return doc

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TurnProgress:
        return cls(
            steps=dict(data.get("steps", {})),
            intents=[str(n) for n in data.get("intents", [])],
            interrupts=list(data.get("interrupts", [])),
            answers=list(data.get("answers", [])),
            request=data.get("request"),
            digest=None if data.get("req") is None else str(data["req"]),
        )


def apply_progress(turns: dict[str, TurnProgress], record: Mapping[str, Any]) -> None:
    """Apply one progress record to the open turns (mutates ``turns``)."""
    key, op = str(record["k"]), record["op"]
    if op not in OPS:
        raise ValueError(f"unknown turn progress op {op!r}")
    if op == "drop":
        turns.pop(key, None)
        return
    progress = turns.setdefault(key, TurnProgress())
    if op == "intent":
        name = str(record["name"])
        if name not in progress.intents:
            progress.intents.append(name)
    elif op == "result":
        name = str(record["name"])
        progress.steps[name] = record["value"]
        if name in progress.intents:
            progress.intents.remove(name)
    elif op == "interrupt":
        progress.interrupts.append(record.get("value"))
        progress.request = record.get("request")
        progress.digest = None if record.get("req") is None else str(record["req"])
    else:  # answer
        progress.answers.append(record.get("value"))


def pending_interrupt(turns: Mapping[str, TurnProgress]) -> tuple[str, int, Any] | None:
    """``(turn key, index, payload)`` of the session's interrupt waiting for an answer."""
    for key, progress in turns.items():
        pending = progress.pending()
        if pending is not None:
            return key, pending[0], pending[1]
    return None


def bound_open_turns(turns: dict[str, TurnProgress]) -> None:
    """Keep the progress of at most :data:`MAX_OPEN_TURNS` open turns, newest first, and every
    turn waiting for an answer (a pause for a human may last days)."""
    waiting = {k for k, p in turns.items() if p.pending() is not None}
    others = [k for k in turns if k not in waiting]
    for key in others[: max(0, len(others) - MAX_OPEN_TURNS)]:
        del turns[key]


def turns_to_json(turns: Mapping[str, TurnProgress]) -> dict[str, Any]:
    return {key: progress.to_json() for key, progress in turns.items()}


def turns_from_json(data: Mapping[str, Any]) -> dict[str, TurnProgress]:
    return {str(key): TurnProgress.from_json(value) for key, value in data.items()}
