"""The same chat turn written the common way: read the whole history, append, write it all back.

This is what agent frameworks that keep the conversation in one blob do on every turn (here with
the seed's ``update_context``), so its cost grows with the conversation: the baseline of the
agent-turn scenario.
"""

from __future__ import annotations

from flame_agents import service

ins = service.FlameInstance()


@ins.entrypoint
def turn(text: str) -> int:
    """Append a user message to the session's history; reply its length."""
    history = ins.context() or []
    history.append({"role": "user", "text": text})
    ins.update_context(history)
    return len(history)


if __name__ == "__main__":
    ins.run()
