"""The generic Instance shim server, for layers that serve their own handler.

``FlameInstance`` serves its entrypoint through it; the agent layer (``Agent.run()``) and the
runner's service serve theirs. This module is the seam they import: the server itself lives in
``_instance_server`` (see its docstring for what it guarantees). A handler that can stop a
running task implements :class:`CancellableHandler`; :class:`CancelScope` is how
``FlameInstance`` cancels a coroutine it runs on its loop thread from the shim's thread.
"""

from flame_agents.service._entrypoint import CancelScope
from flame_agents.service._instance_server import (
    INSTANCE_ENDPOINT_ENV,
    CancellableHandler,
    InstanceHandler,
    InstanceServer,
    instance_endpoint,
    serve,
)

__all__ = [
    "INSTANCE_ENDPOINT_ENV",
    "CancelScope",
    "CancellableHandler",
    "InstanceHandler",
    "InstanceServer",
    "instance_endpoint",
    "serve",
]
