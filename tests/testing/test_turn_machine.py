"""The agent state machine on an agent whose turns take durable steps and pause for answers:
crashes between and inside steps, interrupts resumed or dropped, on top of the built-in faults.

The agent's step functions report every call to the machine running them, which checks that a
function never runs for a step whose result is already recorded.
"""

from __future__ import annotations

from typing import Any, ClassVar

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import rule
from pydantic import BaseModel, Field

from flame_agents import Agent, ContextModel, Turn
from flame_agents.agent import History
from flame_agents.testing._faults import SimulatedCrash
from flame_agents.testing.agents import AgentStateMachine


class Sums(ContextModel):
    total: int = 0
    entries: History[int] = Field(default_factory=History)
    starts: int = 0


class Add(BaseModel):
    n: int
    steps: int = 2
    """Steps the turn takes: step i returns n + i, and the turn adds their sum."""
    die_in: int = -1
    """The step whose function dies (SimulatedCrash) on its first call in this turn."""
    asks: int = 0
    """Interrupts after the steps; the turn applies only when every answer is True."""


class Total(BaseModel):
    total: int
    parts: list[int]
    answers: list[Any]


class StepsMachineBase(AgentStateMachine):
    running: ClassVar[list[StepsMachineBase]] = []
    """The machine whose agent runs now (its step functions report to it)."""


def part(turn_key: str, name: str, n: int, i: int, die: bool) -> int:
    """Step i of a turn: checked against the machine's record of what landed."""
    (machine,) = StepsMachineBase.running
    machine.on_step_call(turn_key, name, die)
    return n + i


def boot(turn_key: str) -> int:
    (machine,) = StepsMachineBase.running
    machine.on_step_call(turn_key, "boot", False)
    return 1


class StepsAgent(Agent[Sums]):
    """Adds the sum of its steps' results once its interrupts (if any) are all answered True."""

    def on_session_start(self, ctx: Sums, turn: Turn) -> None:
        ctx.starts = turn.step("boot", boot, turn.idempotency_key)

    def handle(self, req: Add, ctx: Sums, turn: Turn) -> Total:
        key = turn.idempotency_key
        parts = [
            turn.step(f"part{i}", part, key, f"part{i}", req.n, i, req.die_in == i)
            for i in range(req.steps)
        ]
        answers = [turn.interrupt({"n": req.n, "ask": i}) for i in range(req.asks)]
        if all(a is True for a in answers):
            ctx.total += sum(parts)
            ctx.entries.append(req.n)
        return Total(total=ctx.total, parts=parts, answers=answers)


def expected_parts(req: Add) -> list[int]:
    return [req.n + i for i in range(req.steps)]


class StepsMachine(StepsMachineBase):
    """StepsAgent against a list of the entries that took effect."""

    agent = StepsAgent
    max_steps = 3

    def __init__(self) -> None:
        super().__init__()
        self.total = 0
        self.died: set[tuple[str, str]] = set()
        self.violations: list[str] = []
        StepsMachineBase.running[:] = [self]

    def on_step_call(self, turn_key: str, name: str, die: bool) -> None:
        """A step function runs: its result must not be recorded yet; die when asked (once)."""
        for record in self.progress.records:
            if record["k"] == turn_key and record["op"] == "drop":
                self.violations = [v for v in self.violations if turn_key not in v]
            if record["k"] == turn_key and record["op"] == "result" and record["name"] == name:
                self.violations.append(f"{turn_key}: {name} ran after its result was recorded")
        if die and (turn_key, name) not in self.died:
            self.died.add((turn_key, name))
            raise SimulatedCrash(f"died inside {name} of {turn_key}")

    def initial_model(self) -> list[int]:
        return []

    def apply_model(self, model: list[int], req: Any) -> Total:
        return self.apply_resumed(model, req, [])

    def apply_resumed(self, model: list[int], req: Any, answers: list[Any]) -> Total:
        parts = expected_parts(req)
        if all(a is True for a in answers):
            model.append(req.n)
            self.total += sum(parts)
        return Total(total=self.total, parts=parts, answers=answers)

    def check(self, ctx: Sums, model: list[int]) -> None:
        assert ctx.entries.tolist() == model and ctx.total == self.total
        assert ctx.starts <= 1
        assert not self.violations, self.violations

    def requests(self) -> st.SearchStrategy[BaseModel]:
        return st.builds(
            Add, n=st.integers(-9, 9), steps=st.integers(0, 3), die_in=st.integers(-1, 2)
        )

    def interrupting_requests(self) -> st.SearchStrategy[BaseModel]:
        return st.builds(
            Add,
            n=st.integers(-9, 9),
            steps=st.integers(0, 3),
            die_in=st.integers(-1, 2),
            asks=st.integers(1, 2),
        )

    @rule(n=st.integers(-9, 9), steps=st.integers(0, 3))
    def add(self, n: int, steps: int) -> None:
        reply = self.step(Add(n=n, steps=steps))
        if self.paused is None:
            assert reply.total == self.total

    def teardown(self) -> None:
        StepsMachineBase.running[:] = []
        super().teardown()


StepsMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=25, deadline=None)
TestStepsMachine = StepsMachine.TestCase
