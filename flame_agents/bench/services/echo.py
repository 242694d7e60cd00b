"""The seed's echo service: appends each request to the session context, replies upper-cased.

Same code as the user guide's ``echo_service.py`` (a context read and a context write per
invoke), so "warm invoke of the echo service" means what a user of the guide would see.
"""

from __future__ import annotations

from dataclasses import dataclass

from flame_agents import service


@dataclass
class EchoRequest:
    """The request: a text."""

    text: str


@dataclass
class EchoResponse:
    """The reply: the text upper-cased and how many texts the session has seen."""

    text: str
    count: int


ins = service.FlameInstance()


@ins.entrypoint
def echo(req: EchoRequest) -> EchoResponse:
    """Append ``req.text`` to the session history and reply."""
    history = ins.context() or []
    history.append(req.text)
    ins.update_context(history)
    return EchoResponse(text=req.text.upper(), count=len(history))


if __name__ == "__main__":
    ins.run()
