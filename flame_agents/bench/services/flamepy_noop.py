"""The no-op service written with the published flamepy 0.6.0 (for the memory baseline).

Imported by name so the package does not depend on flamepy; run only when it is installed.
"""

from __future__ import annotations

import importlib
from typing import Any


def main() -> None:
    """Serve a no-op entrypoint with flamepy's FlameInstance."""
    service: Any = importlib.import_module("flamepy.service")
    ins = service.FlameInstance()

    def noop(data: Any) -> Any:
        return data

    ins.entrypoint(noop)  # a plain call: flamepy's untyped decorator would untype noop
    ins.run()


if __name__ == "__main__":
    main()
