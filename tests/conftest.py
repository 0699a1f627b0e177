"""Test-wide setup: a throwaway AIRFLOW_HOME (set before Airflow is imported), the metadata DB plugin, and the
emulator fixtures wrapped so the hooks' process-wide rate limiters start empty too.

``carecycle_emulator`` and ``carecloud_emulator`` come from the ``carecycle-emulator`` distribution's ``pytest11``
entry point; the emulator knows nothing of the client, so forgetting the client's limiters is done here.
"""

from __future__ import annotations

import os
import tempfile

_home = tempfile.mkdtemp(prefix="carecycle-airflow-home-")
os.environ["AIRFLOW_HOME"] = _home
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_home}/airflow.db"
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", os.path.join(os.path.dirname(__file__), "..", "example_dags"))

pytest_plugins = ["tests.airflow_db"]


import json  # noqa: E402

import pytest  # noqa: E402

from airflow_provider_carecycle.hooks.ratelimit import forget_shared_limiters  # noqa: E402


@pytest.fixture
def carecycle_emulator(carecycle_emulator):
    """The plugin's ``carecycle_emulator`` (reset, its rate windows empty), with the hooks' limiters for it forgotten.

    Without this, a hook's limiter would still count the requests earlier tests sent to the same URL and key, and a
    test that lowers the limit would wait for them.
    """
    forget_shared_limiters(carecycle_emulator.url)
    return carecycle_emulator


@pytest.fixture
def carecloud_emulator(carecloud_emulator):
    """The plugin's ``carecloud_emulator``, with the hooks' limiters for it forgotten (see ``carecycle_emulator``)."""
    forget_shared_limiters(carecloud_emulator.base_url)
    return carecloud_emulator


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
