"""The package's import graph, built from the source (nothing is imported), has no cycle, and no module below the
tasks imports a task module.

Every import is an edge: at module level; inside a function (it runs when the function is called, and the cycle
between ``lineage.py`` and the operators hid there); and under ``TYPE_CHECKING`` (the type checker follows it, and a
module that names a higher layer's class, even for types only, is tied to it the same way). ``from package import
name`` is an edge to the submodule ``package.name`` when there is one, else to the package's ``__init__``; the
parent packages Python initialises on the way to a submodule are not edges (importing ``a.b.c`` is not a dependency
on everything ``a.b`` re-exports). Each check is first shown to catch what it looks for, so it cannot pass by
finding nothing.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

import airflow_provider_carecycle

PACKAGE = Path(airflow_provider_carecycle.__file__).parent
#: the packages of operators, sensors, triggers and transfers: what DAG authors use; the rest of the provider serves
#: them and never imports them (so, e.g., lineage never inspects an operator class)
TASK_PACKAGES = ("operators", "sensors", "triggers", "transfers")


def module_names(root: Path) -> dict[str, Path]:
    """``dotted module name -> file`` for every module of the package at ``root`` (``__init__`` names the package)."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> Iterator[tuple[str, list[str]]]:
    """``(imported module, names taken from it)`` of one import statement of ``module``."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name, []
        return
    base = node.module or ""
    if node.level:
        parts = module.split(".")
        anchor = parts if is_package else parts[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join([*anchor, *([base] if base else [])])
    yield base, [alias.name for alias in node.names]


def import_graph(root: Path) -> dict[str, set[str]]:
    """``module -> the package's modules it imports`` for the package at ``root``, read with :mod:`ast`."""
    modules = module_names(root)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target, names in _imported(node, name, path.name == "__init__.py"):
                if target not in modules:
                    continue
                submodules = [f"{target}.{n}" for n in names if f"{target}.{n}" in modules]
                if len(submodules) < len(names) or not names:
                    graph[name].add(target)
                graph[name].update(submodules)
        graph[name].discard(name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _write(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_graph_sees_imports_in_functions_under_type_checking_and_relative_ones(tmp_path):
    root = _write(
        tmp_path / "pkg",
        {
            "__init__.py": "from pkg.face import thing\n",
            "face.py": "thing = 1\n",
            "a.py": "def f():\n    from pkg import b\n",
            "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.sub.c import C\n",
            "sub/__init__.py": "",
            "sub/c.py": "from .. import face\nfrom ..a import f\nimport json\n",
        },
    )
    graph = import_graph(root)
    assert graph == {
        "pkg": {"pkg.face"},
        "pkg.face": set(),
        "pkg.a": {"pkg.b"},
        "pkg.b": {"pkg.sub.c"},
        "pkg.sub": set(),
        "pkg.sub.c": {"pkg.face", "pkg.a"},
    }
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.sub.c"]]


def test_a_package_face_importing_its_submodules_is_not_a_cycle(tmp_path):
    # the limits library's layout, and hooks/ratelimit's: __init__ -> factory -> backend -> base
    root = _write(
        tmp_path / "pkg",
        {
            "__init__.py": "from pkg.factory import make\n",
            "base.py": "",
            "factory.py": "from pkg.backend import Backend\n",
            "backend.py": "from pkg.base import *\n",
        },
    )
    assert cycles(import_graph(root)) == []


def test_the_package_has_no_import_cycle():
    graph = import_graph(PACKAGE)
    assert len(graph) > 50 and sum(map(len, graph.values())) > 100, "the graph is too small: the walk found nothing"
    found = cycles(graph)
    assert found == [], "import cycles (each line: the modules that import each other, directly or not):\n" + "\n".join(
        " <-> ".join(cycle) for cycle in found
    )


def task_imports(graph: dict[str, set[str]]) -> Iterable[tuple[str, str]]:
    """``(module, task module it imports)`` for every module outside the task packages."""
    tasks = tuple(f"{PACKAGE.name}.{package}" for package in TASK_PACKAGES)
    for module, targets in sorted(graph.items()):
        if not module.startswith(tasks):
            yield from ((module, target) for target in sorted(targets) if target.startswith(tasks))


def test_the_task_rule_catches_a_module_that_imports_an_operator():
    graph = {
        f"{PACKAGE.name}.lineage": {f"{PACKAGE.name}.operators.leads", f"{PACKAGE.name}.storage"},
        f"{PACKAGE.name}.operators.leads": {f"{PACKAGE.name}.lineage"},
    }
    assert list(task_imports(graph)) == [(f"{PACKAGE.name}.lineage", f"{PACKAGE.name}.operators.leads")]


@pytest.mark.parametrize("package", TASK_PACKAGES)
def test_no_module_below_the_tasks_imports_a_task_module(package):
    graph = import_graph(PACKAGE)
    assert any(m.startswith(f"{PACKAGE.name}.{package}.") for m in graph), f"no {package} modules found"
    found = [(m, t) for m, t in task_imports(graph) if t.startswith(f"{PACKAGE.name}.{package}")]
    assert found == [], (
        f"these modules import {package}: lineage, metrics and the rest serve the tasks, never the reverse"
    )
