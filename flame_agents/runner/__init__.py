"""Run functions, classes and objects of the current project on a runtime's instances.

``Runner`` offers what ``flamepy.runner.Runner`` offers, on flame-agents alone: it packages the
project, registers a temporary application that runs it (``python -m flame_agents.runner``),
and exposes Python objects as services whose calls return :class:`ObjectFuture` results kept
in the object cache::

    from flame_agents.runner import Runner

    with Runner("my-job") as runner:
        square = runner.service(square_fn)
        print(runner.get([square(i) for i in range(10)]))

See docs/runner.md.
"""

from __future__ import annotations

from flame_agents.runner._future import ObjectFuture
from flame_agents.runner._runner import Runner
from flame_agents.runner._service import RunnerService

__all__ = ["ObjectFuture", "Runner", "RunnerService"]
