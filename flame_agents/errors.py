"""The one exception tree of flame-agents.

Every error the package raises on purpose derives from :class:`FlameAgentsError`. Errors carry
fields (``session_id``, ``task_id``, ...) as attributes so callers need not parse messages, and a
class-level ``retryable`` flag that :class:`flame_agents.RetryPolicy` consults: only
infrastructure failures are retried, never a handler's own exception.

::

    FlameAgentsError
    ├── ConfigError                  bad configuration (flame.yaml, endpoints, app YAML)
    ├── InvalidArgumentError         a caller passed something invalid (also a ValueError)
    ├── NotFoundError                session / task / application / object does not exist
    │   └── ObjectNotFoundError      a cache key that is not (or no longer) stored
    ├── AlreadyExistsError           session id or application name already taken
    ├── InvalidStateError            the target exists but cannot do that now (closed session...)
    ├── RetryableError               transient: safe to retry with the same idempotency key
    │   ├── RuntimeUnavailableError  the Frontend or cache cannot be reached
    │   ├── InstanceLostError        the instance serving a task died before it answered
    │   └── InvocationTimeoutError   no answer within the deadline
    ├── TaskFailedError              the service (handler) raised or returned an error
    ├── Interrupted                  an agent turn paused for a human: answer it with resume()
    ├── Cancelled                    the task or turn was cancelled before it finished
    ├── CommitConflictError          agent state moved under a commit (stale version): rejected
    ├── ContextValidationError       agent context does not validate against its model
    ├── CacheError                   object cache failure that is none of the above
    ├── LimitExceededError           a configured size/count limit was hit (also a ValueError)
    └── InternalError                the runtime reported an unexpected failure
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AlreadyExistsError",
    "CacheError",
    "Cancelled",
    "CommitConflictError",
    "ConfigError",
    "ContextValidationError",
    "FlameAgentsError",
    "InstanceLostError",
    "InternalError",
    "Interrupted",
    "InvalidArgumentError",
    "InvalidStateError",
    "InvocationTimeoutError",
    "LimitExceededError",
    "NotFoundError",
    "ObjectNotFoundError",
    "RetryableError",
    "RuntimeUnavailableError",
    "TaskFailedError",
]


class FlameAgentsError(Exception):
    """Base of every error raised by flame-agents.

    Keyword fields given to the constructor become attributes (``err.session_id``) and are
    listed in ``err.fields``.
    """

    retryable: bool = False

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields: dict[str, Any] = fields
        for name, value in fields.items():
            setattr(self, name, value)

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep fields across pickling (errors cross process boundaries in tests and services).
        return (_rebuild_error, (type(self), self.message, self.fields))


def _rebuild_error(cls: type[FlameAgentsError], message: str, fields: dict[str, Any]) -> Any:
    return cls(message, **fields)


class ConfigError(FlameAgentsError):
    """Configuration is missing or malformed (flame.yaml, endpoints, application YAML)."""


class InvalidArgumentError(FlameAgentsError, ValueError):
    """A caller passed an invalid argument; the message says what and how to fix it."""


class NotFoundError(FlameAgentsError):
    """The named session, task or application does not exist."""


class ObjectNotFoundError(NotFoundError):
    """The object cache holds no object under that key."""


class AlreadyExistsError(FlameAgentsError):
    """A session id or application name is already taken."""


class InvalidStateError(FlameAgentsError):
    """The target exists but is in a state that does not allow the operation."""


class RetryableError(FlameAgentsError):
    """A transient infrastructure failure: retrying with the same idempotency key is safe."""

    retryable = True


class RuntimeUnavailableError(RetryableError):
    """The Frontend or the object cache could not be reached."""


class InstanceLostError(RetryableError):
    """The service instance running a task died before answering."""


class InvocationTimeoutError(RetryableError, TimeoutError):
    """No answer arrived within the deadline."""


class TaskFailedError(FlameAgentsError):
    """The service's entrypoint or handler failed; the message is the service's error text.

    From our services that text is ``"<ExceptionClass>: <text>"`` followed by the innermost
    frames of the remote traceback, also given in the fields below.
    """

    remote_type: str | None = None
    """Class name of the service's exception (``"ValueError"``), when the message names it."""
    remote_traceback: str | None = None
    """The innermost frames of the service's traceback, formatted as Python does, or None."""
    remote_fields: dict[str, Any] | None = None
    """The fields of the service's exception when it was one of ours (``{"limit": 5}``), else
    empty; the agent layer raises the remote class with them."""


class Interrupted(FlameAgentsError):
    """An agent turn called ``turn.interrupt(payload)``: it is paused, durably, for an answer.

    ``payload`` is what the handler passed (as JSON); ``idempotency_key`` names the paused
    turn. ``AgentSession.resume(answer)`` (from any process, by session id) continues it; the
    session refuses new invocations until then, or until ``AgentSession.cancel()`` drops it.
    """

    payload: Any = None
    """What the handler passed to ``interrupt()``, as JSON (a model arrives as its dict)."""


class Cancelled(FlameAgentsError):
    """The task (or agent turn) was cancelled before it finished; nothing of it was committed.

    Raised by ``invoke``/``stream`` when ``cancel()`` was called (from any thread or process),
    when a timeout with ``cancel_on_timeout=True`` ran out, or when the caller pressed Ctrl-C.
    """


class CommitConflictError(FlameAgentsError):
    """An agent commit was made from a stale state version and was rejected."""


class ContextValidationError(FlameAgentsError, ValueError):
    """An agent context failed validation against its model."""


class CacheError(FlameAgentsError):
    """The object cache failed in a way not covered by a more specific error."""


class LimitExceededError(FlameAgentsError, ValueError):
    """A configured size or count limit was exceeded; the message names the limit."""


class InternalError(FlameAgentsError):
    """The runtime reported an unexpected internal failure."""
