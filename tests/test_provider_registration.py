"""The installed package as Airflow's own CLI sees it: provider registered, connection test against the emulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from airflow_provider_carecycle import __version__
from airflow_provider_carecycle._compat import AIRFLOW_V_3_0_PLUS
from carecycle_emulator import carecycle_connection_json as connection_json


def airflow_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``airflow <args>`` in a subprocess with this test session's AIRFLOW_HOME and the extra ``env``."""
    if not AIRFLOW_V_3_0_PLUS:  # Airflow 2 accepts only this executor with SQLite (else its CLI logs a traceback)
        env.setdefault("AIRFLOW__CORE__EXECUTOR", "SequentialExecutor")
    return subprocess.run(
        [sys.executable, "-m", "airflow", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.mark.slow
def test_airflow_providers_list_shows_the_provider():
    result = airflow_cli("providers", "list", "--output", "json")
    assert result.returncode == 0, result.stderr[-2000:]
    providers = {p["package_name"]: p for p in json.loads(result.stdout[result.stdout.index("[{") :])}
    assert providers["airflow-provider-carecycle"]["version"] == __version__


@pytest.mark.slow
def test_airflow_connections_test_reaches_the_emulator(carecycle_emulator):
    result = airflow_cli(
        "connections",
        "test",
        "carecycle_cli",
        AIRFLOW__CORE__TEST_CONNECTION="Enabled",
        AIRFLOW_CONN_CARECYCLE_CLI=connection_json(carecycle_emulator),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Connection success!" in result.stdout
    assert [r for r in carecycle_emulator.request_log() if r["status"] == 200]


@pytest.mark.slow
def test_airflow_connections_test_reports_a_wrong_key_in_one_line(carecycle_emulator):
    wrong = json.dumps({"conn_type": "carecycle", "host": carecycle_emulator.url, "password": "cc_wrong_key"})
    result = airflow_cli(
        "connections",
        "test",
        "carecycle_cli",
        AIRFLOW__CORE__TEST_CONNECTION="Enabled",
        AIRFLOW_CONN_CARECYCLE_CLI=wrong,
    )
    output = result.stdout + result.stderr
    assert "Connection failed" in output
    assert "Check the API key" in output
    assert "cc_wrong_key" not in output
    assert "Traceback" not in output
    assert len([r for r in carecycle_emulator.request_log() if r["status"] == 401]) == 1, "no retry storm"
