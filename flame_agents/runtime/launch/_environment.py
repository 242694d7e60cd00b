"""The environment an instance starts with, as Flame's host shim builds it, plus ours.

The runtime's own environment (with the token and CA instances need), the application's
``environments`` (``$VAR`` expanded against it), Flame's ``FLAME_*`` variables, the message
limit, the names our services put in their process title, what the application's installed
package adds, the GPUs the scheduler granted, and a private temp folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from flame_agents._wire.limits import MAX_MESSAGE_ENV
from flame_agents._wire.proctitle import APP_ENV, SESSION_ENV
from flame_agents.runtime._launch import LaunchSpec, expand_vars
from flame_agents.runtime.launch._installer import Installed

__all__ = ["instance_environment"]


def instance_environment(
    spec: LaunchSpec,
    *,
    cwd: Path,
    socket_path: Path,
    scratch: Path,
    package: Installed | None,
) -> dict[str, str]:
    """The environment of one instance of ``spec`` serving on ``socket_path``; ``scratch`` is
    its own folder (its temp files go to ``scratch/tmp``, created here)."""
    base = dict(os.environ)
    base.update(spec.credentials.environment())
    env = dict(base)
    app_env = {e.name: expand_vars(e.value, base) for e in spec.app.environments}
    env.update(app_env)
    env["FLAME_LOG"] = base.get("FLAME_LOG", "info")
    env["FLAME_INSTANCE_ENDPOINT"] = str(socket_path)
    env["FLAME_ENDPOINT"] = spec.frontend_endpoint
    env[MAX_MESSAGE_ENV] = str(spec.max_message_bytes)
    # Our services put them in their process title (ps shows what each instance serves).
    env[APP_ENV] = spec.app_name
    env[SESSION_ENV] = spec.session_id
    if spec.cache_endpoint:
        env["FLAME_CACHE_ENDPOINT"] = spec.cache_endpoint
    if "HOME" not in app_env:
        env["HOME"] = base.get("HOME", str(cwd))
    if package is not None:
        package.apply(env)
    if spec.visible_gpus is not None:
        # The runtime's accounting decides which GPUs an instance uses, over any app setting.
        env["CUDA_VISIBLE_DEVICES"] = ",".join(spec.visible_gpus)
    # Temp files go to our own per-instance folder (removed at teardown), never into the
    # application's working_directory.
    tmp = scratch / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    for name in ("TMPDIR", "TEMP", "TMP"):
        if name not in app_env:
            env[name] = str(tmp)
    return env
