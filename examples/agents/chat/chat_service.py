"""The chat agent's service process (launched by the runtime from chat-agent.yaml)."""

from chat_agent import ChatAgent

if __name__ == "__main__":
    ChatAgent.run()
