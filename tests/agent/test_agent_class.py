"""Agent subclasses are checked when defined; RetryPolicy retries only retryable errors."""

from __future__ import annotations

import pytest
from agentdefs import Answer, Ask, ChatAgent, ChatContext, CounterContext
from pydantic import BaseModel

from flame_agents.agent import Agent, RetryPolicy, Turn
from flame_agents.errors import InstanceLostError, RuntimeUnavailableError, TaskFailedError


class Reply(BaseModel):
    ok: bool


def test_handle_types_are_recorded() -> None:
    """A well-formed agent exposes its context, request and reply types."""
    assert (ChatAgent.context_type, ChatAgent.request_type, ChatAgent.reply_type) == (
        ChatContext,
        Ask,
        Answer,
    )


def test_wrong_context_annotation_fails_at_definition() -> None:
    """ctx annotated with another model is a TypeError naming the expected one."""
    with pytest.raises(TypeError, match="annotate `ctx` as ChatContext"):

        class Bad(Agent[ChatContext]):
            def handle(self, req: Ask, ctx: CounterContext) -> Answer:
                raise NotImplementedError


def test_non_model_request_or_reply_fails_at_definition() -> None:
    """Requests and replies must be pydantic models."""
    with pytest.raises(TypeError, match="request"):

        class BadReq(Agent[ChatContext]):
            def handle(self, req: str, ctx: ChatContext) -> Answer:
                raise NotImplementedError

    with pytest.raises(TypeError, match="return type"):

        class BadReply(Agent[ChatContext]):
            def handle(self, req: Ask, ctx: ChatContext) -> dict:  # type: ignore[type-arg]
                raise NotImplementedError


def test_wrong_arity_or_missing_type_argument_fails_at_definition() -> None:
    """handle takes (self, req, ctx[, turn]) and the agent names its context model."""
    with pytest.raises(TypeError, match=r"\(self, req, ctx\) or \(self, req, ctx, turn\)"):

        class Extra(Agent[ChatContext]):
            def handle(self, req: Ask, ctx: ChatContext, turn: Turn, more: int) -> Answer:
                raise NotImplementedError

    with pytest.raises(TypeError, match="annotate `more` as Turn"):

        class WrongTurn(Agent[ChatContext]):
            def handle(self, req: Ask, ctx: ChatContext, more: int) -> Answer:
                raise NotImplementedError

    with pytest.raises(TypeError, match="annotate `turn` as AsyncTurn"):

        class SyncTurnInAsync(Agent[ChatContext]):
            async def handle(self, req: Ask, ctx: ChatContext, turn: Turn) -> Answer:
                raise NotImplementedError

    with pytest.raises(TypeError, match="type argument"):

        class NoCtx(Agent):  # type: ignore[type-arg]
            def handle(self, req: Ask, ctx: ChatContext) -> Answer:
                raise NotImplementedError


def test_generic_intermediate_base_is_allowed() -> None:
    """A base class still generic in its context is checked only when made concrete."""
    from typing import TypeVar

    from flame_agents.agent import ContextModel

    C = TypeVar("C", bound=ContextModel)

    class Base(Agent[C]):
        def handle(self, req: Ask, ctx: C) -> Answer:
            raise NotImplementedError

    class Concrete(Base[ChatContext]):
        def handle(self, req: Ask, ctx: ChatContext) -> Reply:
            return Reply(ok=True)

    assert Concrete.reply_type is Reply


def test_retry_policy_retries_retryable_errors_only() -> None:
    """Retryable errors are retried within the budget; a handler failure is not retried."""
    policy = RetryPolicy(max_attempts=3, initial_backoff=0, jitter=0)
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise InstanceLostError("lost")
        return "ok"

    assert policy.call(flaky) == "ok" and len(calls) == 3

    def always_down() -> None:
        calls.append(1)
        raise RuntimeUnavailableError("down")

    calls.clear()
    with pytest.raises(RuntimeUnavailableError):
        policy.call(always_down)
    assert len(calls) == 3

    def handler_fails() -> None:
        calls.append(1)
        raise TaskFailedError("ValueError: no")

    calls.clear()
    with pytest.raises(TaskFailedError):
        policy.call(handler_fails)
    assert len(calls) == 1


def test_retry_policy_is_frozen_and_validated() -> None:
    """RetryPolicy is immutable with a finite default budget."""
    policy = RetryPolicy()
    assert policy.max_attempts < 100 and policy.max_delay is not None
    with pytest.raises(AttributeError):
        policy.max_attempts = 9  # type: ignore[misc]
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
