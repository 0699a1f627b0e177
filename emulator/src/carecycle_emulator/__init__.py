"""A faithful local emulator of the careCycle v2 API (standard library only).

>>> from airflow_provider_carecycle.emulator import CareCycleEmulator
>>> with CareCycleEmulator(api_keys=("cc_test_key",)) as emu:  # doctest: +SKIP
...     requests.get(f"{emu.url}/v2/customers", headers={"x-api-key": "cc_test_key"})

Reusable, API-neutral pieces (threaded JSON server, request log, faults, rate limiter, admin routes) are in
:mod:`airflow_provider_carecycle.emulator.base`.
"""

from __future__ import annotations

from airflow_provider_carecycle.emulator.server import DEFAULT_API_KEY, CareCycleEmulator, batch_fingerprint

__all__ = ["DEFAULT_API_KEY", "CareCycleEmulator", "batch_fingerprint"]
