"""Fixtures of the adversarial suite: hostile servers on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.adversarial.hostile_server import HostileServer


@pytest.fixture
def hostile_server() -> Iterator[Callable[..., HostileServer]]:
    """``hostile_server(upstream=None, script=None)`` starts a :class:`HostileServer`; all stop after the test."""
    started: list[HostileServer] = []

    def start(upstream: str | None = None, script=None) -> HostileServer:
        server = HostileServer(upstream=upstream, script=script).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
