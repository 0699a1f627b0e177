"""Pytest fixtures for the careCycle emulator.

Enable with ``pytest_plugins = ["airflow_provider_carecycle.emulator.pytest_plugin"]`` in a ``conftest.py``.

* ``carecycle_emulator_server`` (session): one running emulator for the whole session.
* ``carecycle_emulator`` (function): the same server reset to the defaults below, with
  ``AIRFLOW_CONN_CARECYCLE_DEFAULT`` pointing at it (API key :data:`TEST_API_KEY`).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from airflow_provider_carecycle.emulator.server import CareCycleEmulator
from airflow_provider_carecycle.hooks.rate_limit import forget_shared_limiters

TEST_API_KEY = "cc_test_key"
READ_ONLY_API_KEY = "cc_readonly_key"

#: what ``carecycle_emulator`` resets to before each test
DEFAULTS = {
    "customers": 50,
    "campaigns": 3,
    "seed": 0,
}
DEFAULT_SETTINGS = {
    "rate_limit": 6000,
    "rate_window_s": 60.0,
    "latency_ms": 0,
    "fault_rate": 0.0,
    "fault_kinds": ("503", "500", "drop"),
    "dialer_speed": 0.0,
    "api_keys": (TEST_API_KEY, f"{READ_ONLY_API_KEY}:read"),
}


def connection_json(emu: CareCycleEmulator, **extra: object) -> str:
    """An ``AIRFLOW_CONN_*`` JSON value for ``emu`` (client-side limit raised to the emulator's: tests never wait)."""
    return emu.airflow_connection(TEST_API_KEY, **{"requests_per_minute": DEFAULT_SETTINGS["rate_limit"], **extra})


@pytest.fixture(scope="session")
def carecycle_emulator_server() -> Iterator[CareCycleEmulator]:
    """One careCycle emulator for the test session (not reset between tests; use ``carecycle_emulator``)."""
    emu = CareCycleEmulator(**DEFAULT_SETTINGS, **DEFAULTS)
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def carecycle_emulator(
    carecycle_emulator_server: CareCycleEmulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[CareCycleEmulator]:
    """The session emulator, reset to defaults, with the ``carecycle_default`` Airflow connection pointing at it."""
    emu = carecycle_emulator_server
    emu.configure(**DEFAULT_SETTINGS)
    emu.reset(**DEFAULTS)
    forget_shared_limiters(emu.url)  # the emulator's windows are empty again; so are the hooks' limiters
    monkeypatch.setenv(
        "AIRFLOW_CONN_CARECYCLE_DEFAULT",
        connection_json(emu),
    )
    yield emu
    emu.configure(dialer_speed=0.0, fault_rate=0.0, latency_ms=0)
