"""The layers hold: the core imports nothing else of ours, a driver imports only the core (and
itself), and no two packages import each other, directly or round a longer circle."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from tests.helpers import ROOT

OURS = ("agent", "drivers", "hil")


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Modules of ours that ``path`` imports, at run time or for type checking alike."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in OURS}


def _graph() -> dict[str, set[str]]:
    modules = {
        _module(p): p
        for top in OURS
        for p in (ROOT / top).rglob("*.py")
        if "profiles" not in p.parts
    }
    return {
        name: {m for m in _imports(path) if m in modules and m != name}
        for name, path in modules.items()
    }


def _unit(module: str) -> str:
    """The package a module belongs to, for the cycle check: agent.core, agent.config,
    drivers.modbus, hil, ... (a loose module of agent is a unit of its own). The soak
    (hil/soak*.py) is a harness above both the agent and the simulated building: a unit of its
    own, which the building and the agent must never import."""
    parts = module.split(".")
    if parts[0] == "hil":
        return "hil.soak" if parts[1:] and parts[1].startswith("soak") else "hil"
    return ".".join(parts[:2])


def test_nothing_imports_the_soak() -> None:
    wrong = {
        f"{m} imports {i}"
        for m, imports in _graph().items()
        if _unit(m) != "hil.soak"
        for i in imports
        if _unit(i) == "hil.soak"
    }
    assert not wrong, sorted(wrong)


def test_the_core_imports_nothing_else_of_ours() -> None:
    wrong = {
        f"{m} imports {i}"
        for m, imports in _graph().items()
        if m.startswith("agent.core")
        for i in imports
        if not i.startswith("agent.core")
    }
    assert not wrong, sorted(wrong)


def test_drivers_import_only_the_core_and_themselves() -> None:
    wrong = {
        f"{m} imports {i}"
        for m, imports in _graph().items()
        if m.startswith("drivers.")
        for i in imports
        if not (i.startswith("agent.core") or _unit(i) == _unit(m) or i == "drivers")
    }
    assert not wrong, sorted(wrong)


def test_no_package_import_cycles() -> None:
    edges: dict[str, set[str]] = defaultdict(set)
    for module, imports in _graph().items():
        for imported in imports:
            if _unit(imported) != _unit(module):
                edges[_unit(module)].add(_unit(imported))
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(edges.get(node, ())):
            if nxt == path[0]:
                cycles.append([*path, nxt])
            elif nxt not in path and nxt > path[0]:  # each cycle once, from its least member
                visit(nxt, [*path, nxt])

    for start in sorted(edges):
        visit(start, [start])
    assert not cycles, " ; ".join(" -> ".join(c) for c in cycles)
