"""Pytest fixtures for the CareCloud CRM emulator.

Enable with ``pytest_plugins = ["airflow_provider_carecycle.emulator.carecloud_pytest_plugin"]`` (or
``-p airflow_provider_carecycle.emulator.carecloud_pytest_plugin``).

* ``carecloud_emulator_server`` (session): one running emulator for the whole session.
* ``carecloud_emulator`` (function): the same server reset to :data:`DEFAULTS` and :data:`DEFAULT_SETTINGS`, with
  ``AIRFLOW_CONN_CARECLOUD_CRM_DEFAULT`` pointing at it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest

from airflow_provider_carecycle.emulator.carecloud import (
    CareCloudEmulator,
)
from airflow_provider_carecycle.hooks.rate_limit import forget_shared_limiters

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
    return emu.airflow_connection(**{"requests_per_minute": DEFAULT_SETTINGS["rate_limit"], **extra})


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
    forget_shared_limiters(emu.base_url)  # the emulator's windows are empty again; so are the hooks' limiters
    monkeypatch.setenv("AIRFLOW_CONN_CARECLOUD_CRM_DEFAULT", connection_json(emu))
    yield emu
    emu.configure(fault_rate=0.0, latency_ms=0)
