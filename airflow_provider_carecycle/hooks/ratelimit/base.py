"""Client-side rate limiting: the interface every limiter offers, the in-process limiter, and the choice of backend.

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

Three backends share the :class:`Limiter` interface (see ``docs/rate-limits-and-errors.md``):

* :class:`RateLimiter` (this module): one process only (connection extra ``rate_limit_backend = "process"``), for
  tests and single-task deployments; each task process then spends the whole key.
* :class:`~airflow_provider_carecycle.hooks.ratelimit.host.HostRateLimiter`: every process of one host, through
  an ``fcntl``-locked file, with adaptive pacing (AIMD, :mod:`~airflow_provider_carecycle.hooks.ratelimit.adaptive`)
  for the hosts it cannot see. The default.
* :class:`~airflow_provider_carecycle.hooks.ratelimit.redis.RedisRateLimiter`: every host, exactly, through one
  atomic Lua script per request in Redis (connection extra ``rate_limit_backend = "redis://..."``).

:func:`limiter_for` picks one from a connection's extras and returns the same instance to every hook of the process
that uses the same base URL, key and window.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import threading
import time
from collections.abc import Callable, Sequence
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


class RateLimiter:
    """Blocks callers so at most ``requests_per_window`` requests count in any ``window_s`` seconds (one process).

    :param requests_per_window: how many requests the API accepts per window.
    :param window_s: the window length in seconds (60 for careCycle).
    :param max_wait_s: the longest pause or claim hold (at least one window).
    :param clock: a monotonic clock (injectable for tests).
    :param sleep: the sleep function (injectable for tests).
    """

    def __init__(
        self,
        requests_per_window: int,
        window_s: float = 60.0,
        *,
        max_wait_s: float = DEFAULT_MAX_WAIT_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep
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

    def claim(self, hold_s: float) -> Slot:
        """Wait for a free slot and claim it (see :meth:`Limiter.claim`)."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                self._prune(now)
                delay = window_delay(self._sent, self.limit, self._span, now, self._paused_until, len(self._in_flight))
                if delay <= 0:
                    token = next(self._tokens)
                    if hold_s > 0:
                        self._in_flight[token] = now + min(hold_s, self._horizon)
                    else:
                        bisect.insort(self._sent, now)
                    return Slot(waited, token)
                delay = bounded_wait(delay, self._horizon)
            self._sleep(delay)
            waited += delay

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

    def on_success(self) -> None:
        """No feedback needed: this limiter does not adapt."""

    def on_rate_limited(self, retry_after: float | None) -> None:
        """No feedback needed: :meth:`pause` already holds callers back."""


_registry: dict[tuple[str, ...], Limiter] = {}
_registry_lock = threading.Lock()


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


def limiter_for(
    base_url: str,
    api_key: str,
    requests_per_window: int,
    window_s: float = 60.0,
    *,
    backend: str | None = None,
    directory: str | None = None,
    max_wait_s: float = DEFAULT_MAX_WAIT_S,
    conn_id: str = "",
) -> Limiter:
    """The limiter every hook of this process uses for ``(base_url, api_key)``, picked from the connection extras.

    :param base_url: the API's base URL.
    :param api_key: the key (or credential identity) the limit belongs to; only its hash is kept.
    :param requests_per_window: this process's share of the key's limit (``requests_per_minute``).
    :param window_s: the window in seconds.
    :param backend: extra ``rate_limit_backend``: ``None``/``""``/``"host"`` for the host-wide limiter with
        adaptive pacing, a ``redis://``/``rediss://``/``unix://`` URL for the Redis backend, or ``"process"`` for
        the in-process limiter (one process only: for tests and single-task deployments).
    :param directory: extra ``rate_limit_dir``: where the host-wide state lives (default: a per-user folder under
        the system temp dir).
    :param max_wait_s: extra ``max_retry_after``: the longest a pause or an in-flight claim read from shared state
        may hold a caller back (at least one window).
    :param conn_id: the Airflow connection, named in error messages.
    :raises ValueError: when ``backend`` or ``directory`` is not usable (the message names the connection and extra).
    """
    from airflow_provider_carecycle.hooks.ratelimit.host import host_limiter

    if backend is not None and not isinstance(backend, str):
        raise ValueError(f"Airflow connection {conn_id!r}: extra 'rate_limit_backend' must be a string.")
    backend = (backend or "host").strip()
    which = (base_url, api_key, requests_per_window, window_s)
    if backend == "host":
        return host_limiter(*which, directory=directory, max_wait_s=max_wait_s, conn_id=conn_id)
    if backend == "process":
        return shared_limiter(*which, max_wait_s=max_wait_s)
    if backend.split("://", 1)[0].lower() in ("redis", "rediss", "unix"):
        from airflow_provider_carecycle.hooks.ratelimit.redis import redis_limiter

        return redis_limiter(backend, *which, directory=directory, max_wait_s=max_wait_s, conn_id=conn_id)
    raise ValueError(
        f"Airflow connection {conn_id!r}: extra 'rate_limit_backend' must be 'host' or a redis://, rediss:// or "
        "unix:// URL of a Redis server, or 'process' (one process only: for tests and single-task deployments)."
    )


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


def forget_shared_limiters(base_url: str) -> None:
    """Drop the limiters of ``base_url`` (every key, every backend), e.g. once a test emulator reset its windows.

    The host-wide state files of ``base_url`` are deleted too (in the folders this process used and the default).

    :param base_url: the API's base URL.
    """
    from airflow_provider_carecycle.hooks.ratelimit.host import forget_state_files

    url = base_url.rstrip("/")
    with _registry_lock:
        for key in [key for key in _registry if key[1] == url]:
            del _registry[key]
    forget_state_files(url)
