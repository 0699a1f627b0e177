"""``test_connection()`` of both hooks answers ``(False, reason)`` for a connection id nobody defined, as
docs/connections.md and docs/connections-carecloud.md promise (Airflow's UI, REST and CLI tests show that reason)."""

from __future__ import annotations

import pytest

from airflow_provider_carecycle.carecloud.hook import CareCloudCrmHook
from airflow_provider_carecycle.hooks.carecycle import CareCycleHook


@pytest.mark.parametrize("hook_class", [CareCycleHook, CareCloudCrmHook])
def test_an_undefined_connection_id_is_a_failed_test_not_an_exception(hook_class, monkeypatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_NO_SUCH_CONNECTION", raising=False)
    ok, message = hook_class("no_such_connection").test_connection()
    assert ok is False
    assert "no_such_connection" in message and "defined" in message
