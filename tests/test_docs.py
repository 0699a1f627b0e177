"""Keep README.md and docs/**/*.md true: code compiles, imports resolve, links land, snippets match their DAG.

For every Markdown page:

* every fenced ``python`` block compiles (after dedenting, so a snippet cut from inside a ``with DAG(...)`` works);
* every ``import`` / ``from ... import`` in those blocks resolves with the Airflow this test runs on. Imports inside
  ``try: ... except ImportError: ...`` are alternatives: one of the branches must resolve, so a page can show the
  Airflow 3 import with its Airflow 2 fallback;
* every relative link ``[text](path)``, ``[text](path#anchor)`` and ``[text](#anchor)`` points to an existing file
  and, for Markdown targets, an existing heading (GitHub-style slug);
* every code fence right after a ``<!-- snippet: FILE -->`` line matches FILE: each non-blank line of the block,
  stripped, is a line of FILE (path from the repository root).

The checker functions return lists of problems (empty when the text is fine), so the negative tests at the bottom
can prove each one catches what it should on synthetic text.
"""

from __future__ import annotations

import ast
import importlib
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from airflow_provider_carecycle.operators.leads import CareCycleUploadLeadsOperator
from airflow_provider_carecycle.transfers.carecloud import CareCloudCrmToCareCycleLeadsOperator

ROOT = Path(__file__).resolve().parent.parent
PYTHON_LANGS = frozenset({"python", "py", "python3"})

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)")
_SNIPPET = re.compile(r"^\s*<!--\s*snippet:\s*(?P<path>\S+)\s*-->\s*$")
_LINK = re.compile(r"!?\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
_HEADING = re.compile(r"^ {0,3}(?P<hashes>#{1,6})\s+(?P<text>.+?)\s*#*\s*$")
_INLINE_CODE = re.compile(r"`[^`]*`")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def doc_files() -> list[Path]:
    """README.md, CHANGELOG.md and every Markdown file under docs/."""
    return [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").rglob("*.md"))]


@dataclass
class CodeBlock:
    """A fenced code block: its language, first line number (1-based, of the code) and text."""

    lang: str
    line: int
    code: str
    snippet_of: str | None = None


def code_blocks(text: str) -> list[CodeBlock]:
    """The fenced code blocks of a Markdown text, each with the snippet source named on the line before it."""
    blocks: list[CodeBlock] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence = match["fence"]
        previous = lines[i - 1] if i > 0 else ""
        snippet = _SNIPPET.match(previous)
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not _closes(lines[j], fence):
            body.append(lines[j])
            j += 1
        blocks.append(CodeBlock(match["lang"].lower(), i + 2, "\n".join(body), snippet["path"] if snippet else None))
        i = j + 1
    return blocks


def _closes(line: str, fence: str) -> bool:
    """Whether ``line`` closes a block opened with ``fence`` (the same character, at least as many, nothing else)."""
    stripped = line.strip()
    return len(stripped) >= len(fence) and set(stripped) == {fence[0]}


def outside_fences(text: str) -> list[tuple[int, str]]:
    """``(line number, line)`` for the lines outside code fences."""
    out: list[tuple[int, str]] = []
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), 1):
        if fence is not None:
            if _closes(line, fence):
                fence = None
            continue
        match = _FENCE.match(line)
        if match:
            fence = match["fence"]
            continue
        out.append((number, line))
    return out


def prose_lines(text: str) -> list[tuple[int, str]]:
    """``(line number, line)`` for the lines outside code fences, with inline code removed."""
    return [(number, _INLINE_CODE.sub("", line)) for number, line in outside_fences(text)]


# -- python blocks ---------------------------------------------------------------------------------------------------


def compile_problems(name: str, text: str) -> list[str]:
    """Python blocks that do not compile."""
    problems = []
    for block in code_blocks(text):
        if block.lang not in PYTHON_LANGS:
            continue
        try:
            compile(textwrap.dedent(block.code), f"{name}:{block.line}", "exec")
        except SyntaxError as err:
            problems.append(f"{name}:{block.line + (err.lineno or 1) - 1}: python block does not compile: {err.msg}")
    return problems


def _import_targets(node: ast.Import | ast.ImportFrom) -> list[tuple[str, str | None]]:
    """``(module, attribute or None)`` pairs an import statement needs."""
    if isinstance(node, ast.Import):
        return [(alias.name, None) for alias in node.names]
    if node.level:
        return [("." * node.level + (node.module or ""), None)]  # relative: reported as unresolvable
    return [(node.module or "", alias.name) for alias in node.names if alias.name != "*"] or [(node.module, None)]


def resolve_import(module: str, attribute: str | None) -> str | None:
    """``None`` when ``from module import attribute`` (or ``import module``) works, else why not."""
    if module.startswith("."):
        return f"relative import {module!r} cannot be checked in a doc"
    try:
        imported = importlib.import_module(module)
    except Exception as err:  # ImportError, or a module failing at import: both break the reader's copy
        return f"{module}: {type(err).__name__}: {err}"
    if attribute is None or hasattr(imported, attribute):
        return None
    try:
        importlib.import_module(f"{module}.{attribute}")
    except ImportError:
        return f"cannot import name {attribute!r} from {module}"
    return None


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(n, ast.Name) and n.id in {"ImportError", "ModuleNotFoundError"} for n in names)


def _statement_problems(statements: list[ast.stmt]) -> list[str]:
    """Unresolvable imports among ``statements`` (recursively; try/except ImportError branches are alternatives)."""
    problems: list[str] = []
    for node in statements:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for module, attribute in _import_targets(node):
                why = resolve_import(module, attribute)
                if why:
                    problems.append(f"line {node.lineno}: {why}")
        elif isinstance(node, ast.Try) and any(_catches_import_error(h) for h in node.handlers):
            branches = [node.body] + [h.body for h in node.handlers if _catches_import_error(h)]
            outcomes = [_statement_problems(branch) for branch in branches]
            if all(outcomes):
                problems.append(f"line {node.lineno}: no branch of try/except ImportError imports: {outcomes}")
            problems += _statement_problems(node.orelse + node.finalbody)
        else:
            for child in ("body", "orelse", "finalbody", "handlers"):
                nested = getattr(node, child, None)
                if isinstance(nested, list):
                    problems += _statement_problems([n for n in nested if isinstance(n, ast.stmt)])
                    for handler in (n for n in nested if isinstance(n, ast.ExceptHandler)):
                        problems += _statement_problems(handler.body)
    return problems


def import_problems(name: str, text: str) -> list[str]:
    """Imports in python blocks that do not resolve (blocks that do not compile are left to compile_problems)."""
    problems = []
    for block in code_blocks(text):
        if block.lang not in PYTHON_LANGS:
            continue
        try:
            tree = ast.parse(textwrap.dedent(block.code))
        except SyntaxError:
            continue
        problems += [f"{name}:{block.line} (block) {p}" for p in _statement_problems(tree.body)]
    return problems


# -- links -----------------------------------------------------------------------------------------------------------


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: markup dropped, lower case, punctuation removed, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links and images -> their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def heading_anchors(text: str) -> set[str]:
    """Every heading anchor of a Markdown text, with GitHub's ``-1``, ``-2`` suffixes for repeated headings."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in outside_fences(text):
        match = _HEADING.match(line)
        if not match:
            continue
        slug = github_slug(match["text"])
        count = seen.get(slug, 0)
        anchors.add(slug if count == 0 else f"{slug}-{count}")
        seen[slug] = count + 1
    return anchors


def link_problems(path: Path, text: str) -> list[str]:
    """Relative links of a page (at ``path``) whose file or heading anchor does not exist."""
    problems = []
    for number, line in prose_lines(text):
        for match in _LINK.finditer(line):
            target = match["target"]
            if _SCHEME.match(target) or target.startswith("//"):
                continue
            file_part, _, anchor = target.partition("#")
            where = f"{path.name}:{number}: link {target!r}"
            if not file_part:
                if anchor not in heading_anchors(text):
                    problems.append(f"{where}: no heading with anchor #{anchor} on this page")
                continue
            dest = (path.parent / file_part).resolve()
            if not dest.exists():
                problems.append(f"{where}: no such file {dest}")
                continue
            if anchor and dest.suffix == ".md" and dest.is_file():
                if anchor not in heading_anchors(dest.read_text(encoding="utf-8")):
                    problems.append(f"{where}: no heading with anchor #{anchor} in {dest.name}")
    return problems


# -- snippets --------------------------------------------------------------------------------------------------------


def snippet_problems(name: str, text: str, root: Path = ROOT) -> list[str]:
    """Snippet blocks whose lines are not in their source file, and snippet markers with no code fence after them."""
    problems = []
    blocks = code_blocks(text)
    fence_lines = {b.line - 1 for b in blocks}  # 1-based line of each opening fence
    for number, line in enumerate(text.splitlines(), 1):
        match = _SNIPPET.match(line)
        if match and number + 1 not in fence_lines:
            problems.append(f"{name}:{number}: snippet marker for {match['path']} is not right before a code fence")
    for block in blocks:
        if not block.snippet_of:
            continue
        source = root / block.snippet_of
        if not source.is_file():
            problems.append(f"{name}:{block.line}: snippet source {block.snippet_of} does not exist")
            continue
        source_lines = {line.strip() for line in source.read_text(encoding="utf-8").splitlines()}
        for offset, line in enumerate(block.code.splitlines()):
            if line.strip() and line.strip() not in source_lines:
                problems.append(
                    f"{name}:{block.line + offset}: snippet line not in {block.snippet_of}: {line.strip()!r}"
                )
    return problems


# -- the checks on the real docs -------------------------------------------------------------------------------------

DOCS = doc_files()
IDS = [str(p.relative_to(ROOT)) for p in DOCS]


def test_docs_are_found() -> None:
    assert (ROOT / "README.md") in DOCS
    assert len(DOCS) >= 10, IDS


@pytest.mark.parametrize("path", DOCS, ids=IDS)
def test_python_blocks_compile(path: Path) -> None:
    assert compile_problems(path.name, path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("path", DOCS, ids=IDS)
def test_python_imports_resolve(path: Path) -> None:
    assert import_problems(path.name, path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("path", DOCS, ids=IDS)
def test_relative_links_resolve(path: Path) -> None:
    assert link_problems(path, path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("path", DOCS, ids=IDS)
def test_snippets_match_their_source(path: Path) -> None:
    assert snippet_problems(path.name, path.read_text(encoding="utf-8")) == []


def test_every_doc_page_is_linked_from_the_docs_index() -> None:
    index = ROOT / "docs" / "index.md"
    linked = {
        (index.parent / m["target"].partition("#")[0]).resolve()
        for _, line in prose_lines(index.read_text(encoding="utf-8"))
        for m in _LINK.finditer(line)
        if not _SCHEME.match(m["target"]) and m["target"].partition("#")[0]
    }
    missing = [str(p.relative_to(ROOT)) for p in DOCS if p.parent != ROOT and p != index and p not in linked]
    assert missing == []


# -- the checkers catch what they should (synthetic text) ------------------------------------------------------------


def test_code_blocks_finds_language_line_and_snippet_source() -> None:
    text = "intro\n<!-- snippet: dags/x.py -->\n```python\na = 1\n```\n\n```bash\nls\n```\n"
    blocks = code_blocks(text)
    assert [(b.lang, b.line, b.code, b.snippet_of) for b in blocks] == [
        ("python", 4, "a = 1", "dags/x.py"),
        ("bash", 8, "ls", None),
    ]


def test_compile_problems_reports_a_broken_block_and_accepts_an_indented_fragment() -> None:
    assert compile_problems("x.md", "```python\n    a = f(1)\n    b = 2\n```\n") == []
    problems = compile_problems("x.md", "text\n```python\nok = 1\nx = {'a': 1, ...}\n```\n")
    assert len(problems) == 1 and problems[0].startswith("x.md:4:")


def test_import_problems_reports_missing_modules_and_names() -> None:
    text = (
        "```python\nimport json\nfrom airflow_provider_carecycle.hooks.carecycle import CareCycleHook\n"
        "from airflow_provider_carecycle.hooks.carecycle import NoSuchHook\nimport no_such_module_xyz\n```\n"
    )
    problems = import_problems("x.md", text)
    assert len(problems) == 2
    assert "NoSuchHook" in problems[0] and "no_such_module_xyz" in problems[1]


def test_import_problems_treats_try_except_import_error_as_alternatives() -> None:
    good = "```python\ntry:\n    import no_such_module_xyz\nexcept ImportError:\n    import json\n```\n"
    bad = "```python\ntry:\n    import no_such_module_xyz\nexcept ImportError:\n    import no_such_module_abc\n```\n"
    assert import_problems("x.md", good) == []
    assert len(import_problems("x.md", bad)) == 1


def test_github_slug_matches_github() -> None:
    assert github_slug("Uploading leads: `CareCycleUploadLeadsOperator`") == (
        "uploading-leads-carecycleuploadleadsoperator"
    )
    assert github_slug("429 / retryAfter, 5xx and backoff") == "429--retryafter-5xx-and-backoff"
    assert github_slug("The [rate limit](x.md) (60/min)") == "the-rate-limit-60min"
    assert github_slug("Extra `requests_per_minute`") == "extra-requests_per_minute"


def test_heading_anchors_number_repeated_headings_and_skip_code() -> None:
    text = "# Title\n## Example\n```bash\n# not a heading\n```\n## Example\n"
    assert heading_anchors(text) == {"title", "example", "example-1"}


def test_link_problems_reports_a_missing_file_and_a_missing_anchor(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other page\n## Some section\n")
    page = tmp_path / "page.md"
    text = (
        "# Page\n[ok](other.md) [ok](other.md#some-section) [ok](#page) [web](https://example.com/x.md)\n"
        "`[not a link](nowhere.md)`\n"
        "[gone](missing.md)\n[bad anchor](other.md#no-such-section)\n[bad local](#nope)\n"
        "```md\n[in code](nowhere.md)\n```\n"
    )
    problems = link_problems(page, text)
    assert len(problems) == 3, problems
    assert "missing.md" in problems[0] and "#no-such-section" in problems[1] and "#nope" in problems[2]


def test_snippet_problems_reports_changed_lines_missing_files_and_stray_markers(tmp_path: Path) -> None:
    (tmp_path / "dag.py").write_text("with DAG('x') as dag:\n    upload = Op(\n        task_id='upload',\n    )\n")
    ok = "<!-- snippet: dag.py -->\n```python\nupload = Op(\n    task_id='upload',\n)\n```\n"
    assert snippet_problems("x.md", ok, root=tmp_path) == []
    changed = ok.replace("'upload'", "'upload_leads'")
    problems = snippet_problems("x.md", changed, root=tmp_path)
    assert len(problems) == 1 and "task_id='upload_leads'," in problems[0]
    missing = ok.replace("dag.py", "gone.py")
    assert "does not exist" in snippet_problems("x.md", missing, root=tmp_path)[0]
    stray = "<!-- snippet: dag.py -->\n\nSome prose.\n"
    assert "not right before a code fence" in snippet_problems("x.md", stray, root=tmp_path)[0]


# -- the sample tests shown in docs/testing-with-the-emulator.md (snippets of this file: they run here) ------------


def test_my_upload_against_the_emulator(carecycle_emulator, tmp_path):
    carecycle_emulator.configure(fault_rate=0.2, latency_ms=5)  # 20 % of answers: 500, 503 or a dropped connection
    upload = CareCycleUploadLeadsOperator(
        task_id="upload_leads",
        records=[
            {"externalId": "crm-1", "phoneNumber": "(212) 555-0142", "postalCode": "10001"},
            {"externalId": "crm-2", "phoneNumber": "+44 20 7946 0958", "postalCode": "10001"},
        ],
        rejected_path=str(tmp_path / "rejected.jsonl"),
        max_rejected_ratio=0.5,
        hook_params={"retry_backoff": 0.01},  # retry fast in tests
    )
    summary = upload.execute(context={})
    assert summary["uploaded"] == 1 and summary["rejected"] == 1
    assert "crm-1" in carecycle_emulator.get_customers_by_external_id()
    assert "crm-2" not in carecycle_emulator.get_customers_by_external_id()


def test_my_crm_feed_against_both_emulators(carecloud_emulator, carecycle_emulator, tmp_path):
    feed = CareCloudCrmToCareCycleLeadsOperator(
        task_id="crm_to_carecycle",
        changed_since="2026-02-16T12:00:00+00:00",
        changed_before="2026-03-02T12:00:01+00:00",  # the fixture's seed: 14 days up to 2026-03-02 12:00
        rejected_path=str(tmp_path / "rejected.jsonl"),
        max_rejected_ratio=1.0,
    )
    summary = feed.execute(context={})
    assert summary["crm_rows"] == 50
    assert summary["uploaded"] + summary["rejected"] + summary["duplicates"] == summary["crm_rows"]
    assert summary["rejected"] > 0  # foreign phones and missing zips are rejected, with reasons


def test_readme_quickstart_builds_its_dag_without_touching_the_network() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quickstart = next(b for b in code_blocks(readme) if b.lang in PYTHON_LANGS and "with DAG(" in b.code)
    namespace: dict = {}
    exec(compile(quickstart.code, "README.md quickstart", "exec"), namespace)  # DAG parse time
    dag = namespace["dag"]
    assert dag.dag_id == "carecycle_quickstart"
    task = dag.get_task("upload_leads")
    assert task.source_path == "s3://crm-exports/leads/{{ ds }}.jsonl"  # stored, not rendered
    assert "hook" not in vars(task)  # the hook and its connection lookup are built only when the task runs


def connection_exports(text: str) -> dict[str, list[str]]:
    """``AIRFLOW_CONN_X -> [value, ...]`` of the ``export AIRFLOW_CONN_X='...'`` lines in a page's bash blocks."""
    found: dict[str, list[str]] = {}
    for block in code_blocks(text):
        if block.lang in {"bash", "sh", "shell"}:
            for match in re.finditer(r"export (AIRFLOW_CONN_\w+)='(.*?)'", block.code, re.S):
                found.setdefault(match[1], []).append(match[2])
    return found


def test_connection_examples_give_the_documented_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_carecycle.hooks.carecycle import CareCycleHook

    examples = connection_exports((ROOT / "docs" / "connections.md").read_text(encoding="utf-8"))
    values = examples.pop("AIRFLOW_CONN_CARECYCLE_DEFAULT")
    assert len(values) == 2 and not examples  # the URI form and the JSON form
    for value in values:
        monkeypatch.setenv("AIRFLOW_CONN_CARECYCLE_DEFAULT", value)
        hook = CareCycleHook()
        settings = hook._settings  # what the hook read from the connection
        assert hook.base_url == "https://api.carecycle.ai"
        assert hook.get_conn().headers["x-api-key"] == "cc_live_xxxxxxxxxxxx"
        assert (settings["timeout"], settings["max_retries"], settings["requests_per_minute"]) == (30, 5, 60)


def test_carecloud_connection_examples_give_the_documented_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The URI form (``carecloud://``) and the JSON form of docs/connections-carecloud.md, read without a warning."""
    import warnings

    from airflow_provider_carecycle.carecloud.hook import CareCloudCrmHook

    examples = connection_exports((ROOT / "docs" / "connections-carecloud.md").read_text(encoding="utf-8"))
    values = examples.pop("AIRFLOW_CONN_CARECLOUD_CRM_DEFAULT")
    assert len(values) == 3 and not examples  # the URI form, the JSON form and the emulator's
    for value in values[:2]:
        monkeypatch.setenv("AIRFLOW_CONN_CARECLOUD_CRM_DEFAULT", value)
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            hook = CareCloudCrmHook()
            settings = hook._settings
        assert hook.get_connection(hook.conn_id).conn_type == "carecloud"
        assert hook.base_url == "https://myproject.crmcarecloud.com/webservice/rest-api/enterprise-interface/v1.0"
        assert (settings["login"], settings["password"], str(settings["tz"])) == (
            "airflow-api",
            "s3cret",
            "Europe/Prague",
        )
        assert (settings["user_external_application_id"], settings["requests_per_minute"]) == ("abc123", 120)


_TEST_FILE = re.compile(r"^\s*<!--\s*test file:\s*(?P<name>[\w.]+)\s*-->\s*$")


def marked_test_files(text: str) -> dict[str, str]:
    """The code blocks of a page marked ``<!-- test file: NAME -->`` on the line before: NAME -> code."""
    lines = text.splitlines()
    files = {}
    for block in code_blocks(text):
        marker = _TEST_FILE.match(lines[block.line - 3]) if block.line >= 3 else None
        if marker:
            files[marker["name"]] = block.code + "\n"
    return files


def test_the_dag_import_test_of_the_docs_passes_on_the_example_dags(tmp_path: Path) -> None:
    """docs/testing-with-the-emulator.md's DAG import test, its files as the page shows them, in a pytest run of its
    own (its conftest sets AIRFLOW_HOME before Airflow is imported), with example_dags/ as its dags/ folder."""
    import os
    import subprocess
    import sys

    files = marked_test_files((ROOT / "docs" / "testing-with-the-emulator.md").read_text(encoding="utf-8"))
    assert set(files) == {"conftest.py", "test_dags.py"}
    for name, code in files.items():
        (tmp_path / name).write_text(code)
    (tmp_path / "dags").symlink_to(ROOT / "example_dags")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["TMPDIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_dags.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "1 passed" in done.stdout
