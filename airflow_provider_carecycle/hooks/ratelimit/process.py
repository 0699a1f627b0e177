"""The in-process limiter (connection extra ``rate_limit_backend = "process"``): one process's sliding window.

For tests and single-task deployments: every task process then spends the whole key (the host-wide limiter,
:mod:`~airflow_provider_carecycle.hooks.ratelimit.host`, is the default).
"""

from __future__ import annotations

import bisect
import itertools
import threading
import time
from collections.abc import Callable

from airflow_provider_carecycle.hooks.ratelimit.base import (
    DEFAULT_ASYNC_SLEEP,
    DEFAULT_MAX_WAIT_S,
    AsyncSleep,
    Slot,
    bounded_wait,
    check_rate,
    claim_when_free,
    horizon,
    key_digest,
    registered,
    window_delay,
    window_span,
)


class RateLimiter:
    """Blocks callers so at most ``requests_per_window`` requests count in any ``window_s`` seconds (one process).

    :param requests_per_window: how many requests the API accepts per window.
    :param window_s: the window length in seconds (60 for careCycle).
    :param max_wait_s: the longest pause or claim hold (at least one window).
    :param clock: a monotonic clock (injectable for tests).
    :param sleep: the sleep function (injectable for tests).
    :param async_sleep: the event loop's sleep for the async methods (injectable for tests).
    """

    def __init__(
        self,
        requests_per_window: int,
        window_s: float = 60.0,
        *,
        max_wait_s: float = DEFAULT_MAX_WAIT_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        async_sleep: AsyncSleep = DEFAULT_ASYNC_SLEEP,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._sent: list[float] = []  # request times (answers' arrivals), oldest first
        self._in_flight: dict[int, float] = {}  # claim -> when it counts as made if never settled
        self._tokens = itertools.count(1)
        self._paused_until = 0.0
        self.window_s = window_s
        self._span = window_span(window_s)
        self.set_rate(requests_per_window, max_wait_s)

    def set_rate(self, requests_per_window: int, max_wait_s: float | None = None) -> None:
        """Change the limit and, if given, ``max_wait_s`` (the most recent hook's setting wins)."""
        limit = check_rate(requests_per_window)
        with self._lock:
            self.limit = limit
            if max_wait_s is not None:
                self._horizon = horizon(max_wait_s, self._span)

    def _prune(self, now: float) -> None:
        """Claims whose hold ran out become requests made then; requests older than the window leave it."""
        for token, deadline in list(self._in_flight.items()):
            if deadline <= now:
                del self._in_flight[token]
                bisect.insort(self._sent, deadline)
        del self._sent[: bisect.bisect_right(self._sent, now - self._span)]

    def _try_claim(self, hold_s: float) -> tuple[float, int | None]:
        """Claim a slot if one is free now: ``(0.0, token)``; else ``(seconds until one may be, None)``."""
        with self._lock:  # held for arithmetic only: never across a wait
            now = self._clock()
            self._prune(now)
            delay = window_delay(self._sent, self.limit, self._span, now, self._paused_until, len(self._in_flight))
            if delay > 0:
                return bounded_wait(delay, self._horizon), None
            token = next(self._tokens)
            if hold_s > 0:
                self._in_flight[token] = now + min(hold_s, self._horizon)
            else:
                bisect.insort(self._sent, now)
            return 0.0, token

    def claim(self, hold_s: float) -> Slot:
        """Wait for a free slot and claim it (see :meth:`Limiter.claim`)."""
        waited = 0.0
        while True:
            delay, token = self._try_claim(hold_s)
            if token is not None:
                return Slot(waited, token)
            self._sleep(delay)
            waited += delay

    async def aclaim(self, hold_s: float) -> Slot:
        """:meth:`claim` on the event loop: the waits are the async sleep, no thread is held."""

        async def attempt() -> tuple[float, int | None]:
            return self._try_claim(hold_s)

        return await claim_when_free(attempt, lambda: self._horizon, self._async_sleep)

    def settle(self, slot: Slot) -> None:
        """Record the claim's request now (its answer arrived)."""
        with self._lock:
            self._in_flight.pop(slot.token, None)
            bisect.insort(self._sent, self._clock())

    def acquire(self) -> float:
        """Claim a slot recorded at once (a request counted when it starts); return the seconds waited."""
        return self.claim(0.0).waited

    def pause(self, seconds: float) -> None:
        """Hold every caller back for ``seconds`` (at most ``max_wait_s``: the API said to wait)."""
        with self._lock:
            pause = bounded_wait(seconds, self._horizon)
            self._paused_until = max(self._paused_until, self._clock() + pause)

    async def asettle(self, slot: Slot) -> None:
        """:meth:`settle` (in memory: nothing to wait for)."""
        self.settle(slot)

    async def apause(self, seconds: float) -> None:
        """:meth:`pause` (in memory: nothing to wait for)."""
        self.pause(seconds)

    async def aon_rate_limited(self, retry_after: float | None) -> None:
        """Nothing to record (see :meth:`on_rate_limited`)."""

    def on_success(self) -> None:
        """No feedback needed: this limiter does not adapt."""

    def on_rate_limited(self, retry_after: float | None) -> None:
        """No feedback needed: :meth:`pause` already holds callers back."""


def shared_limiter(
    base_url: str,
    api_key: str,
    requests_per_window: int,
    window_s: float = 60.0,
    *,
    max_wait_s: float = DEFAULT_MAX_WAIT_S,
) -> RateLimiter:
    """The process-wide in-process limiter for ``(base_url, api_key)``, set to ``requests_per_window``.

    The key is only hashed, never stored.
    """
    key = ("process", base_url.rstrip("/"), key_digest(base_url, api_key), repr(float(window_s)), "")
    limiter = registered(key, lambda: RateLimiter(requests_per_window, window_s, max_wait_s=max_wait_s))
    assert isinstance(limiter, RateLimiter)
    limiter.set_rate(requests_per_window, max_wait_s)
    return limiter
