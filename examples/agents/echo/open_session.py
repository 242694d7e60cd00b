from flame_agents.service import Session

session = Session(session_id="echo-app-a1b2c3")
try:
    print(session.context())
finally:
    session.close()
