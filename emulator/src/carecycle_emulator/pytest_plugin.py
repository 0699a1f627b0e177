"""Pytest fixtures for both emulators, loaded through the ``pytest11`` entry point (no ``pytest_plugins`` line).

* ``carecycle_emulator_server`` (session): one running careCycle emulator for the whole session.
* ``carecycle_emulator`` (function): the same server reset to :data:`CARECYCLE_DEFAULTS` and
  :data:`CARECYCLE_DEFAULT_SETTINGS`, with ``AIRFLOW_CONN_CARECYCLE_DEFAULT`` pointing at it (API key
  :data:`TEST_API_KEY`; :data:`READ_ONLY_API_KEY` is read-only).
* ``carecloud_emulator_server`` (session): one running CareCloud CRM emulator for the whole session.
* ``carecloud_emulator`` (function): the same server reset to :data:`CARECLOUD_DEFAULTS` and
  :data:`CARECLOUD_DEFAULT_SETTINGS`, with ``AIRFLOW_CONN_CARECLOUD_CRM_DEFAULT`` pointing at it.

pytest loads this module in every run of an environment that has ``carecycle-emulator`` installed, so it imports
pytest and the standard library only; the emulators are imported when a fixture first starts one. It knows nothing
of the client: resetting an emulator empties its rate windows, not a client's own limiter (see
``docs/testing-with-the-emulator.md``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from carecycle_emulator.carecloud.server import CareCloudEmulator
    from carecycle_emulator.carecycle.server import CareCycleEmulator

TEST_API_KEY = "cc_test_key"
READ_ONLY_API_KEY = "cc_readonly_key"

#: what ``carecycle_emulator`` reseeds to before each test
CARECYCLE_DEFAULTS = {
    "customers": 50,
    "campaigns": 3,
    "seed": 0,
}
#: how ``carecycle_emulator`` behaves at the start of each test
CARECYCLE_DEFAULT_SETTINGS = {
    "rate_limit": 6000,
    "rate_window_s": 60.0,
    "latency_ms": 0,
    "fault_rate": 0.0,
    "fault_kinds": ("503", "500", "drop"),
    "dialer_speed": 0.0,
    "api_keys": (TEST_API_KEY, f"{READ_ONLY_API_KEY}:read"),
}

#: the newest ``last_change`` of the seeded CareCloud customers, so tests can pick data intervals deterministically
CARECLOUD_ANCHOR = datetime(2026, 3, 2, 12, 0, 0)
#: what ``carecloud_emulator`` reseeds to before each test
CARECLOUD_DEFAULTS = {"customers": 50, "seed": 0, "days": 14.0, "anchor": CARECLOUD_ANCHOR}
#: how ``carecloud_emulator`` behaves at the start of each test
CARECLOUD_DEFAULT_SETTINGS = {
    "rate_limit": 6000,
    "rate_window_s": 60.0,
    "latency_ms": 0,
    "fault_rate": 0.0,
    "fault_kinds": ("503", "500", "drop"),
    "token_lifetime_s": 7 * 3600.0,
    "project_timezone": "UTC",
    "honour_sort": True,
}


def carecycle_connection_json(emu: CareCycleEmulator, **extra: object) -> str:
    """An ``AIRFLOW_CONN_*`` JSON value for ``emu`` (client-side limit raised to the emulator's: tests never wait).

    :param emu: a running careCycle emulator.
    :param extra: more connection extras (they win over the defaults).
    """
    limit = CARECYCLE_DEFAULT_SETTINGS["rate_limit"]
    return emu.airflow_connection(TEST_API_KEY, **{"requests_per_minute": limit, **extra})


def carecloud_connection_json(emu: CareCloudEmulator, **extra: object) -> str:
    """An ``AIRFLOW_CONN_*`` JSON value for ``emu`` (client-side limit raised so tests never wait).

    :param emu: a running CareCloud emulator.
    :param extra: more connection extras (they win over the defaults).
    """
    return emu.airflow_connection(**{"requests_per_minute": CARECLOUD_DEFAULT_SETTINGS["rate_limit"], **extra})


@pytest.fixture(scope="session")
def carecycle_emulator_server() -> Iterator[CareCycleEmulator]:
    """One careCycle emulator for the test session (not reset between tests; use ``carecycle_emulator``)."""
    from carecycle_emulator.carecycle.server import CareCycleEmulator

    with CareCycleEmulator(**CARECYCLE_DEFAULT_SETTINGS, **CARECYCLE_DEFAULTS) as emu:
        yield emu


@pytest.fixture
def carecycle_emulator(
    carecycle_emulator_server: CareCycleEmulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[CareCycleEmulator]:
    """The session emulator, reset to defaults, with the ``carecycle_default`` Airflow connection pointing at it."""
    emu = carecycle_emulator_server
    emu.configure(**CARECYCLE_DEFAULT_SETTINGS)
    emu.reset(**CARECYCLE_DEFAULTS)
    monkeypatch.setenv("AIRFLOW_CONN_CARECYCLE_DEFAULT", carecycle_connection_json(emu))
    yield emu
    emu.configure(dialer_speed=0.0, fault_rate=0.0, latency_ms=0)


@pytest.fixture(scope="session")
def carecloud_emulator_server() -> Iterator[CareCloudEmulator]:
    """One CareCloud emulator for the test session (not reset between tests; use ``carecloud_emulator``)."""
    from carecycle_emulator.carecloud.server import CareCloudEmulator

    with CareCloudEmulator(**CARECLOUD_DEFAULT_SETTINGS, **CARECLOUD_DEFAULTS) as emu:
        yield emu


@pytest.fixture
def carecloud_emulator(
    carecloud_emulator_server: CareCloudEmulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[CareCloudEmulator]:
    """The session emulator, reset, with the ``carecloud_crm_default`` Airflow connection pointing at it."""
    emu = carecloud_emulator_server
    emu.configure(**CARECLOUD_DEFAULT_SETTINGS)
    emu.reset(**CARECLOUD_DEFAULTS)
    monkeypatch.setenv("AIRFLOW_CONN_CARECLOUD_CRM_DEFAULT", carecloud_connection_json(emu))
    yield emu
    emu.configure(fault_rate=0.0, latency_ms=0)
