"""Local emulators of the careCycle v2 API and the CareCloud CRM REST API, their CLIs and pytest fixtures.

>>> from carecycle_emulator import CareCycleEmulator
>>> with CareCycleEmulator(api_keys=("cc_test_key",)) as emu:  # doctest: +SKIP
...     requests.get(f"{emu.url}/v2/customers", headers={"x-api-key": "cc_test_key"})

Standard library only, and independent of the client they test: nothing here imports ``airflow`` or
``airflow_provider_carecycle``. Importing this package is cheap: the names below are imported on first use.

* :mod:`carecycle_emulator.base`: the API-neutral pieces (threaded JSON server, request log, faults, rate limiter,
  admin routes) and :mod:`carecycle_emulator.cli`: the flags and serving loop both command lines share.
* :mod:`carecycle_emulator.carecycle`: the careCycle API (``server``, ``store``, ``validation``, ``seed``,
  ``dialer``, ``vocabulary``, ``cli``: ``carecycle-emulator``).
* :mod:`carecycle_emulator.carecloud`: the CareCloud CRM API (``server``, ``seed``, ``cli``:
  ``carecloud-crm-emulator``).
* :mod:`carecycle_emulator.pytest_plugin`: the fixtures, registered as a ``pytest11`` entry point.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

#: public name -> the module that defines it
_EXPORTS = {
    "EmulatorBase": "carecycle_emulator.base",
    "CareCycleEmulator": "carecycle_emulator.carecycle.server",
    "DEFAULT_API_KEY": "carecycle_emulator.carecycle.server",
    "batch_fingerprint": "carecycle_emulator.carecycle.server",
    "CareCloudEmulator": "carecycle_emulator.carecloud.server",
    "TEST_API_KEY": "carecycle_emulator.pytest_plugin",
    "READ_ONLY_API_KEY": "carecycle_emulator.pytest_plugin",
    "CARECLOUD_ANCHOR": "carecycle_emulator.pytest_plugin",
    "carecycle_connection_json": "carecycle_emulator.pytest_plugin",
    "carecloud_connection_json": "carecycle_emulator.pytest_plugin",
}

__all__ = [
    "CARECLOUD_ANCHOR",
    "DEFAULT_API_KEY",
    "READ_ONLY_API_KEY",
    "TEST_API_KEY",
    "CareCloudEmulator",
    "CareCycleEmulator",
    "EmulatorBase",
    "__version__",
    "batch_fingerprint",
    "carecloud_connection_json",
    "carecycle_connection_json",
]

if TYPE_CHECKING:
    from carecycle_emulator.base import EmulatorBase
    from carecycle_emulator.carecloud.server import CareCloudEmulator
    from carecycle_emulator.carecycle.server import DEFAULT_API_KEY, CareCycleEmulator, batch_fingerprint
    from carecycle_emulator.pytest_plugin import (
        CARECLOUD_ANCHOR,
        READ_ONLY_API_KEY,
        TEST_API_KEY,
        carecloud_connection_json,
        carecycle_connection_json,
    )


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (PEP 562).

    :param name: the attribute asked for.
    """
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'carecycle_emulator' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
