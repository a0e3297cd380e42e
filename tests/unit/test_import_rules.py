"""The import rules of the scheduler and the clients, read from the source: no import cycle
(imports under ``if TYPE_CHECKING:`` included), and filters and weighers import nothing of
the scheduler but the framework and their own helpers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
CHECKED = ("allotment.scheduler", "allotment.client")
PLUGINS = ("allotment.scheduler.filters", "allotment.scheduler.weighers")
FRAMEWORK = "allotment.scheduler.framework"


def _modules() -> dict[str, Path]:
    found = {}
    for path in (SRC / "allotment").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Modules of the package ``name`` imports, at run time or for type checking."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    known = _modules()
    return {name: _imports(name, path, known) for name, path in known.items()}


def _cycle_from(start: str, graph: dict[str, set[str]], within: tuple[str, ...]) -> list[str]:
    """A path of imports from ``start`` back to itself inside ``within``, if any."""
    stack = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for dep in graph.get(node, ()):
            if not dep.startswith(within):
                continue
            if dep == start:
                return [*path, dep]
            if dep not in seen:
                seen.add(dep)
                stack.append((dep, [*path, dep]))
    return []


def test_no_import_cycle_in_the_scheduler_or_the_clients() -> None:
    graph = _graph()
    cycles = [
        " -> ".join(found)
        for name in sorted(graph)
        if name.startswith(CHECKED) and (found := _cycle_from(name, graph, CHECKED))
    ]
    assert cycles == []


@pytest.mark.parametrize("family", PLUGINS)
def test_plugins_import_only_the_framework(family: str) -> None:
    graph = _graph()
    plugins = [name for name in graph if name.startswith(family)]
    assert plugins
    wrong = {
        (name, dep)
        for name in plugins
        for dep in graph[name]
        if dep.startswith("allotment.scheduler")
        and not dep.startswith((FRAMEWORK, *PLUGINS))
        and dep != "allotment.scheduler"
    }
    assert wrong == set()
