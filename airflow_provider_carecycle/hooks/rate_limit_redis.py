"""The Redis limiter: one sliding window per key in Redis, exact across every host that reaches the server.

Each request runs one atomic Lua script: drop the window's entries older than the window (plus guard), and either
add this request (a sorted-set member scored by its start time) or return the seconds until a slot frees or a pause
ends. Times are the Redis server's (``TIME``), so the hosts' clocks need not agree. A pause (after a 429) is a
second key holding its end time. Keys: ``carecycle:rl:<digest>`` and ``carecycle:rl:<digest>:pause``, where the
digest hashes the base URL and a hash of the API key (never the key); both expire once idle for a window.

The ``redis`` package is an optional extra (``pip install "airflow-provider-carecycle[redis]"``), imported only
when a connection asks for this backend. If the server cannot be reached (or answers an error), the limiter falls
back to the host-wide limiter with adaptive pacing, logs that once (the URL without credentials), and tries Redis
again after a window.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_carecycle.hooks.rate_limit import Limiter, check_rate, key_digest, registered, window_span
from airflow_provider_carecycle.hooks.rate_limit_host import host_limiter

log = logging.getLogger(__name__)

#: KEYS: window, pause. ARGV: limit, span (s), member, now (s; "" = the server's TIME). Returns the wait (s) as text.
ACQUIRE_SCRIPT = """
local now
if ARGV[4] ~= '' then now = tonumber(ARGV[4]) else
  local t = redis.call('TIME'); now = tonumber(t[1]) + tonumber(t[2]) / 1000000 end
local limit, span = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - span)
local wait = tonumber(redis.call('GET', KEYS[2]) or '0') - now
local count = redis.call('ZCARD', KEYS[1])
if count >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], count - limit, count - limit, 'WITHSCORES')
  wait = math.max(wait, tonumber(oldest[2]) + span - now)
end
if wait > 0 then return tostring(wait) end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(span * 1000))
return '0'
"""

#: KEYS: pause. ARGV: seconds, now ("" = TIME). Moves the pause's end later, never earlier.
PAUSE_SCRIPT = """
local now
if ARGV[2] ~= '' then now = tonumber(ARGV[2]) else
  local t = redis.call('TIME'); now = tonumber(t[1]) + tonumber(t[2]) / 1000000 end
local until_ = now + tonumber(ARGV[1])
if until_ > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], tostring(until_), 'PX', math.max(1, math.ceil(tonumber(ARGV[1]) * 1000)))
end
return '0'
"""


def redacted_url(url: str) -> str:
    """``url`` without user name or password (for logs): ``redis://host:port/db``.

    :param url: a Redis URL.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class RedisRateLimiter:
    """At most ``requests_per_window`` request starts in any ``window_s`` seconds for everyone using the Redis server.

    :param client: a ``redis.Redis`` client.
    :param name: the key digest (:func:`~airflow_provider_carecycle.hooks.rate_limit.key_digest`).
    :param requests_per_window: the limit (the most recent hook's setting wins).
    :param window_s: the window length in seconds.
    :param fallback: the limiter used while Redis cannot be reached (the host-wide one, adaptive).
    :param url: the Redis URL, logged without credentials.
    :param clock: a clock passed to the scripts instead of the server's ``TIME`` (for tests); ``None``: server time.
    :param sleep: the sleep function (injectable for tests).
    :param fallback_clock: the clock deciding when to try Redis again after a failure.
    """

    def __init__(
        self,
        client: Any,
        name: str,
        requests_per_window: int,
        window_s: float,
        *,
        fallback: Limiter,
        url: str,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        fallback_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window_s = window_s
        self.fallback = fallback
        self._client = client
        self._keys = [f"carecycle:rl:{name}", f"carecycle:rl:{name}:pause"]
        self._acquire = client.register_script(ACQUIRE_SCRIPT)
        self._pause = client.register_script(PAUSE_SCRIPT)
        self._span = window_span(window_s)
        self._url = redacted_url(url)
        self._clock = clock
        self._sleep = sleep
        self._fallback_clock = fallback_clock
        self._lock = threading.Lock()
        self._down_until = -1.0
        self._logged = False
        self.set_rate(requests_per_window)

    def set_rate(self, requests_per_window: int) -> None:
        """Change the limit."""
        self.limit = check_rate(requests_per_window)
        if hasattr(self.fallback, "set_rate"):
            self.fallback.set_rate(self.limit)

    @property
    def using_fallback(self) -> bool:
        """Whether Redis failed less than a window ago, so the fallback limiter is in use."""
        return self._fallback_clock() < self._down_until

    def _now(self) -> str:
        return "" if self._clock is None else repr(float(self._clock()))

    def _failed(self, error: Exception) -> None:
        with self._lock:
            self._down_until = self._fallback_clock() + self.window_s
            if not self._logged:
                self._logged = True
                log.warning(
                    "Redis rate-limit backend %s is unreachable (%s); falling back to the host-wide limiter with "
                    "adaptive pacing, and trying Redis again every %.0f s.",
                    self._url,
                    type(error).__name__,
                    self.window_s,
                )

    def try_acquire(self) -> float | None:
        """Claim a slot in Redis if one is free now (0.0), else the seconds until one may be; ``None``: no Redis."""
        if self.using_fallback:
            return None
        import redis

        try:
            return float(self._acquire(keys=self._keys, args=[self.limit, self._span, uuid.uuid4().hex, self._now()]))
        except redis.RedisError as error:
            self._failed(error)
            return None

    def acquire(self) -> float:
        """Wait for a free slot and claim it (in Redis, or in the fallback); return the seconds waited."""
        waited = 0.0
        while True:
            delay = self.try_acquire()
            if delay is None:
                return waited + self.fallback.acquire()
            if delay <= 0:
                return waited
            self._sleep(delay)
            waited += delay

    def pause(self, seconds: float) -> None:
        """Hold every client of the key back for ``seconds`` (in Redis, and in the fallback for when Redis fails)."""
        self.fallback.pause(seconds)
        if self.using_fallback:
            return
        import redis

        try:
            self._pause(keys=self._keys[1:], args=[seconds, self._now()])
        except redis.RedisError as error:
            self._failed(error)

    def on_success(self) -> None:
        """Nothing to adapt while Redis keeps the window."""
        if self.using_fallback:
            self.fallback.on_success()

    def on_rate_limited(self, retry_after: float | None) -> None:
        """Adapt the fallback's pace while it is in use (with Redis a 429 means a client outside it: pause only)."""
        if self.using_fallback:
            self.fallback.on_rate_limited(retry_after)


def redis_limiter(
    url: str,
    base_url: str,
    api_key: str,
    requests_per_window: int,
    window_s: float = 60.0,
    *,
    directory: str | None = None,
    conn_id: str = "",
) -> RedisRateLimiter:
    """The process's Redis limiter for ``(base_url, api_key, window_s)`` on the server at ``url``.

    :param url: the connection extra ``rate_limit_backend`` (``redis://``, ``rediss://`` or ``unix://``).
    :param base_url: the API's base URL.
    :param api_key: the key or credential identity (only hashed).
    :param requests_per_window: the key's limit.
    :param window_s: the window in seconds.
    :param directory: the connection extra ``rate_limit_dir``, for the fallback.
    :param conn_id: the Airflow connection, named in error messages.
    :raises ValueError: when the ``redis`` package is not installed or the URL is not one it accepts.
    """
    try:
        import redis
    except ImportError:
        raise ValueError(
            f"Airflow connection {conn_id!r}: extra 'rate_limit_backend' names a Redis server, but the 'redis' "
            "package is not installed: pip install 'airflow-provider-carecycle[redis]'."
        ) from None
    fallback = host_limiter(
        base_url, api_key, requests_per_window, window_s, directory=directory, adaptive=True, conn_id=conn_id
    )
    digest = key_digest(base_url, api_key)

    def make() -> RedisRateLimiter:
        try:
            client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
        except ValueError:
            raise ValueError(
                f"Airflow connection {conn_id!r}: extra 'rate_limit_backend' is not a Redis URL redis-py accepts "
                f"({redacted_url(url)})."
            ) from None
        return RedisRateLimiter(client, digest, requests_per_window, window_s, fallback=fallback, url=url)

    where = f"{hashlib.sha256(url.encode()).hexdigest()}|{fallback.path}"
    key = ("redis", base_url.rstrip("/"), digest, repr(float(window_s)), where)
    limiter = registered(key, make)
    assert isinstance(limiter, RedisRateLimiter)
    limiter.set_rate(requests_per_window)
    return limiter
