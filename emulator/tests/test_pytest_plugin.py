"""The fixtures load through the ``pytest11`` entry point: a project with no conftest and no ``pytest_plugins`` line
has them."""

from __future__ import annotations

import subprocess
import sys
import textwrap

USER_TEST = """
import json
import os

import requests


def test_carecycle(carecycle_emulator):
    conn = json.loads(os.environ["AIRFLOW_CONN_CARECYCLE_DEFAULT"])
    assert conn["host"] == carecycle_emulator.url and conn["password"] == "cc_test_key"
    answer = requests.get(f"{conn['host']}/v2/customers", headers={"x-api-key": conn["password"]}, timeout=5)
    assert answer.status_code == 200 and answer.json()["items"]


def test_carecloud(carecloud_emulator):
    conn = json.loads(os.environ["AIRFLOW_CONN_CARECLOUD_CRM_DEFAULT"])
    assert conn["host"] == carecloud_emulator.url and len(carecloud_emulator.customers()) == 50
"""


def test_a_project_without_conftest_gets_both_fixtures(tmp_path):
    (tmp_path / "test_user.py").write_text(textwrap.dedent(USER_TEST))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "2 passed" in result.stdout


def test_a_project_that_disables_the_plugin_has_no_fixtures(tmp_path):
    """The counter-check: with the entry point switched off, the same tests cannot find the fixtures."""
    (tmp_path / "test_user.py").write_text(textwrap.dedent(USER_TEST))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:carecycle_emulator",
         "--rootdir", str(tmp_path), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1
    assert "fixture 'carecycle_emulator' not found" in result.stdout
