"""A client-side rate limiter shared by every hook in the process that talks to the same API with the same key.

The careCycle API allows ``N`` requests per sliding minute and answers 429 beyond that. The limiter keeps the time
of each of the last ``N`` requests and lets a new one go only when the oldest is more than a window (plus a small
guard for network jitter) in the past, so steady-state work runs at the limit and never provokes a 429. A 429 that
arrives anyway (another process using the same key) pauses every thread until the API's ``retryAfter`` has passed.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import deque
from collections.abc import Callable

#: Extra seconds added to the window, so requests that left ``window`` apart do not arrive closer than that at the
#: server when the network or a busy host delays one of them: 1 % of the window, within 0.1-0.5 s.
WINDOW_GUARD_S = 0.5
WINDOW_GUARD_MIN_S = 0.1
WINDOW_GUARD_RATIO = 0.01


class RateLimiter:
    """Blocks callers so at most ``requests_per_window`` requests start in any ``window_s`` seconds.

    :param requests_per_window: how many requests the API accepts per window.
    :param window_s: the window length in seconds (60 for careCycle).
    :param clock: a monotonic clock (injectable for tests).
    :param sleep: the sleep function (injectable for tests).
    """

    def __init__(
        self,
        requests_per_window: int,
        window_s: float = 60.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep
        self._sent: deque[float] = deque()
        self._paused_until = 0.0
        self.window_s = window_s
        self._span = window_s + min(WINDOW_GUARD_S, max(WINDOW_GUARD_MIN_S, WINDOW_GUARD_RATIO * window_s))
        self.set_rate(requests_per_window)

    def set_rate(self, requests_per_window: int) -> None:
        """Change the limit (the most recent hook's setting wins)."""
        if requests_per_window < 1:
            raise ValueError(f"requests_per_minute must be at least 1, got {requests_per_window}")
        with self._lock:
            self.limit = int(requests_per_window)

    def acquire(self) -> float:
        """Wait for a free slot and claim it; return the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                while self._sent and self._sent[0] + self._span <= now:
                    self._sent.popleft()
                delay = self._paused_until - now
                if len(self._sent) >= self.limit:
                    delay = max(delay, self._sent[0] + self._span - now)
                if delay <= 0:
                    self._sent.append(now)
                    return waited
            self._sleep(delay)
            waited += delay

    def pause(self, seconds: float) -> None:
        """Hold every caller back for ``seconds`` (the API said to wait)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)


_registry: dict[tuple[str, str, float], RateLimiter] = {}
_registry_lock = threading.Lock()


def shared_limiter(base_url: str, api_key: str, requests_per_window: int, window_s: float = 60.0) -> RateLimiter:
    """The process-wide limiter for ``(base_url, api_key)``, set to ``requests_per_window``.

    The key is only hashed, never stored.
    """
    key = (base_url.rstrip("/"), hashlib.sha256(api_key.encode()).hexdigest(), window_s)
    with _registry_lock:
        limiter = _registry.get(key)
        if limiter is None:
            limiter = _registry[key] = RateLimiter(requests_per_window, window_s)
    limiter.set_rate(requests_per_window)
    return limiter


def forget_shared_limiters(base_url: str) -> None:
    """Drop the process-wide limiters of ``base_url`` (every key), e.g. once a test emulator reset its windows.

    :param base_url: the API's base URL.
    """
    with _registry_lock:
        for key in [key for key in _registry if key[0] == base_url.rstrip("/")]:
            del _registry[key]
