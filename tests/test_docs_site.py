"""``make docs`` fails on what it should: a broken link, a missing anchor, a page missing from the navigation, a link
to a repository file that does not exist (that the docs as they are build is the step before, in ``make docs``).

Run by ``make docs`` (which sets ``CARECYCLE_MKDOCS`` to its MkDocs; skipped otherwise), each case on a copy of the
docs with one fault added.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MKDOCS = os.environ.get("CARECYCLE_MKDOCS")

pytestmark = pytest.mark.skipif(not MKDOCS, reason="make docs runs it, with the MkDocs of .venv-release")


def build(tmp_path: Path, fault: str) -> subprocess.CompletedProcess:
    for name in ("docs", "dev", "example_dags"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("mkdocs.yml", "README.md", "CHANGELOG.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    if fault == "page outside the navigation":
        (tmp_path / "docs" / "new-page.md").write_text("# A new page\n")
    else:
        with (tmp_path / "docs" / "metrics.md").open("a") as page:
            page.write(f"\n{fault}\n")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(
        [str(ROOT / MKDOCS), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("[gone](no-such-page.md)", "'no-such-page.md', but the target is not found"),
        ("[bad anchor](connections.md#no-such-anchor)", "does not contain an anchor '#no-such-anchor'"),
        ("page outside the navigation", 'not included in the "nav" configuration'),
        ("[gone](../example_dags/no_such_dag.py)", "which is not in the repository"),
    ],
)
def test_the_strict_build_fails_on(tmp_path: Path, fault: str, message: str) -> None:
    done = build(tmp_path, fault)
    assert done.returncode != 0
    assert message in done.stderr, done.stderr[-3000:]
