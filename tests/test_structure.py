"""Structure rules that code review alone would let slip: the hook owns every endpoint, ids are checked in one place,
value sets come from ``vocabulary``.

Each rule reads the package's code through :mod:`ast` (docstrings and comments are prose and may name the endpoint
a task causes), and each checker is first shown to catch a violation, so a rule cannot pass by finding nothing.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import airflow_provider_carecycle
from airflow_provider_carecycle import vocabulary

PACKAGE = Path(airflow_provider_carecycle.__file__).parent
#: the packages whose classes reach the API only through a hook's methods
TASK_PACKAGES = ("operators", "sensors", "triggers", "transfers")


def _docstrings(tree: ast.AST) -> set[int]:
    """The ids of the nodes that are docstrings (the first statement of a module, class or function)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def code_strings(source: str) -> list[tuple[int, str]]:
    """Every string literal of ``source`` outside docstrings (f-string parts included), with its line."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip
    ]


def api_paths(source: str) -> list[tuple[int, str]]:
    """The string literals of ``source``'s code that hold a careCycle API path."""
    return [(line, text) for line, text in code_strings(source) if "/v2/" in text]


def modules(*packages: str) -> list[Path]:
    return sorted(path for package in packages for path in (PACKAGE / package).rglob("*.py"))


def test_the_path_check_sees_paths_in_code_and_not_in_prose():
    source = '''
"""Exports GET /v2/customers."""
def run(hook, customer_id):
    """Reads /v2/customers/{id}/calls."""
    # GET /v2/campaigns in a comment
    hook.paginate("/v2/customers", {})
    return hook.paginate(f"/v2/customers/{customer_id}/calls", {})
'''
    assert [line for line, _ in api_paths(source)] == [6, 7]


@pytest.mark.parametrize("path", modules(*TASK_PACKAGES), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_operator_sensor_trigger_or_transfer_builds_an_api_path(path):
    assert modules(*TASK_PACKAGES), "no task modules found: the check would pass on nothing"
    found = api_paths(path.read_text(encoding="utf-8"))
    assert not found, f"{path.name} builds API paths {found}: add a page-level method to the hook and call it instead."


def uuid_patterns(source: str) -> list[int]:
    """The lines of ``source``'s code holding a UUID regular expression (8 hex digits then a dash)."""
    return [line for line, text in code_strings(source) if "{8}-" in text and "a-f" in text.lower()]


def test_the_uuid_check_lives_in_ids_only():
    assert uuid_patterns('import re\nX = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}$")\n') == [2]
    holders = [p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py") if uuid_patterns(p.read_text())]
    assert holders == ["ids.py"]


def constants_through_other_modules(source: str) -> list[tuple[int, str]]:
    """``from airflow_provider_carecycle.<not vocabulary> import NAME`` of a name ``vocabulary`` defines."""
    shared = {name for name in vars(vocabulary) if name.isupper()}
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("airflow_provider_carecycle."):
            if node.module != "airflow_provider_carecycle.vocabulary":
                found += [(node.lineno, alias.name) for alias in node.names if alias.name in shared]
    return found


def test_value_sets_are_imported_from_vocabulary():
    assert constants_through_other_modules(
        "from airflow_provider_carecycle.hooks.carecycle import MAX_PER_PAGE, CareCycleHook\n"
        "from airflow_provider_carecycle.vocabulary import SORT_DIRECTIONS\n"
    ) == [(1, "MAX_PER_PAGE")]
    found = {
        path.relative_to(PACKAGE).as_posix(): hits
        for path in PACKAGE.rglob("*.py")
        if (hits := constants_through_other_modules(path.read_text(encoding="utf-8")))
    }
    assert found == {}, "import these from airflow_provider_carecycle.vocabulary"


#: a module longer than this says in its docstring why it is one module ("Why one module of this size: ...")
MODULE_LINES = 450
SIZE_REASON = "Why one module of this size:"


def oversized_without_reason(path: Path) -> bool:
    source = path.read_text()
    return source.count("\n") > MODULE_LINES and SIZE_REASON not in (ast.get_docstring(ast.parse(source)) or "")


def test_the_size_rule_catches_a_long_module_without_a_reason(tmp_path):
    long_module = tmp_path / "long.py"
    long_module.write_text('"""A module."""\n' + "x = 1\n" * (MODULE_LINES + 1))
    assert oversized_without_reason(long_module)
    long_module.write_text(f'"""A module.\n\n{SIZE_REASON} a reason."""\n' + "x = 1\n" * (MODULE_LINES + 1))
    assert not oversized_without_reason(long_module)


def test_every_long_module_says_why_it_is_one():
    assert [p.relative_to(PACKAGE) for p in sorted(PACKAGE.rglob("*.py")) if oversized_without_reason(p)] == []
