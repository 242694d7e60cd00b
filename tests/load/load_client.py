"""One load-test client process: runs its sessions concurrently, prints a JSON summary.

``python load_client.py PREFIX ECHO_SESSIONS AGENT_SESSIONS INVOCATIONS`` with the runtime's
endpoints in the environment. Echo sessions use the built-in ``flmping`` application; agent
sessions use ``load-tally`` (TallyAgent of tests/faults). Every reply and every agent's final
context is checked; the summary counts the invocations that answered correctly and lists every
failure.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "faults"))

from faultagents import Add, Tally, TallyAgent

from flame_agents import core
from flame_agents.agent import AgentSession


def echo_session(name: str, invocations: int) -> tuple[int, list[str]]:
    """Invoke flmping ``invocations`` times; the correct answers and the problems found."""
    problems = []
    correct = 0
    with core.create_session("flmping", session_id=name, max_instances=1) as session:
        for i in range(invocations):
            data = f"{name}:{i}".encode()
            got = session.invoke(data)
            if got == data:
                correct += 1
            else:
                problems.append(f"{name} invocation {i}: got {got!r}")
    return correct, problems


def agent_session(name: str, invocations: int) -> tuple[int, list[str]]:
    """Add 1..``invocations`` to a tally; the correct answers and the problems found (lost or
    repeated additions)."""
    problems = []
    correct = 0
    with AgentSession("load-tally", ctx=Tally(), session_id=name, agent=TallyAgent) as s:
        for n in range(1, invocations + 1):
            total = s.invoke(Add(n=n))
            if total.entries == n:
                correct += 1
            else:
                problems.append(f"{name} invocation {n}: {total.entries} entries")
        ctx = s.context()
        if list(ctx.added) != list(range(1, invocations + 1)):
            problems.append(f"{name}: history {list(ctx.added)}")
    return correct, problems


def main() -> int:
    """Run the sessions, print the summary, exit 0 (the test judges the summary)."""
    prefix, echo, agents, invocations = sys.argv[1], *map(int, sys.argv[2:5])
    jobs = [(echo_session, f"{prefix}-echo-{i}") for i in range(echo)]
    jobs += [(agent_session, f"{prefix}-agent-{i}") for i in range(agents)]
    failures: list[str] = []
    answered = 0
    with ThreadPoolExecutor(max_workers=max(1, len(jobs))) as pool:
        futures = [pool.submit(fn, name, invocations) for fn, name in jobs]
        for future in futures:
            try:
                correct, problems = future.result()
            except Exception as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
                continue
            answered += correct
            failures.extend(problems)
    print(json.dumps({"invocations": answered, "failures": failures}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
