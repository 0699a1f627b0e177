"""Pytest fixtures for the CareCloud CRM emulator.

Enable with ``pytest_plugins = ["airflow_provider_carecycle.emulator.carecloud_pytest_plugin"]`` (or
``-p airflow_provider_carecycle.emulator.carecloud_pytest_plugin``).

* ``carecloud_emulator_server`` (session): one running emulator for the whole session.
* ``carecloud_emulator`` (function): the same server reset to :data:`DEFAULTS` and :data:`DEFAULT_SETTINGS`, with
  ``AIRFLOW_CONN_CARECLOUD_CRM_DEFAULT`` pointing at it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime

import pytest

from airflow_provider_carecycle.emulator.carecloud import (
    DEFAULT_APP_ID,
    DEFAULT_LOGIN,
    DEFAULT_PASSWORD,
    CareCloudEmulator,
)

#: the newest ``last_change`` of the seeded customers, so tests can pick data intervals deterministically
ANCHOR = datetime(2026, 3, 2, 12, 0, 0)
#: what ``carecloud_emulator`` resets to before each test
DEFAULTS = {"customers": 50, "seed": 0, "days": 14.0, "anchor": ANCHOR}
DEFAULT_SETTINGS = {
    "rate_limit": 6000,
    "rate_window_s": 60.0,
    "latency_ms": 0,
    "fault_rate": 0.0,
    "fault_kinds": ("503", "500", "drop"),
    "token_lifetime_s": 7 * 3600.0,
    "project_timezone": "UTC",
}


def connection_json(emu: CareCloudEmulator, **extra: object) -> str:
    """An ``AIRFLOW_CONN_*`` JSON value for ``emu`` (client-side limit raised so tests never wait)."""
    login, password = DEFAULT_LOGIN, DEFAULT_PASSWORD
    extras = {"user_external_application_id": DEFAULT_APP_ID, "requests_per_minute": 6000, **extra}
    return json.dumps(
        {"conn_type": "carecloud_crm", "host": emu.url, "login": login, "password": password, "extra": extras}
    )


@pytest.fixture(scope="session")
def carecloud_emulator_server() -> Iterator[CareCloudEmulator]:
    """One CareCloud emulator for the test session (not reset between tests; use ``carecloud_emulator``)."""
    emu = CareCloudEmulator(**DEFAULT_SETTINGS, **DEFAULTS)
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def carecloud_emulator(
    carecloud_emulator_server: CareCloudEmulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[CareCloudEmulator]:
    """The session emulator, reset, with the ``carecloud_crm_default`` Airflow connection pointing at it."""
    emu = carecloud_emulator_server
    emu.configure(**DEFAULT_SETTINGS)
    emu.reset(**DEFAULTS)
    monkeypatch.setenv("AIRFLOW_CONN_CARECLOUD_CRM_DEFAULT", connection_json(emu))
    yield emu
    emu.configure(fault_rate=0.0, latency_ms=0)
