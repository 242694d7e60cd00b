"""Answer a session's paused turn from another process, knowing only the session id.

``python resume_client.py <session id> <answer JSON>`` prints one JSON document on stdout:
``{"pending": <the interrupt it found>, "reply": <the resumed turn's reply>}``. It imports no
agent class: the reply is validated against the schema the agent sends.
"""

import json
import sys

from flame_agents import AgentSession

if __name__ == "__main__":
    session = AgentSession(session_id=sys.argv[1])
    pending = session.pending_interrupt()
    reply = session.resume(json.loads(sys.argv[2]))
    print(json.dumps({"pending": pending, "reply": reply.model_dump(mode="json")}))
