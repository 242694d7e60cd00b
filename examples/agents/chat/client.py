"""Talk to the chat agent: a session, a few turns, its context, then reopen it by id.

Run after registering the app: ``flame-agents register -f chat-agent.yaml``.
"""

from __future__ import annotations

from chat_agent import Ask, ChatAgent, ChatContext

from flame_agents import AgentSession


def main() -> None:
    with AgentSession(
        "chat-agent", ctx=ChatContext(system_prompt="be brief"), agent=ChatAgent
    ) as s:
        for text in ("hello", "what is a session?", "thanks"):
            answer = s.invoke(Ask(text=text))
            print(f"turn {answer.turns}: {answer.text}")
        stored = s.context()
        print(f"{len(stored.messages)} messages stored in session {s.id()}")
        again = AgentSession(session_id=s.id(), agent=ChatAgent)
        print("reopened:", again.invoke(Ask(text="still there?"), idempotency_key="last").text)


if __name__ == "__main__":
    main()
