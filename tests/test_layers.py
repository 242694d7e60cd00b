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
    "runner": LEAVES | {"_wire", "core", "cache", "service"},
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


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _imports(path: Path) -> list[tuple[str, tuple[str, ...]]]:
    """Every ``flame_agents`` import of one file as (module, names imported from it): at the
    top, under TYPE_CHECKING and inside functions alike (a type-only or deferred import still
    ties the two modules)."""
    found: list[tuple[str, tuple[str, ...]]] = []
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.extend((alias.name, ()) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found.append((base, tuple(alias.name for alias in node.names)))
    return [(m, names) for m, names in found if m.split(".")[0] == "flame_agents"]


def _module_graph(package: Path) -> dict[str, set[str]]:
    """The import graph of one package's own modules (``__init__`` included), by file stem.

    ``from package import _mod`` is an edge to ``_mod`` (not to ``__init__``, which every
    import of a submodule runs anyway); importing any other name from the package is an edge
    to ``__init__``.
    """
    dotted = ".".join(package.relative_to(PACKAGE.parent).parts)
    stems = {path.stem for path in package.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in sorted(package.glob("*.py")):
        edges: set[str] = set()
        for module, names in _imports(path):
            if module == dotted:
                edges.update(name if name in stems else "__init__" for name in names)
            elif module.startswith(f"{dotted}."):
                edges.add(module[len(dotted) + 1 :].split(".")[0])
        graph[path.stem] = edges - {path.stem}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (as the list of modules around it), or None."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            found = visit(nxt)
            if found:
                return found
        path.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        found = visit(start)
        if found:
            return found
    return None


def test_core_has_no_import_cycle() -> None:
    """The modules of flame_agents.core import each other without a cycle (type-only and
    deferred imports count): a reader can follow core from its bottom up."""
    graph = _module_graph(PACKAGE / "core")
    assert len(graph) > 1
    cycle = _cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


def test_no_package_imports_another_packages_private_modules() -> None:
    """No module imports a private module (``_name``) of another subpackage: a package that
    needs another's internals gets a seam (a public module) instead. ``_wire`` is itself the
    shared vocabulary, so its modules are open to all."""
    offenders = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        if "flame_v1" in path.parts:
            continue  # generated code
        parts = path.relative_to(PACKAGE).parts
        own = parts[0] if len(parts) > 1 else None
        for module, names in _imports(path):
            for imported in (module, *(f"{module}.{name}" for name in names)):
                bits = imported.split(".")
                if len(bits) < 3 or bits[1] == own:
                    continue
                private = [i for i, bit in enumerate(bits) if i >= 2 and _is_private(bit)]
                if private:
                    target = ".".join(bits[: private[0] + 1])
                    offenders.add(f"{path.relative_to(PACKAGE)} imports {target}")
    assert not offenders, "\n".join(sorted(offenders))


RUNTIME = PACKAGE / "runtime"
WINGS: dict[str, set[str]] = {"sessions": set(), "launch": set(), "cache": set()}
"""For each wing of the runtime (the session manager, the launcher, the object cache), the other
wings it may import: none. The session manager is handed its way to launch instances
(``runtime._launch.Launch``) by the composer."""
COMPOSERS = {"_server", "__main__"}
"""The runtime's modules that put the wings together (start and stop, the command line)."""


def _runtime_part(module: str) -> str | None:
    """The wing (or top-level runtime module) ``flame_agents.runtime.X...`` names, else None."""
    bits = module.split(".")
    if bits[:2] != ["flame_agents", "runtime"] or len(bits) < 3:
        return None
    return bits[2]


def test_runtime_wings_import_only_what_they_may() -> None:
    """The session manager, the launcher and the object cache import no other wing (the two
    servers never each other); the runtime's shared top-level modules import no wing; only the
    composers import them all."""
    offenders = []
    for path in sorted(RUNTIME.rglob("*.py")):
        rel = path.relative_to(RUNTIME)
        own = rel.parts[0] if len(rel.parts) > 1 else path.stem
        if own in COMPOSERS:
            continue
        allowed = WINGS.get(own, set())
        for module, names in _imports(path):
            targets = {_runtime_part(module)}
            if module == "flame_agents.runtime":
                targets = set(names)
            for target in targets - {None, own}:
                if target in WINGS and target not in allowed:
                    offenders.append(f"runtime/{rel} imports the {target} wing")
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize("wing", sorted(WINGS))
def test_runtime_wing_has_no_import_cycle(wing: str) -> None:
    """The modules of each runtime wing import each other without a cycle."""
    graph = _module_graph(RUNTIME / wing)
    assert len(graph) > 1
    cycle = _cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])
