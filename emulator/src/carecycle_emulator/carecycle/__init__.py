"""The careCycle v2 API emulator: ``server`` (routes and the control API), ``store`` (SQLite), ``validation``,
``seed``, ``dialer``, ``vocabulary`` (the API's value sets) and ``cli`` (``carecycle-emulator``)."""

from __future__ import annotations
