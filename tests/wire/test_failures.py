"""The failure text of a task (class, text, remote frames) and the message-limit texts."""

from __future__ import annotations

from collections.abc import Callable

from flame_agents._wire.failures import format_failure, parse_failure
from flame_agents._wire.limits import grpc_size_hint, output_budget, reply_too_large
from flame_agents.errors import TaskFailedError


def _raise_deep(depth: int) -> None:
    if depth == 0:
        raise ValueError("bad input")
    _raise_deep(depth - 1)


def _caught(fn: Callable[..., object], *args: object) -> BaseException:
    try:
        fn(*args)
    except BaseException as exc:
        return exc
    raise AssertionError("no exception")


def test_format_then_parse_gives_class_and_innermost_frames() -> None:
    """A formatted exception reads back as its class and at most five innermost frames."""
    message = format_failure(_caught(_raise_deep, 10))
    assert message.startswith("ValueError: bad input\n")
    remote = parse_failure(message)
    assert remote.type == "ValueError"
    assert remote.traceback is not None
    assert remote.traceback.count('  File "') == 5
    assert remote.traceback.rstrip().endswith('raise ValueError("bad input")')


def test_wrapped_failure_keeps_its_text_and_reports_the_cause_frames() -> None:
    """A TaskFailedError raised from a cause (the agent layer) keeps its text; frames are the
    cause's."""

    def wrap() -> None:
        try:
            _raise_deep(0)
        except ValueError as exc:
            raise TaskFailedError("ValueError: bad input") from exc

    remote = parse_failure(format_failure(_caught(wrap)))
    assert remote.type == "ValueError"
    assert remote.traceback is not None and "in _raise_deep" in remote.traceback


def test_plain_text_names_no_class() -> None:
    """Plain text from another service ('key: value') is not read as a class name; our own
    error names are."""
    assert parse_failure("odd input: 3").type is None
    assert parse_failure("division by zero").type is None
    assert parse_failure(reply_too_large("3", 10, 8)).type == "LimitExceededError"


def test_huge_exception_text_is_cut() -> None:
    """An exception with a huge text gives a bounded message that still ends with its frames."""
    message = format_failure(_caught(_raise_huge), max_chars=2000)
    assert len(message) <= 2000
    assert "more characters" in message and "in _raise_huge" in message


def _raise_huge() -> None:
    raise RuntimeError("x" * 100_000)


def test_limit_texts_name_the_option() -> None:
    """Reply and gRPC size failures name --max-message-bytes; the output budget leaves room."""
    assert "--max-message-bytes=1048576" in reply_too_large("3", 2_000_000, 1024 * 1024)
    hint = grpc_size_hint("SERVER: Received message larger than max (2000 vs. 1024)")
    assert hint is not None and "--max-message-bytes" in hint and "2000 bytes" in hint
    assert grpc_size_hint("Concurrent RPC limit exceeded!") is None
    assert 0 < output_budget(1024) < 1024
    assert output_budget(64 * 1024 * 1024) == 64 * 1024 * 1024 - 4096
