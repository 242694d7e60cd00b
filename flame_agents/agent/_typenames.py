"""Names of user types that another process can import: ``module:qualname``.

Replies, step results and streamed items record the name of their model class, so a client or a
re-run in a fresh process can rebuild the same class.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["main_module_name", "type_name"]


def type_name(tp: type) -> str:
    """``module:qualname`` of a type (recorded in replies and state for tools).

    A type defined in a script run as ``python agent.py`` lives in ``__main__``, a name no other
    process can import; the script's own module name (``agent``) is recorded instead.
    """
    module = tp.__module__
    if module == "__main__":
        module = main_module_name() or module
    return f"{module}:{tp.__qualname__}"


def main_module_name() -> str | None:
    """The importable name of this process's ``__main__``: ``pkg.mod`` when run with ``-m``,
    the file's stem for a script; None when there is neither (an interactive session)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name and spec.name != "__main__":
        return str(spec.name).removesuffix(".__main__")
    path = getattr(main, "__file__", None)
    if path:
        stem = Path(path).stem
        if stem.isidentifier():
            return stem
    return None
