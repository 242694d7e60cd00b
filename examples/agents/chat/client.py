"""Talk to the chat agent: answers streamed token by token, an email sent only after a human
approved it, the stored conversation, and the session reopened by id.

Run after registering the app: ``flame-agents register -f chat-agent.yaml``.
"""

from __future__ import annotations

from chat_agent import Answer, Ask, ChatAgent, ChatContext, Outbox, Token, outbox_path

from flame_agents import AgentSession, Interrupted


def chat(s: AgentSession[ChatContext], text: str) -> Answer:
    """One turn, its tokens printed as the model writes them."""
    print(f"> {text}")
    stream = s.stream(Ask(text=text))
    for item in stream:  # Token models, as the agent emits them
        print(Token.model_validate(item).text, end="", flush=True)
    print()
    reply: Answer = stream.reply
    return reply


def main() -> None:
    with AgentSession(
        "chat-agent", ctx=ChatContext(system_prompt="be brief"), agent=ChatAgent
    ) as s:
        for text in ("hello", "what is a session?"):
            answer = chat(s, text)
            print(f"  (turn {answer.turns})")

        request = "email bob@example.com: lunch at noon?"
        print(f"> {request}")
        try:
            answer = s.invoke(Ask(text=request))
        except Interrupted as pause:
            # The turn is paused durably in the session: any process may answer it, later.
            print(f"agent asks: {pause.payload['question']} (yes)")
            later = AgentSession(session_id=s.id(), agent=ChatAgent)
            answer = later.resume({"yes": True})
        print(f"{answer.text}  (turn {answer.turns})")
        sent = Outbox(outbox_path()).emails()[-1]
        print(f"outbox: {sent['id']} to {sent['to']}: {sent['body']!r}")

        stored = s.context()
        print(f"{len(stored.messages)} messages stored in session {s.id()}")
        again = AgentSession(session_id=s.id(), agent=ChatAgent)
        print("reopened:", again.invoke(Ask(text="still there?"), idempotency_key="last").text)


if __name__ == "__main__":
    main()
