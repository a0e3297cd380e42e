"""allotment's import rules, read from the source with a small AST walk.

- No import cycle among ``src/allotment`` modules, counting every import statement: those
  under ``if TYPE_CHECKING:`` and inside functions too.
- Filters and weighers import nothing of the scheduler but ``scheduler/framework.py`` and
  their own family's helpers.
- Nothing imports ``placement.api`` except the app factory (``app.py``, and ``openapi.py``,
  which documents the routes the factory mounts) and ``api`` itself.

``from a.b import c`` is an import of ``a.b.c`` when that is a module, and of ``a.b`` (whose
``__init__`` runs either way) when ``a.b`` is a module or package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PLUGINS = ("allotment.scheduler.filters", "allotment.scheduler.weighers")
FRAMEWORK = "allotment.scheduler.framework"
PLACEMENT_API = "allotment.placement.api"
APP_FACTORY = "allotment.app"
API_IMPORTERS = (APP_FACTORY, "allotment.openapi")

Graph = dict[str, set[str]]


def _modules(root: Path) -> dict[str, Path]:
    """Every module under ``root`` (a source folder), by dotted name."""
    found = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The known modules that module ``name`` imports, at run time or for type checking."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
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


def _graph(root: Path) -> Graph:
    known = _modules(root)
    return {name: _imports(name, path, known) for name, path in known.items()}


def _cycles(graph: Graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            advanced = False
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


@pytest.fixture(scope="module")
def graph() -> Graph:
    found = _graph(SRC)
    assert APP_FACTORY in found and FRAMEWORK in found
    return found


def test_the_checker_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_the_checker_reads_type_checking_and_relative_imports(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.b import thing\n")
    (package / "b.py").write_text(
        "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from . import a\n"
    )
    made_up = _graph(tmp_path)
    assert made_up["pkg.a"] == {"pkg.b"}
    assert made_up["pkg.b"] == {"pkg.a", "pkg"}
    assert _cycles(made_up) == [["pkg.a", "pkg.b"]]


def test_no_import_cycle_anywhere(graph: Graph) -> None:
    assert _cycles(graph) == []


@pytest.mark.parametrize("family", PLUGINS)
def test_plugins_import_only_the_framework(graph: Graph, family: str) -> None:
    plugins = [name for name in graph if name.startswith(family)]
    assert plugins
    wrong = {
        (name, dep)
        for name in plugins
        for dep in graph[name]
        if dep.startswith("allotment.scheduler")
        and not dep.startswith((FRAMEWORK, family))
        and dep != "allotment.scheduler"
    }
    assert wrong == set()


def test_only_the_app_factory_imports_placement_api(graph: Graph) -> None:
    wrong = {
        (name, dep)
        for name, deps in graph.items()
        if name not in API_IMPORTERS and not name.startswith(PLACEMENT_API)
        for dep in deps
        if dep.startswith(PLACEMENT_API)
    }
    assert wrong == set()
