"""The task-timeout label: parsing and validation of ``flame-agents.task-timeout``."""

from __future__ import annotations

import pytest

from flame_agents._wire import types_pb2
from flame_agents.runtime.sessions._apps import SpecError, task_timeout, with_defaults


def _spec(*labels: str) -> types_pb2.ApplicationSpec:
    return types_pb2.ApplicationSpec(command="x", labels=list(labels))


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ((), None),
        (("other=1",), None),
        (("flame-agents.task-timeout=2.5",), 2.5),
        (("a=b", "flame-agents.task-timeout= 30 "), 30.0),
        (("flame-agents.task-timeout=0",), 0.0),
    ],
)
def test_task_timeout_label_values(labels: tuple[str, ...], expected: float | None) -> None:
    """The label gives seconds (0 = none); without it there is no per-application timeout."""
    assert task_timeout(_spec(*labels)) == expected


@pytest.mark.parametrize("value", ["soon", "-1", "nan", "inf", ""])
def test_task_timeout_label_rejects_bad_values(value: str) -> None:
    """Non-numeric, negative, NaN or infinite timeouts are refused with the label's name."""
    with pytest.raises(SpecError, match=r"flame-agents\.task-timeout"):
        with_defaults(_spec(f"flame-agents.task-timeout={value}"))
