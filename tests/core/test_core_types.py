"""Unit tests of the shared types: ResourceRequirement grammar, ApplicationSpec, Task helpers."""

from __future__ import annotations

import pytest
from flamepy.core.types import ResourceRequirement as FlamepyResreq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flame_agents.errors import InvalidArgumentError
from flame_agents.types import (
    ApplicationSchema,
    ApplicationSpec,
    Event,
    ResourceRequirement,
    Shim,
    Task,
    TaskState,
)

# Generous limits: these run in CI next to process-heavy e2e tests, where timing varies.
RELAXED = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

GIB = 1024**3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cpu=2,mem=4g", ResourceRequirement(cpu=2, memory=4 * GIB)),
        ("CPU=1, Memory=1GiB ,GPU=3", ResourceRequirement(cpu=1, memory=GIB, gpu=3)),
        ("mem=512", ResourceRequirement(memory=512)),
        ("mem=2k", ResourceRequirement(memory=2048)),
        ("mem=2KB", ResourceRequirement(memory=2048)),
        ("mem=3mi", ResourceRequirement(memory=3 * 1024**2)),
        ("mem=1tib", ResourceRequirement(memory=1024**4)),
        ("mem=1P", ResourceRequirement(memory=1024**5)),
        ("gpu=1", ResourceRequirement(gpu=1)),
        ("cpu=1,cpu=3", ResourceRequirement(cpu=3)),
    ],
)
def test_from_string_accepts_flamepy_grammar(text: str, expected: ResourceRequirement) -> None:
    """Keys are case-insensitive, memory suffixes are binary, a bare number is bytes."""
    assert ResourceRequirement.from_string(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "cannot be empty"),
        ("   ", "cannot be empty"),
        ("cpu=1,,gpu=1", "empty entry"),
        ("cpu=1,", "empty entry"),
        ("cpu", "'cpu'"),
        ("cpu=1=2", "'cpu=1=2'"),
        ("cpu=", "'cpu='"),
        ("disk=1", "unknown key 'disk'"),
        ("cpu=two", "'cpu=two'"),
        ("mem=4x", "'mem=4x'"),
        ("mem=g", "'mem=g'"),
        ("cpu=-1", "out of range"),
    ],
)
def test_from_string_rejects_with_named_entry(text: str, fragment: str) -> None:
    """Each malformed input raises InvalidArgumentError (a ValueError) naming the bad part."""
    with pytest.raises(InvalidArgumentError) as info:
        ResourceRequirement.from_string(text)
    assert isinstance(info.value, ValueError)
    assert fragment in str(info.value)


_SUFFIXES = ["", "k", "kb", "ki", "kib", "m", "mb", "mi", "mib", "g", "gb", "gi", "gib"]
_SUFFIXES += ["t", "tb", "ti", "tib", "p", "pb", "pi", "pib"]
_KEYS = ["cpu", "CPU", "mem", "Memory", "MEM", "gpu", "Gpu", "disk"]


@st.composite
def resreq_texts(draw: st.DrawFn) -> str:
    """Mostly well-formed resreq strings, with the odd malformed piece."""
    entries = []
    for _ in range(draw(st.integers(1, 4))):
        key = draw(st.sampled_from(_KEYS))
        number = str(draw(st.integers(0, 10**6)))
        suffix = draw(st.sampled_from(_SUFFIXES)) if key.lower().startswith("mem") else ""
        suffix = "".join(c.upper() if draw(st.booleans()) else c for c in suffix)
        sep = draw(st.sampled_from(["=", "=", "=", "", "=="]))
        pad = draw(st.sampled_from(["", " "]))
        entries.append(f"{pad}{key}{sep}{number}{suffix}{pad}")
    return ",".join(entries) + draw(st.sampled_from(["", "", ","]))


def _flamepy_parse(text: str) -> tuple[int, int, int] | None:
    """flamepy's verdict, minus values the wire cannot carry (negatives, > uint64), which we
    refuse on purpose."""
    try:
        r = FlamepyResreq.from_string(text)
    except ValueError:
        return None
    if not (0 <= r.cpu < 2**64 and 0 <= r.memory < 2**64 and 0 <= r.gpu < 2**31):
        return None
    return (r.cpu, r.memory, r.gpu)


def _our_parse(text: str) -> tuple[int, int, int] | None:
    try:
        r = ResourceRequirement.from_string(text)
    except InvalidArgumentError:
        return None
    return (r.cpu, r.memory, r.gpu)


@RELAXED
@given(resreq_texts())
def test_from_string_agrees_with_flamepy(text: str) -> None:
    """For generated inputs our parser accepts and rejects exactly what flamepy's does."""
    assert _our_parse(text) == _flamepy_parse(text)


@RELAXED
@given(st.text(max_size=30))
def test_from_string_agrees_with_flamepy_on_any_text(text: str) -> None:
    """Arbitrary text: the same verdict and values as flamepy."""
    assert _our_parse(text) == _flamepy_parse(text)


@RELAXED
@given(
    st.builds(
        ResourceRequirement,
        cpu=st.integers(0, 2**64 - 1),
        memory=st.integers(0, 2**64 - 1),
        gpu=st.integers(0, 2**31 - 1),
    )
)
def test_to_string_round_trips(resreq: ResourceRequirement) -> None:
    """to_string() produces text that from_string() reads back to the same value."""
    assert ResourceRequirement.from_string(resreq.to_string()) == resreq


def test_to_string_uses_largest_exact_unit() -> None:
    """Memory is printed in the largest binary unit that divides it exactly."""
    assert ResourceRequirement(cpu=1, memory=GIB).to_string() == "cpu=1,mem=1g,gpu=0"
    assert ResourceRequirement(memory=1536 * 1024).to_string() == "cpu=0,mem=1536k,gpu=0"
    assert ResourceRequirement(memory=1000).to_string() == "cpu=0,mem=1000,gpu=0"


def test_from_dict_accepts_ints_and_size_strings() -> None:
    """Memory may be bytes or a size string; cpu/gpu ints or digit strings; mem is an alias."""
    assert ResourceRequirement.from_dict({"cpu": 2, "memory": "4g", "gpu": 0}) == (
        ResourceRequirement(cpu=2, memory=4 * GIB)
    )
    assert ResourceRequirement.from_dict({"mem": 1024, "cpu": "3"}) == ResourceRequirement(
        cpu=3, memory=1024
    )
    assert ResourceRequirement.from_dict({}) == ResourceRequirement()


@pytest.mark.parametrize(
    "data",
    [{"disk": 1}, {"cpu": 1.5}, {"cpu": True}, {"memory": "lots"}, {"gpu": -1}, {"cpu": None}],
)
def test_from_dict_rejects_bad_values(data: dict[str, object]) -> None:
    """Unknown keys, non-integers, booleans and negatives are refused."""
    with pytest.raises(InvalidArgumentError):
        ResourceRequirement.from_dict(data)


def test_coerce_accepts_every_form() -> None:
    """coerce() takes None, an instance, a string, a mapping or flamepy's own type."""
    r = ResourceRequirement(cpu=1, memory=GIB)
    assert ResourceRequirement.coerce(None) is None
    assert ResourceRequirement.coerce(r) is r
    assert ResourceRequirement.coerce("cpu=1,mem=1g") == r
    assert ResourceRequirement.coerce({"cpu": 1, "memory": "1g"}) == r
    assert ResourceRequirement.coerce(FlamepyResreq(cpu=1, memory=GIB)) == r
    with pytest.raises(InvalidArgumentError):
        ResourceRequirement.coerce(42)  # type: ignore[arg-type]


def test_application_spec_from_flamepy_dict() -> None:
    """A dict with flamepy's ApplicationAttributes names becomes an ApplicationSpec."""
    spec = ApplicationSpec.from_dict(
        {
            "shim": "Host",
            "command": "/usr/bin/python3",
            "arguments": ["-m", "svc"],
            "environments": {"A": "1"},
            "working_directory": "/tmp",
            "max_instances": 3,
            "delay_release": 5,
            "schema": {"input": "{}"},
            "labels": None,
        }
    )
    assert spec.shim is Shim.HOST
    assert spec.arguments == ("-m", "svc")
    assert spec.environments == {"A": "1"}
    assert spec.schema == ApplicationSchema(input="{}")
    assert spec.labels == ()


@pytest.mark.parametrize(
    "data",
    [
        {"comand": "x"},
        {"shim": "docker"},
        {"arguments": "one string"},
        {"environments": ["A"]},
        {"max_instances": -1},
        {"delay_release": "60"},
    ],
)
def test_application_spec_rejects_mistakes(data: dict[str, object]) -> None:
    """Typos in keys, unknown shims and wrongly shaped fields fail with InvalidArgumentError."""
    with pytest.raises(InvalidArgumentError):
        ApplicationSpec.from_dict(data)


def test_task_helpers() -> None:
    """Terminal states count as completed; a failed task's error is its code-3 event text."""
    failed = Task(
        id="1",
        session_id="s",
        state=TaskState.FAILED,
        events=(Event(0, "created"), Event(3, "boom")),
    )
    assert failed.is_completed() and failed.is_failed()
    assert failed.error_message() == "boom"
    assert Task(id="1", session_id="s", state=TaskState.FAILED).error_message() == (
        "task failed without an error message"
    )
    assert Task(id="2", session_id="s", state=TaskState.CANCELLED).is_completed()
    running = Task(id="3", session_id="s", state=TaskState.RUNNING)
    assert not running.is_completed() and running.error_message() is None
