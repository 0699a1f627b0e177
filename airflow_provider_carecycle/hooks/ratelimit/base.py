"""What every limiter of the package shares: the :class:`Limiter` interface, the :class:`Slot` a claim returns, the
sliding-window arithmetic, and the table of the process's limiter instances.

The careCycle API allows ``N`` requests per sliding minute **per API key** and answers 429 beyond that. A limiter
keeps the time of each of the last ``N`` requests and lets a new one go only when fewer than ``N`` lie within a
window (plus a small guard for network jitter), so steady-state work runs at the limit and never provokes a 429.
A 429 that arrives anyway pauses every caller sharing the limiter until the API's ``retryAfter`` has passed.

**A request's time is when its answer arrived**, the last moment careCycle can have counted it, not when its slot
was claimed: a caller claims a slot (:meth:`Limiter.claim`), sends, and settles it (:meth:`Limiter.settle`) when
the answer (or the error) comes back. Until then the claim counts as a request made *now*, so it never frees while
the request is in flight; a worker descheduled between its claim and its request cannot push the key over its
limit. A claim never settled (the worker was killed) counts until its ``hold`` ran out, then for one more window.

Nothing read from state shared with other processes may hold a caller back without bound: a pause or an in-flight
claim ending further ahead than the limiter's ``max_wait_s`` (the connection's ``max_retry_after``, at least one
window), or not finite, is clamped to it, and a request time in the future (the clock was set back) to now.

Every limiter also has the async half of the interface (:class:`AsyncLimiter`: ``aclaim``, ``asettle``,
``apause``, ``aon_rate_limited``) on the **same state**, so a trigger's polls and a worker's synchronous requests
count against one budget. Its waits are ``asyncio.sleep``s on the event loop, never a thread held: a triggerer runs
hundreds of triggers in one loop, next to other providers' triggers that need its few threads.

Every backend module imports this one and nothing imports it back (see the package's docstring for the layout).
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

#: Extra seconds added to the window, so requests that left ``window`` apart do not arrive closer than that at the
#: server when the network or a busy host delays one of them: 1 % of the window, within 0.1-0.5 s.
WINDOW_GUARD_S = 0.5
WINDOW_GUARD_MIN_S = 0.1
WINDOW_GUARD_RATIO = 0.01
#: Default ``max_wait_s``: the ``max_retry_after`` extra's default.
DEFAULT_MAX_WAIT_S = 300.0


@dataclass(frozen=True)
class Slot:
    """A claimed request slot: the seconds waited for it, and what identifies the claim in the limiter's state.

    :param waited: seconds the claim waited for a free slot.
    :param token: the claim's identity (only the limiter that issued it reads it).
    """

    waited: float
    token: Any


@runtime_checkable
class Limiter(Protocol):
    """What :class:`~airflow_provider_carecycle.hooks._http.HttpSender` needs from a rate limiter.

    ``limit`` is the configured requests per window (the ceiling), ``window_s`` the window in seconds.
    """

    limit: int
    window_s: float

    def claim(self, hold_s: float) -> Slot:
        """Wait for a free slot and claim it for a request about to be sent.

        The claim counts as a request made now until :meth:`settle`; never settled, it counts until ``hold_s`` (at
        most the limiter's ``max_wait_s``) from now, then for one window more. ``hold_s <= 0``: the request is
        recorded at once (its time is the claim's).
        """
        ...

    def settle(self, slot: Slot) -> None:
        """The claim's answer arrived (or the attempt ended without one): record its request now."""
        ...

    def pause(self, seconds: float) -> None:
        """Hold every caller sharing the limiter back for ``seconds`` (the API said to wait)."""
        ...

    def on_success(self) -> None:
        """An answer below 400 arrived (feedback for adaptive pacing)."""
        ...

    def on_rate_limited(self, retry_after: float | None) -> None:
        """A 429 arrived; ``retry_after`` is the API's wait in seconds, if it gave one."""
        ...


@runtime_checkable
class AsyncLimiter(Limiter, Protocol):
    """A :class:`Limiter` that can also be waited for on an event loop
    (:class:`~airflow_provider_carecycle.hooks._async_http.AsyncHttpSender` needs it).

    The async methods act on the same state as the synchronous ones (one budget), wait with the limiter's async
    sleep (``asyncio.sleep`` by default) and never block the loop on a lock another thread or process holds.
    """

    async def aclaim(self, hold_s: float) -> Slot:
        """:meth:`Limiter.claim`, waiting on the event loop."""
        ...

    async def asettle(self, slot: Slot) -> None:
        """:meth:`Limiter.settle` from the event loop."""
        ...

    async def apause(self, seconds: float) -> None:
        """:meth:`Limiter.pause` from the event loop."""
        ...

    async def aon_rate_limited(self, retry_after: float | None) -> None:
        """:meth:`Limiter.on_rate_limited` from the event loop."""
        ...


#: the async sleep every limiter uses unless a test injects one
AsyncSleep = Callable[[float], Awaitable[None]]


async def DEFAULT_ASYNC_SLEEP(seconds: float) -> None:
    """``asyncio.sleep``, looked up when called."""
    await asyncio.sleep(seconds)


async def claim_when_free(
    try_claim: Callable[[], Awaitable[tuple[float, Any]]], limit_s: Callable[[], float], sleep: AsyncSleep
) -> Slot:
    """Claim a slot, sleeping on the event loop until one is free: the async claim loop of every backend.

    :param try_claim: claims a slot if one is free now: ``(0.0, token)``, else ``(seconds until one may be, None)``.
    :param limit_s: the longest single sleep (the limiter's horizon).
    :param sleep: the async sleep.
    """
    waited = 0.0
    while True:
        delay, token = await try_claim()
        if token is not None:
            return Slot(waited, token)
        delay = bounded_wait(delay, limit_s())
        await sleep(delay)
        waited += delay


def window_span(window_s: float) -> float:
    """The window plus the jitter guard: how long a request keeps its slot.

    :param window_s: the API's window in seconds.
    """
    return window_s + min(WINDOW_GUARD_S, max(WINDOW_GUARD_MIN_S, WINDOW_GUARD_RATIO * window_s))


def window_delay(
    sent: Sequence[float], limit: int, span: float, now: float, paused_until: float, in_flight: int = 0
) -> float:
    """Seconds until one more request may start (``<= 0``: now), given the request times still inside the window.

    :param sent: times of the requests in the window, oldest first, none after ``now`` (pruned to ``now - span``).
    :param limit: requests allowed per window.
    :param span: the window plus guard (:func:`window_span`).
    :param now: the current time on the clock ``sent`` was taken with.
    :param paused_until: no request before this time.
    :param in_flight: claims whose answers have not arrived: each is a request made no earlier than ``now``.
    """
    delay = paused_until - now
    count = len(sent) + in_flight
    if count >= limit:
        # the slot frees when all but limit - 1 of the requests in the window have left it
        oldest = count - limit
        delay = max(delay, (sent[oldest] if oldest < len(sent) else now) + span - now)
    return delay


def horizon(max_wait_s: float, span: float) -> float:
    """How far ahead a pause or a claim read from shared state may end: ``max_wait_s``, at least one ``span``.

    :param max_wait_s: the limiter's ``max_wait_s`` (the connection's ``max_retry_after``).
    :param span: the window plus guard.
    """
    return max(float(max_wait_s), span) if max_wait_s == max_wait_s else span


def bounded_wait(delay: float, limit_s: float) -> float:
    """``delay`` as a sleep: at most ``limit_s``, and ``limit_s`` for a value that is not a number (fail closed).

    :param delay: the seconds a limiter computed.
    :param limit_s: the longest sleep (:func:`horizon`).
    """
    return delay if delay <= limit_s else limit_s


def check_rate(requests_per_window: int) -> int:
    """``requests_per_window`` as an int, or a ``ValueError`` when it is below 1."""
    if requests_per_window < 1:
        raise ValueError(f"requests_per_minute must be at least 1, got {requests_per_window}")
    return int(requests_per_window)


def key_digest(base_url: str, api_key: str) -> str:
    """A stable name for ``(base_url, api_key)`` that does not reveal the key: hex SHA-256 of URL and key hash.

    :param base_url: the API's base URL (a trailing ``/`` is ignored).
    :param api_key: the API key (or another credential identity); only its hash enters the digest.
    """
    key_hash = hashlib.sha256(api_key.encode()).hexdigest()
    return hashlib.sha256(f"{base_url.rstrip('/')}\n{key_hash}".encode()).hexdigest()


#: the process's limiters, one per ``(backend, base URL, key digest, window, location)``
_registry: dict[tuple[str, ...], Limiter] = {}
_registry_lock = threading.Lock()


def registered(key: tuple[str, ...], make: Callable[[], Limiter]) -> Limiter:
    """The process-wide limiter registered under ``key``, made by ``make`` the first time.

    :param key: ``(backend, base URL, key digest, window, location)``; never a credential.
    :param make: builds the limiter.
    """
    with _registry_lock:
        limiter = _registry.get(key)
        if limiter is None:
            limiter = _registry[key] = make()
        return limiter


def forget_registered(base_url: str) -> None:
    """Drop the process's limiters of ``base_url`` (every key, every backend) from the table.

    :param base_url: the API's base URL.
    """
    url = base_url.rstrip("/")
    with _registry_lock:
        for key in [key for key in _registry if key[1] == url]:
            del _registry[key]
