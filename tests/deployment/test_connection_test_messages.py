"""What the UI's and the REST API's "Test" show: messages about the connection on the user's screen.

Airflow tests a connection from a form (UI) or a request body (``POST /api/v2/connections/test``) under a
temporary random id (``get_random_string()``, e.g. ``'DBF7J9An'``), exported as an ``AIRFLOW_CONN_*`` variable for
the length of the test. These tests do the same: ``Connection.test_connection()`` of Airflow's own model, under
such an id.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest


@pytest.fixture
def api_key(carecycle_emulator):
    """The key the ``carecycle_emulator`` fixture's ``carecycle_default`` connection uses."""
    return json.loads(os.environ["AIRFLOW_CONN_CARECYCLE_DEFAULT"])["password"]


@pytest.fixture
def test_like_airflow(monkeypatch) -> Iterator:
    """``test(conn_type, host=..., ...) -> (ok, message, temporary id)``, the way Airflow's test endpoint runs it."""
    from airflow.models import Connection
    from airflow.utils.strings import get_random_string

    def test(conn_type: str, **fields):
        conn_id = get_random_string()
        conn = Connection(conn_id=conn_id, conn_type=conn_type, **fields)
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", conn.get_uri())
        ok, message = conn.test_connection()
        return ok, message, conn_id

    yield test


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"password": ""}, "This connection has no API key in its password field"),
        ({"password": "not_a_key"}, "This connection has an API key that does not start with 'cc_'"),
        ({"extra": json.dumps({"timeout": "soon"})}, "This connection: extra 'timeout'"),
        ({"extra": json.dumps({"max_retries": -1})}, "This connection: timeout must be"),
    ],
)
def test_carecycle_test_messages_name_this_connection_not_the_temporary_id(
    carecycle_emulator, api_key, test_like_airflow, fields, expected
):
    fields = {"password": api_key, **fields}
    ok, message, temporary_id = test_like_airflow("carecycle", host=carecycle_emulator.url, **fields)
    assert not ok
    assert message.startswith(expected), message
    assert temporary_id not in message


def test_carecycle_test_succeeds_and_names_the_host(carecycle_emulator, api_key, test_like_airflow):
    ok, message, temporary_id = test_like_airflow("carecycle", host=carecycle_emulator.url, password=api_key)
    assert ok and carecycle_emulator.url in message and temporary_id not in message


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"login": ""}, "This connection lacks login"),
        ({"extra": {"project_timezone": "Mars/Olympus"}}, "This connection: project_timezone"),
        ({"extra": {"timeout": "soon"}}, "This connection: extra 'timeout'"),
    ],
)
def test_carecloud_test_messages_name_this_connection_not_the_temporary_id(
    carecloud_emulator, test_like_airflow, fields, expected
):
    settings = json.loads(carecloud_emulator.airflow_connection())
    extra = {**settings.pop("extra"), **fields.pop("extra", {})}
    settings.update(fields)
    conn_type = settings.pop("conn_type")
    ok, message, temporary_id = test_like_airflow(conn_type, extra=json.dumps(extra), **settings)
    assert not ok
    assert message.startswith(expected), message
    assert temporary_id not in message
