"""Imports flow one way (docs/architecture.md): wire <- core, cache <- service <- agent; the
runtime uses the wire and its own modules only; cli, testing and bench sit on top."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "flame_agents"
LEAVES = {"errors", "types", "config", "_logging", "embedded"}
ALLOWED: dict[str, set[str]] = {
    "_wire": LEAVES,
    "cache": LEAVES | {"_wire"},
    "core": LEAVES | {"_wire", "cache"},
    "service": LEAVES | {"_wire", "core", "cache"},
    "agent": LEAVES | {"_wire", "core", "cache", "service"},
    "runtime": LEAVES | {"_wire"},
}
"""For each layer, the other top-level parts of flame_agents it may import."""


def _imported_parts(path: Path) -> set[str]:
    """Top-level flame_agents parts imported by one module (``flame_agents.X...`` -> ``X``)."""
    parts: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "flame_agents":
                names = [f"flame_agents.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            bits = name.split(".")
            if bits[0] == "flame_agents" and len(bits) > 1:
                parts.add(bits[1])
    return parts


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports_only_what_it_may(layer: str) -> None:
    """No module of a layer imports a part of the package outside its allowed set."""
    offenders = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        if "flame_v1" in path.parts:
            continue  # generated code
        bad = _imported_parts(path) - ALLOWED[layer] - {layer}
        if bad:
            offenders.append(f"{path.relative_to(PACKAGE)} imports {sorted(bad)}")
    assert not offenders, "\n".join(offenders)


def test_leaf_modules_import_only_leaves() -> None:
    """errors, types, config, _logging and embedded import no other part of the package."""
    for leaf in sorted(LEAVES):
        assert _imported_parts(PACKAGE / f"{leaf}.py") <= LEAVES, leaf
