"""Test-wide setup: a throwaway AIRFLOW_HOME (set before Airflow is imported) and the emulator fixtures."""

from __future__ import annotations

import os
import tempfile

_home = tempfile.mkdtemp(prefix="carecycle-airflow-home-")
os.environ["AIRFLOW_HOME"] = _home
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_home}/airflow.db"
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", os.path.join(os.path.dirname(__file__), "..", "example_dags"))

pytest_plugins = [
    "airflow_provider_carecycle.emulator.pytest_plugin",
    "airflow_provider_carecycle.emulator.carecloud_pytest_plugin",
    "tests.airflow_db",
]


import json  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture
def carecycle_connection(monkeypatch):
    """Define an Airflow connection through ``AIRFLOW_CONN_*`` (no metadata DB): ``carecycle_connection(host=...)``."""

    def define(
        conn_id: str = "carecycle_default",
        *,
        host: str = "https://api.test",
        password: str = "cc_test_key",
        conn_type: str = "carecycle",
        **fields,
    ):
        conn = {"conn_type": conn_type, "host": host, "password": password, **fields}
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
        return conn_id

    return define


@pytest.fixture
def captured_logs(caplog, capsys):
    """Everything logged or printed so far (Airflow 3 logs through structlog to stdout, Airflow 2 through logging)."""
    import logging

    caplog.set_level(logging.DEBUG)

    def text() -> str:
        out = capsys.readouterr()
        text.seen += out.out + out.err
        return caplog.text + text.seen

    text.seen = ""
    return text
