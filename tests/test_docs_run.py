"""Run the docs: every Python block of README.md and docs/ executes, every shell block names what exists.

Python blocks (``tests/test_docs.py`` compiles every one and resolves its imports; this file runs them):

* the blocks of a page run in order, in one namespace (a later block may use what an earlier one imported or built),
  each inside a DAG context of its own (so a block that builds operators builds them as a DAG file would), with the
  working directory a fresh temporary folder, and with ``carecycle_default`` and ``carecloud_crm_default`` pointing
  at the emulators (so a block that calls the API calls them);
* a block is not run when the line before its fence is a marker saying it is part of something else:
  ``<!-- excerpt -->`` (or ``<!-- excerpt: why -->``: a piece of a larger file, shown for reading),
  ``<!-- snippet: FILE -->`` (lines of FILE, which its own tests run: the example DAGs are run in real Airflow) or
  ``<!-- test file: NAME -->`` (a test file, run as one by tests/test_docs.py). Each is still compiled.

Shell blocks (``bash``, ``sh``, ``shell``, ``console``): every command line (continuations joined, comments dropped,
split at ``&&``, ``||``, ``;`` and ``|``) is checked by what it runs:

* ``make TARGET``: the Makefile has the target (``make -n``);
* ``airflow ...``: Airflow's own CLI parser of the Airflow this test runs on accepts the command and its options;
* ``carecycle-emulator ...`` / ``carecloud-crm-emulator ...``: the emulator CLI's parser accepts the options;
* ``curl ... /_emulator/...``: the emulator serves that control path;
* ``pip install`` / ``pip download``: every package named is one of this repository's distributions or Airflow;
* any other command must be one a reader has (``KNOWN_COMMANDS``); a repository path a line names must exist.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import subprocess
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from tests.test_docs import DOCS, IDS, PYTHON_LANGS, ROOT, CodeBlock, code_blocks

SHELL_LANGS = frozenset({"bash", "sh", "shell", "console"})
_MARKER = re.compile(r"^\s*<!--\s*(?P<kind>excerpt|snippet|test file)\b[^>]*-->\s*$")

#: commands a reader runs that are not this repository's (their options are theirs to document)
KNOWN_COMMANDS = frozenset(
    {"aws", "cd", "curl", "export", "gcloud", "git", "mkdir", "pip", "printf", "python", "python3", "uv", "zip"}
)
#: distributions a ``pip install`` in the docs may name
KNOWN_DISTRIBUTIONS = frozenset({"airflow-provider-carecycle", "carecycle-emulator", "apache-airflow"})
#: top-level folders of this repository: a word starting with one of them is a path that must exist
_REPO_PATH = re.compile(r"^(?:constraints|docs|example_dags|tests|emulator|dev|benchmarks|\.ci)/[\w./-]*$")


# -- python blocks ---------------------------------------------------------------------------------------------------


@dataclass
class PageBlock:
    """A code block of a page with the marker on the line before its fence (``None`` when it has none)."""

    block: CodeBlock
    marker: str | None


def page_blocks(text: str) -> list[PageBlock]:
    """The code blocks of a page, each with its marker kind (``excerpt``, ``snippet``, ``test file`` or ``None``)."""
    lines = text.splitlines()
    out = []
    for block in code_blocks(text):
        before = lines[block.line - 3] if block.line >= 3 else ""  # block.line is the code's first line (1-based)
        match = _MARKER.match(before)
        out.append(PageBlock(block, match["kind"] if match else None))
    return out


def runnable_python_blocks(text: str) -> list[CodeBlock]:
    """The Python blocks of a page that run (no marker before them)."""
    return [pb.block for pb in page_blocks(text) if pb.block.lang in PYTHON_LANGS and pb.marker is None]


_STATED = re.compile(r"^(?P<expr>[^#'\"]+?)\s+#\s+(?P<value>.+)$")


def stated_results(code: str) -> list[tuple[int, str, object]]:
    """``(line offset, expression, value)`` for each line of a block that is an expression followed by a comment
    stating its value as a Python literal (``result.ok  # True``; text after the literal in parentheses is prose)."""
    import ast

    found = []
    for offset, line in enumerate(textwrap.dedent(code).splitlines()):
        match = _STATED.match(line)
        if not match or line[0].isspace():
            continue
        try:
            tree = ast.parse(match["expr"], mode="eval")
        except SyntaxError:
            continue
        if isinstance(tree.body, ast.Constant):
            continue
        for candidate in (match["value"], match["value"].split(" (", 1)[0]):
            try:
                found.append((offset, match["expr"], ast.literal_eval(candidate)))
                break
            except (ValueError, SyntaxError):
                continue
    return found


def run_python_blocks(name: str, text: str, namespace: dict | None = None) -> int:
    """Execute a page's runnable Python blocks, in order, in one namespace, each inside a DAG context of its own.

    :param namespace: the namespace to run them in (a new one by default), for a test to read what they built.
    :return: how many blocks ran.
    :raises AssertionError: naming the page and line of the first block that raised, with its exception.
    """
    from airflow import DAG

    slug = re.sub(r"\W", "_", name)
    namespace = {} if namespace is None else namespace
    namespace.setdefault("__name__", f"docs_{slug}")
    ran = 0
    for number, block in enumerate(runnable_python_blocks(text)):
        code = compile(textwrap.dedent(block.code), f"{name}:{block.line}", "exec")
        dag_id = f"docs_{slug}_{number}"
        try:
            with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
                exec(code, namespace)
        except Exception as err:
            raise AssertionError(f"{name}:{block.line}: the block raised {type(err).__name__}: {err}") from err
        for offset, expression, stated in stated_results(block.code):
            actual = eval(expression, namespace)
            if actual != stated:
                raise AssertionError(
                    f"{name}:{block.line + offset}: {expression} is {actual!r}, the page says {stated!r}"
                )
        ran += 1
    return ran


PAGES_WITH_PYTHON = [p for p in DOCS if runnable_python_blocks(p.read_text(encoding="utf-8"))]


@pytest.mark.parametrize("path", PAGES_WITH_PYTHON, ids=[str(p.relative_to(ROOT)) for p in PAGES_WITH_PYTHON])
def test_python_blocks_run(path: Path, carecycle_emulator, carecloud_emulator, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    name = str(path.relative_to(ROOT))
    assert run_python_blocks(name, path.read_text(encoding="utf-8")) >= 1


def test_the_pages_results_are_what_they_say(carecycle_emulator, tmp_path, monkeypatch, capsys) -> None:
    """Where a page states what its block gives, the run gives it: the connection test connects to the emulator, and
    the values stated in comments (``result.ok  # True``) are checked by the run (lead-fields.md states three)."""
    monkeypatch.chdir(tmp_path)
    run_python_blocks("connections.md", (ROOT / "docs" / "connections.md").read_text(encoding="utf-8"))
    printed = capsys.readouterr().out.splitlines()  # Airflow 2 also logs the connection lookup to stdout
    assert any(line.startswith(f"True Connected to careCycle at {carecycle_emulator.url} (") for line in printed)
    lead_fields = (ROOT / "docs" / "lead-fields.md").read_text(encoding="utf-8")
    assert len([s for b in runnable_python_blocks(lead_fields) for s in stated_results(b.code)]) == 3


def test_stated_results_are_read_and_checked() -> None:
    code = "x = 2\nx + 1  # 3\nx  # 2 (the input)\nprint(x)  # prints it\nx  # a comment\n"
    assert stated_results(code) == [(1, "x + 1", 3), (2, "x", 2)]
    with pytest.raises(AssertionError, match=r"x\.md:3: x \+ 1 is 3, the page says 4"):
        run_python_blocks("x.md", "```python\nx = 2\nx + 1  # 4\n```\n")


def test_every_python_block_runs_or_is_marked() -> None:
    """The run covers every block but those marked, and markers stand before code fences only."""
    total = run = 0
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        blocks = page_blocks(text)
        total += sum(pb.block.lang in PYTHON_LANGS for pb in blocks)
        run += len(runnable_python_blocks(text))
        fence_lines = {pb.block.line - 1 for pb in blocks}
        for number, line in enumerate(text.splitlines(), 1):
            if _MARKER.match(line):
                assert number + 1 in fence_lines, f"{path.name}:{number}: a marker must be right before a code fence"
    assert run >= 20 and run > total * 2 // 3, (run, total)


# -- shell blocks ----------------------------------------------------------------------------------------------------


def shell_commands(code: str) -> Iterator[tuple[int, list[str]]]:
    """``(line offset, words)`` of each command of a shell block: continuations joined, comments and output dropped,
    split at ``&&``, ``||``, ``;`` and ``|``; ``export``/``VAR=`` assignments alone are skipped."""
    lines = code.splitlines()
    offset = 0
    while offset < len(lines):
        start = offset
        line = lines[offset]
        offset += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        while True:  # join continuation lines and lines inside an open quote
            try:
                words = shlex.split(line.replace("\\\n", " "), comments=True)
            except ValueError:  # no closing quotation
                words = None
            if offset >= len(lines) or (words is not None and not line.rstrip().endswith("\\")):
                break
            line += "\n" + lines[offset]
            offset += 1
        if words is None:
            words = line.split()
        command: list[str] = []
        for word in [*words, ";"]:
            if word in {"&&", "||", ";", "|"}:
                while command and re.match(r"^[A-Za-z_]\w*=", command[0]):
                    command.pop(0)
                if command and command[0] != "export":
                    yield start, command
                command = []
            else:
                command.append(word)


def _make_target_problem(target: str) -> str | None:
    done = subprocess.run(
        ["make", "-n", "--no-print-directory", "-C", str(ROOT), target],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return None if done.returncode == 0 else f"make has no target {target!r}: {done.stderr.strip()[-200:]}"


def _argparse_problem(parser, args: list[str]) -> str | None:
    """Why ``parser`` refuses ``args`` (argparse exits with SystemExit), or ``None``."""
    import contextlib
    import io

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            parser.parse_args(args)
    except SystemExit as exit:
        if exit.code:
            return err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else f"exit {exit.code}"
    return None


def _placeholders(words: list[str]) -> list[str]:
    """``$VAR`` and ``<thing>`` placeholders replaced by a plain word, so parsers see a value."""
    return [re.sub(r"\$\{?\w+\}?|<[^>]+>", "x", word) for word in words]


def command_problem(words: list[str]) -> str | None:
    """Why a documented command would not work here, or ``None``."""
    program, args = words[0], _placeholders(words[1:])
    if program == "make":
        targets = [a for a in args if not a.startswith("-") and "=" not in a]
        return next((p for p in map(_make_target_problem, targets) if p), None)
    if program == "airflow":
        from airflow.cli.cli_parser import get_parser

        return _argparse_problem(get_parser(), args)
    if program in {"carecycle-emulator", "carecloud-crm-emulator"}:
        from carecycle_emulator.carecloud.cli import build_parser as carecloud_parser
        from carecycle_emulator.carecycle.cli import build_parser as carecycle_parser

        parser = carecycle_parser() if program == "carecycle-emulator" else carecloud_parser()
        return _argparse_problem(parser, args)
    if program == "curl":
        paths = [m[0] for a in args for m in re.finditer(r"/_emulator/[\w/]+", a)]
        served = (ROOT / "emulator" / "src" / "carecycle_emulator").rglob("*.py")
        source = "\n".join(p.read_text(encoding="utf-8") for p in served)
        missing = [p for p in paths if f'"{p}"' not in source]
        return f"the emulator serves no {missing}" if missing else None
    if program == "pip" and args[:1] in (["install"], ["download"]):
        names = [a for a in args[1:] if not a.startswith("-") and not a.startswith(("http", ".", "/"))]
        flagged_values = {args[i + 1] for i, a in enumerate(args[:-1]) if a in {"--constraint", "-c", "--dest", "-d"}}
        flagged_values |= {args[i + 1] for i, a in enumerate(args[:-1]) if a in {"--find-links", "--platform"}}
        flagged_values |= {args[i + 1] for i, a in enumerate(args[:-1]) if a in {"--python-version"}}
        unknown = [
            n
            for n in names
            if n not in flagged_values and re.split(r"[\[=<>!~ ]", n, maxsplit=1)[0] not in KNOWN_DISTRIBUTIONS
        ]
        return f"pip names packages this repository does not build: {unknown}" if unknown else None
    if program not in KNOWN_COMMANDS:
        return f"unknown command {program!r}"
    return None


def shell_problems(name: str, text: str) -> list[str]:
    """Commands of a page's shell blocks that name a missing make target, CLI option, emulator path or file."""
    problems = []
    for pb in page_blocks(text):
        if pb.block.lang not in SHELL_LANGS:
            continue
        for offset, words in shell_commands(pb.block.code):
            why = command_problem(words)
            if why:
                problems.append(f"{name}:{pb.block.line + offset}: {' '.join(words)[:80]}: {why}")
            for word in words:
                if _REPO_PATH.match(word) and not (ROOT / word).exists():
                    problems.append(f"{name}:{pb.block.line + offset}: no such file in the repository: {word}")
    return problems


@pytest.mark.parametrize("path", DOCS, ids=IDS)
def test_shell_blocks_name_what_exists(path: Path) -> None:
    assert shell_problems(path.name, path.read_text(encoding="utf-8")) == []


# -- the checkers catch what they should (synthetic text) ------------------------------------------------------------


def test_run_python_blocks_runs_in_a_dag_and_reports_the_failing_line() -> None:

    text = (
        "```python\nfrom airflow_provider_carecycle.operators.leads import CareCycleUploadLeadsOperator\n```\n"
        "```python\nop = CareCycleUploadLeadsOperator(task_id='u', records=[], rejected_path='r.jsonl')\n"
        "assert op.dag is not None\n```\n"
        "<!-- excerpt -->\n```python\nnot_defined_here()\n```\n"
        "```python\nraise_here = 1 / 0\n```\n"
    )
    with pytest.raises(AssertionError, match=r"x\.md:13: the block raised ZeroDivisionError"):
        run_python_blocks("x.md", text)
    assert len(runnable_python_blocks(text)) == 3


def test_shell_commands_split_lines_continuations_and_operators() -> None:
    code = "# comment\nmake dist && cd x \\\n  --flag\nFOO=1 airflow dags list | head\nexport A=b\n"
    assert list(shell_commands(code)) == [
        (1, ["make", "dist"]),
        (1, ["cd", "x", "--flag"]),
        (3, ["airflow", "dags", "list"]),
        (3, ["head"]),
    ]


def test_shell_problems_catch_a_missing_target_option_path_package_and_file() -> None:
    text = (
        "```bash\nmake no-such-target\nairflow connections test x --no-such-option\n"
        "carecycle-emulator --no-such-flag\ncurl localhost:8080/_emulator/no_such\n"
        "pip install airflow-provider-carecycel\nwhatever-tool run\nls example_dags/no_such.py\n```\n"
    )
    problems = shell_problems("x.md", text)
    assert [p.split(":")[1] for p in problems] == ["2", "3", "4", "5", "6", "7", "8", "8"], problems
    good = "```bash\nmake test\nairflow connections test carecycle_default\ncarecycle-emulator --port 8080\n```\n"
    assert shell_problems("x.md", good) == []


# -- statements of the docs checked against the code ----------------------------------------------------------------

#: files a page names that live on the user's side, not in this repository
USER_FILES = frozenset({"requirements.txt"})
_CITED_FILE = re.compile(r"`(?P<path>[\w./-]+\.(?:py|md|txt|toml|cfg|yml|yaml|sh))`")
_PACKAGE_ROOTS = ("", "airflow_provider_carecycle", "emulator", "emulator/src")


@functools.cache
def repository_file_names(root: Path) -> frozenset[str]:
    """The names of the repository's files and folders (hidden folders, venvs and build output left out)."""
    names: set[str] = set()
    for _, folders, files in os.walk(root):
        folders[:] = [f for f in folders if not f.startswith(".") and f not in {"__pycache__", "site", "dist"}]
        names.update(folders, files)
    return frozenset(names)


def cited_file_problems(path: Path, text: str, root: Path = ROOT) -> list[str]:
    """Files named in a page's inline code that are not in the repository (a path from the root, the page or a
    package root; a bare name anywhere in it)."""
    names = repository_file_names(root)
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        for match in _CITED_FILE.finditer(line):
            cited = match["path"]
            if cited in USER_FILES:
                continue
            if "/" in cited:
                found = (path.parent / cited).exists() or any((root / base / cited).exists() for base in _PACKAGE_ROOTS)
            else:
                found = cited in names
            if not found:
                problems.append(f"{path.name}:{number}: cites {cited}, which is not in the repository")
    return problems


@pytest.mark.parametrize("path", [*DOCS, ROOT / "emulator" / "README.md"], ids=[*IDS, "emulator/README.md"])
def test_docs_cite_only_files_in_the_repository(path: Path) -> None:
    assert cited_file_problems(path, path.read_text(encoding="utf-8")) == []


def test_cited_file_problems_catch_a_missing_file(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "here.md").write_text("x")
    page = tmp_path / "docs" / "page.md"
    text = "see `here.md`, `docs/here.md` and `requirements.txt`\nand `api-facts.md`, `tools/gone.py`\n"
    assert cited_file_problems(page, text, root=tmp_path) == [
        "page.md:2: cites api-facts.md, which is not in the repository",
        "page.md:2: cites tools/gone.py, which is not in the repository",
    ]


_ISSUE_NUMBER = re.compile(r"\bissues? #?\d+\b", re.IGNORECASE)


def test_what_users_get_cites_no_internal_issue_number() -> None:
    """The package, the emulator, the example DAGs and the docs are read by users, who cannot look an issue up."""
    shipped = [
        *(ROOT / "airflow_provider_carecycle").rglob("*.py"),
        *(ROOT / "emulator" / "src").rglob("*.py"),
        *(ROOT / "example_dags").rglob("*.py"),
        *DOCS,
        ROOT / "emulator" / "README.md",
    ]
    found = [
        f"{p.relative_to(ROOT)}:{n}: {m[0]}"
        for p in shipped
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        for m in _ISSUE_NUMBER.finditer(line)
    ]
    assert found == []


def test_the_connection_form_table_lists_the_provider_info_fields() -> None:
    """docs/connections.md's table of form fields on 3.2/3.3 is what get_provider_info() declares, per type."""
    from airflow_provider_carecycle.get_provider_info import get_provider_info

    types = get_provider_info()["connection-types"]
    declared = {ct["connection-type"]: list(ct.get("conn-fields", {})) for ct in types}
    text = (ROOT / "docs" / "connections.md").read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if line.startswith("| 3.2, 3.3 |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert re.findall(r"`(\w+)`", cells[1]) == declared["carecycle"]
    assert re.findall(r"`(\w+)`", cells[2]) == declared["carecloud"]


def test_the_crm_transfer_return_example_shows_real_keys(carecloud_emulator, carecycle_emulator, tmp_path) -> None:
    """The return value on docs/operators/carecloud-to-carecycle.md names only keys the transfer returns, and every
    count of the summary's accounting (``unchanged`` included)."""
    import ast

    from airflow_provider_carecycle.transfers.carecloud import CareCloudCrmToCareCycleLeadsOperator

    text = (ROOT / "docs" / "operators" / "carecloud-to-carecycle.md").read_text(encoding="utf-8")
    section = text.split("## Return value", 1)[1]
    example = ast.literal_eval(next(b for b in code_blocks(section) if b.lang in PYTHON_LANGS).code)
    feed = CareCloudCrmToCareCycleLeadsOperator(
        task_id="crm_to_carecycle",
        changed_since="2026-02-16T12:00:00+00:00",
        changed_before="2026-03-02T12:00:01+00:00",
        rejected_path=str(tmp_path / "rejected.jsonl"),
        max_rejected_ratio=1.0,
    )
    summary = feed.execute(context={})
    assert set(example) <= set(summary)
    assert {"crm_rows", "total", "uploaded", "rejected", "duplicates", "unchanged"} <= set(example)
    assert (example["crm_rows"], example["total"]) == (summary["crm_rows"], summary["total"])


def test_every_docs_page_is_in_the_site_navigation() -> None:
    """mkdocs.yml's nav lists every page of docs/ and no page that is gone (``make docs`` fails on both; this says so
    in ``make test`` already)."""
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = config.split("\nnav:\n", 1)[1]
    listed = set(re.findall(r":\s*(\S+\.md)\s*$", nav, re.MULTILINE))
    pages = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    assert (sorted(pages - listed), sorted(listed - pages)) == ([], [])


def test_the_upload_return_value_table_lists_every_summary_key() -> None:
    """docs/operators/upload-leads.md's return-value table names exactly the keys of ``UploadSummary.as_dict()``."""
    from airflow_provider_carecycle.sync.summary import UploadSummary

    text = (ROOT / "docs" / "operators" / "upload-leads.md").read_text(encoding="utf-8")
    section = text.split("## Return value", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    documented = {key for cell in rows for key in re.findall(r"`(\w+)`", cell)}
    assert documented == set(UploadSummary().as_dict())
