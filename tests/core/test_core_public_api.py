"""The public surface of flame_agents.core is pinned, so changes to it are deliberate."""

from __future__ import annotations

from flame_agents import core

EXPECTED = {
    # client
    "Connection",
    "MAX_MESSAGE_BYTES",
    "Session",
    "cancel_task",
    "close_session",
    "connect",
    "create_session",
    "default_connection",
    "get_application",
    "get_session",
    "list_applications",
    "list_sessions",
    "open_session",
    "register_application",
    "reset_default_connection",
    "unregister_application",
    "update_application",
    # shared types
    "Application",
    "ApplicationSchema",
    "ApplicationSpec",
    "ApplicationState",
    "Event",
    "ExecutorInfo",
    "ResourceRequirement",
    "SessionInfo",
    "SessionState",
    "Shim",
    "Task",
    "TaskState",
    # object cache, as flamepy.core exports it
    "ObjectRef",
    "delete_objects",
    "get_object",
    "patch_object",
    "put_object",
    "update_object",
}


def test_core_all_is_pinned() -> None:
    """core.__all__ is exactly the expected names and every one of them resolves."""
    assert set(core.__all__) == EXPECTED
    assert len(core.__all__) == len(EXPECTED)
    for name in core.__all__:
        assert getattr(core, name) is not None
