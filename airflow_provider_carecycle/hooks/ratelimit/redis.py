"""The Redis limiter: one sliding window per key in Redis, exact across every host that reaches the server.

Each claim runs one atomic Lua script: drop the window's entries older than the window (plus guard), and either
add a claim (a sorted-set member ``c:<id>`` scored by the time it counts as made if never settled) or return the
seconds until a slot frees or a pause ends; a claim in flight counts as a request made now. When the answer arrives a
second script replaces the claim by the request (``s:<id>``, scored by the arrival), so a request holds its slot for
a window from the moment careCycle can have counted it. Times are the Redis server's (``TIME``), so the hosts'
clocks need not agree. A pause (after a 429) is a second key holding its end time. A pause, claim or request time
further ahead than the limiter allows (the server's clock was set back, someone else wrote the key) or not a
number is clamped by the script. Keys: ``carecycle:rl:<digest>`` and ``carecycle:rl:<digest>:pause``, where the
digest hashes the base URL and a hash of the API key (never the key); both expire once idle.

The ``redis`` package is an optional extra (``pip install "airflow-provider-carecycle[redis]"``), imported only
when a connection asks for this backend. The URL's password is given to Airflow's secrets masker, and a URL redis-py
would misread (a password with an unencoded ``/``, ``#``, ``?``) is refused without showing any part of it. If the
server cannot be reached (or answers an error), the limiter falls back to the host-wide limiter with adaptive
pacing, logs that once (the URL without credentials), and tries Redis again after a window.

The async methods (a trigger's polls) run the same scripts on the same keys through ``redis.asyncio``, one client
per event loop, so the triggerer's requests and the workers' share the key's window.

Why one module of this size: the Lua scripts, the URL rules that keep the password out of sight, and the limiter's
synchronous and async halves (with their fallback) run the same scripts on the same keys.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from airflow_provider_carecycle.hooks._http import url_authority
from airflow_provider_carecycle.hooks.ratelimit.base import (
    DEFAULT_ASYNC_SLEEP,
    DEFAULT_MAX_WAIT_S,
    AsyncLimiter,
    AsyncSleep,
    Limiter,
    Slot,
    bounded_wait,
    check_rate,
    horizon,
    key_digest,
    registered,
    window_span,
)
from airflow_provider_carecycle.hooks.ratelimit.host import host_limiter

log = logging.getLogger(__name__)

#: The time every script works with: ARGV[n] when given (tests), else the server's TIME.
_NOW = """
local function now_from(given)
  if given ~= '' then return tonumber(given) end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function keep_for(key, ms)
  if redis.call('PTTL', key) < ms then redis.call('PEXPIRE', key, ms) end
end
"""

#: KEYS: window, pause. ARGV: limit, span (s), claim id, now (s; "" = the server's TIME), hold (s), horizon (s).
#: Returns the wait (s) as text, "0" when the claim was added.
CLAIM_SCRIPT = (
    _NOW
    + """
local now = now_from(ARGV[4])
local limit, span, hold, horizon = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[5]), tonumber(ARGV[6])
local latest = now + horizon
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - span)
local wait = 0
local raw = redis.call('GET', KEYS[2])
if raw then
  local pause_end = tonumber(raw)
  if pause_end == nil or pause_end ~= pause_end or pause_end > latest then
    pause_end = latest
    redis.call('SET', KEYS[2], string.format('%.17g', latest), 'PX', math.ceil(horizon * 1000))
  end
  wait = pause_end - now
end
local times = {}
local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #entries, 2 do
  local member, at = entries[i], tonumber(entries[i + 1])
  if string.sub(member, 1, 2) == 'c:' then
    if at > latest then at = latest; redis.call('ZADD', KEYS[1], 'XX', at, member) end
    if at > now then at = now end
  elseif at > now then
    at = now; redis.call('ZADD', KEYS[1], 'XX', at, member)
  end
  times[#times + 1] = at
end
if #times >= limit then
  table.sort(times)
  wait = math.max(wait, times[#times - limit + 1] + span - now)
end
if wait > 0 then return string.format('%.17g', wait) end
redis.call('ZADD', KEYS[1], now + hold, 'c:' .. ARGV[3])
keep_for(KEYS[1], math.ceil((hold + span) * 1000))
return '0'
"""
)

#: KEYS: window. ARGV: claim id, now ("" = TIME), span (s). The claim's answer arrived: its request counts from now.
SETTLE_SCRIPT = (
    _NOW
    + """
local now = now_from(ARGV[2])
redis.call('ZREM', KEYS[1], 'c:' .. ARGV[1])
redis.call('ZADD', KEYS[1], now, 's:' .. ARGV[1])
keep_for(KEYS[1], math.ceil(tonumber(ARGV[3]) * 1000))
return '0'
"""
)

#: KEYS: pause. ARGV: seconds, now ("" = TIME). Moves the pause's end later, never earlier (a value that is not a
#: number is replaced).
PAUSE_SCRIPT = (
    _NOW
    + """
local now = now_from(ARGV[2])
local until_ = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current == nil or current ~= current or until_ > current then
  redis.call('SET', KEYS[1], string.format('%.17g', until_), 'PX', math.max(1, math.ceil(tonumber(ARGV[1]) * 1000)))
end
return '0'
"""
)


def redacted_url(url: str) -> str:
    """``url`` without user name or password (for logs): ``redis://host:port/db``; ``"the Redis server"`` when it
    cannot be read.

    :param url: a Redis URL (checked by :func:`check_redis_url`).
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "the Redis server"
    return f"{parts.scheme}://{url_authority(url)}{parts.path}"


def url_passwords(url: str) -> list[str]:
    """Every text of ``url`` that may be a password, as written and percent-decoded: the user info's part after
    ``:`` (up to the last ``@``, which is where a password with an unencoded ``/``, ``#`` or ``?`` still ends) and
    ``password=`` in the query. For the secrets masker; nothing here parses strictly.

    :param url: a ``rate_limit_backend`` value.
    """
    rest = url.split("://", 1)[-1]
    found = []
    if "@" in rest:
        userinfo = rest.rsplit("@", 1)[0]
        if ":" in userinfo:
            found.append(userinfo.split(":", 1)[1])
    for query in (rest.partition("?")[2], rest.rsplit("@", 1)[-1].partition("?")[2]):
        found += [value for name, value in parse_qsl(query.partition("#")[0]) if name == "password"]
    return list(dict.fromkeys(secret for raw in found if raw for secret in (raw, unquote(raw))))


def check_redis_url(url: str, conn_id: str) -> None:
    """Refuse a Redis URL that does not read as its writer meant: an ``@`` after the host part (a user name or
    password holding an unencoded ``/``, ``#`` or ``?`` ends the host part early), a port that is not a number, or
    no host (``redis://``, ``rediss://``). The message never shows the URL or any part of it.

    :param url: the connection extra ``rate_limit_backend``.
    :param conn_id: the Airflow connection, named in the message.
    :raises ValueError: when ``url`` cannot be read.
    """
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises for a port that is not a number
    except ValueError:
        readable = False
    else:
        readable = "@" not in parts.path + parts.query + parts.fragment and (
            parts.scheme == "unix" or bool(parts.hostname)
        )
    if not readable:
        raise ValueError(
            f"Airflow connection {conn_id!r}: extra 'rate_limit_backend' is not a Redis URL that can be read (it is "
            "not shown: it may hold a password): percent-encode the user name's and password's special characters "
            "('/' as %2F, '#' as %23, '?' as %3F, '@' as %40, ':' in a user name as %3A, '%' as %25), e.g. "
            "redis://:p%2Fss@redis.example:6379/1."
        )


class RedisRateLimiter:
    """At most ``requests_per_window`` requests in any ``window_s`` seconds for everyone using the Redis server.

    :param client: a ``redis.Redis`` client.
    :param name: the key digest (:func:`~airflow_provider_carecycle.hooks.ratelimit.base.key_digest`).
    :param requests_per_window: the limit (the most recent hook's setting wins).
    :param window_s: the window length in seconds.
    :param fallback: the limiter used while Redis cannot be reached (the host-wide one, adaptive).
    :param url: the Redis URL, logged without credentials.
    :param max_wait_s: the longest a pause or a claim in flight read from Redis may hold a caller back (at least
        one window); further ahead is clamped.
    :param clock: a clock passed to the scripts instead of the server's ``TIME`` (for tests); ``None``: server time.
    :param sleep: the sleep function (injectable for tests).
    :param fallback_clock: the clock deciding when to try Redis again after a failure.
    :param async_client: makes a ``redis.asyncio.Redis`` client for the async methods (one per event loop).
    :param async_sleep: the event loop's sleep for the async methods (injectable for tests).
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
        max_wait_s: float = DEFAULT_MAX_WAIT_S,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        fallback_clock: Callable[[], float] = time.monotonic,
        async_client: Callable[[], Any] | None = None,
        async_sleep: AsyncSleep = DEFAULT_ASYNC_SLEEP,
    ) -> None:
        self.window_s = window_s
        self._async_client = async_client
        self._async_sleep = async_sleep
        self._async_scripts: weakref.WeakKeyDictionary[Any, tuple[Any, Any, Any]] = weakref.WeakKeyDictionary()
        self.fallback = fallback
        self._client = client
        self._keys = [f"carecycle:rl:{name}", f"carecycle:rl:{name}:pause"]
        self._claim = client.register_script(CLAIM_SCRIPT)
        self._settle = client.register_script(SETTLE_SCRIPT)
        self._pause = client.register_script(PAUSE_SCRIPT)
        self._span = window_span(window_s)
        self._url = redacted_url(url)
        self._clock = clock
        self._sleep = sleep
        self._fallback_clock = fallback_clock
        self._lock = threading.Lock()
        self._down_until = -1.0
        self._logged = False
        self.set_rate(requests_per_window, max_wait_s)

    def set_rate(self, requests_per_window: int, max_wait_s: float | None = None) -> None:
        """Change the limit and, if given, ``max_wait_s`` (the fallback's too)."""
        self.limit = check_rate(requests_per_window)
        if max_wait_s is not None:
            self._horizon = horizon(max_wait_s, self._span)
        if hasattr(self.fallback, "set_rate"):
            self.fallback.set_rate(self.limit, max_wait_s)

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

    def try_claim(self, hold_s: float) -> tuple[float, str | None] | None:
        """Claim a slot in Redis if one is free now: ``(0.0, id)``; else ``(seconds until one may be, None)``;
        ``None``: no Redis."""
        if self.using_fallback:
            return None
        import redis

        token, args = self._claim_args(hold_s)
        try:
            answer = self._claim(keys=self._keys, args=args)
        except redis.RedisError as error:
            self._failed(error)
            return None
        return _claimed(answer, token)

    def _claim_args(self, hold_s: float) -> tuple[str, list[Any]]:
        """A new claim's id and the claim script's arguments."""
        token = uuid.uuid4().hex
        hold = max(0.0, bounded_wait(hold_s, self._horizon))
        return token, [self.limit, self._span, token, self._now(), hold, self._horizon]

    def claim(self, hold_s: float) -> Slot:
        """Wait for a free slot and claim it, in Redis or in the fallback (see
        :meth:`~airflow_provider_carecycle.hooks.ratelimit.base.Limiter.claim`)."""
        waited = 0.0
        while True:
            answer = self.try_claim(hold_s)
            if answer is None:
                slot = self.fallback.claim(hold_s)
                return Slot(waited + slot.waited, slot)  # the fallback's own slot: settled there
            delay, token = answer
            if token is not None:
                return Slot(waited, token)
            delay = bounded_wait(delay, self._horizon)
            self._sleep(delay)
            waited += delay

    def settle(self, slot: Slot) -> None:
        """Record the claim's request now, where it was claimed (a claim left unsettled when Redis fails counts
        until its hold runs out)."""
        if isinstance(slot.token, Slot):
            self.fallback.settle(slot.token)
            return
        import redis

        try:
            self._settle(keys=self._keys[:1], args=[slot.token, self._now(), self._span])
        except redis.RedisError as error:
            self._failed(error)

    def acquire(self) -> float:
        """Wait for a free slot and claim it, recorded at once (a request counted when it starts); return the wait."""
        return self.claim(0.0).waited

    def pause(self, seconds: float) -> None:
        """Hold every client of the key back for ``seconds`` (at most ``max_wait_s``), in Redis and in the fallback
        (for when Redis fails)."""
        seconds = bounded_wait(seconds, self._horizon)
        self.fallback.pause(seconds)
        if self.using_fallback:
            return
        import redis

        try:
            self._pause(keys=self._keys[1:], args=[seconds, self._now()])
        except redis.RedisError as error:
            self._failed(error)

    # -- on the event loop ----------------------------------------------------------------------------------------

    def _scripts_on_loop(self) -> tuple[Any, Any, Any]:
        """The claim, settle and pause scripts on this event loop's ``redis.asyncio`` client (made once per loop)."""
        import asyncio

        loop = asyncio.get_running_loop()
        scripts = self._async_scripts.get(loop)
        if scripts is None:
            if self._async_client is None:
                raise ValueError("This Redis limiter was built without an async client (async_client).")
            client = self._async_client()
            scripts = (
                client.register_script(CLAIM_SCRIPT),
                client.register_script(SETTLE_SCRIPT),
                client.register_script(PAUSE_SCRIPT),
            )
            self._async_scripts[loop] = scripts
        return scripts

    async def atry_claim(self, hold_s: float) -> tuple[float, str | None] | None:
        """:meth:`try_claim` from the event loop."""
        if self.using_fallback:
            return None
        import redis

        token, args = self._claim_args(hold_s)
        try:
            answer = await self._scripts_on_loop()[0](keys=self._keys, args=args)
        except redis.RedisError as error:
            self._failed(error)
            return None
        return _claimed(answer, token)

    async def aclaim(self, hold_s: float) -> Slot:
        """:meth:`claim` on the event loop: the waits are the async sleep, no thread is held."""
        waited = 0.0
        while True:
            answer = await self.atry_claim(hold_s)
            if answer is None:
                assert isinstance(self.fallback, AsyncLimiter)
                slot = await self.fallback.aclaim(hold_s)
                return Slot(waited + slot.waited, slot)
            delay, token = answer
            if token is not None:
                return Slot(waited, token)
            delay = bounded_wait(delay, self._horizon)
            await self._async_sleep(delay)
            waited += delay

    async def asettle(self, slot: Slot) -> None:
        """:meth:`settle` from the event loop."""
        if isinstance(slot.token, Slot):
            assert isinstance(self.fallback, AsyncLimiter)
            await self.fallback.asettle(slot.token)
            return
        import redis

        try:
            await self._scripts_on_loop()[1](keys=self._keys[:1], args=[slot.token, self._now(), self._span])
        except redis.RedisError as error:
            self._failed(error)

    async def apause(self, seconds: float) -> None:
        """:meth:`pause` from the event loop."""
        seconds = bounded_wait(seconds, self._horizon)
        assert isinstance(self.fallback, AsyncLimiter)
        await self.fallback.apause(seconds)
        if self.using_fallback:
            return
        import redis

        try:
            await self._scripts_on_loop()[2](keys=self._keys[1:], args=[seconds, self._now()])
        except redis.RedisError as error:
            self._failed(error)

    async def aon_rate_limited(self, retry_after: float | None) -> None:
        """:meth:`on_rate_limited` from the event loop."""
        if self.using_fallback:
            assert isinstance(self.fallback, AsyncLimiter)
            await self.fallback.aon_rate_limited(retry_after)

    def on_success(self) -> None:
        """Nothing to adapt while Redis keeps the window."""
        if self.using_fallback:
            self.fallback.on_success()

    def on_rate_limited(self, retry_after: float | None) -> None:
        """Adapt the fallback's pace while it is in use (with Redis a 429 means a client outside it: pause only)."""
        if self.using_fallback:
            self.fallback.on_rate_limited(retry_after)


def _claimed(answer: Any, token: str) -> tuple[float, str | None]:
    """The claim script's answer: ``(0.0, token)`` when the claim was added, else ``(seconds to wait, None)``."""
    delay = float(answer)
    return (0.0, token) if delay <= 0 else (delay, None)


def redis_limiter(
    url: str,
    base_url: str,
    api_key: str,
    requests_per_window: int,
    window_s: float = 60.0,
    *,
    directory: str | None = None,
    max_wait_s: float = DEFAULT_MAX_WAIT_S,
    conn_id: str = "",
) -> RedisRateLimiter:
    """The process's Redis limiter for ``(base_url, api_key, window_s)`` on the server at ``url``.

    The URL's password (as written and percent-decoded) goes to Airflow's secrets masker first, so no log line of
    the task shows it, whatever happens next.

    :param url: the connection extra ``rate_limit_backend`` (``redis://``, ``rediss://`` or ``unix://``).
    :param base_url: the API's base URL.
    :param api_key: the key or credential identity (only hashed).
    :param requests_per_window: the key's limit.
    :param window_s: the window in seconds.
    :param directory: the connection extra ``rate_limit_dir``, for the fallback.
    :param max_wait_s: the connection's ``max_retry_after``: the longest a value read from Redis may hold a caller.
    :param conn_id: the Airflow connection, named in error messages.
    :raises ValueError: when the ``redis`` package is not installed or the URL cannot be read (never showing it).
    """
    from airflow_provider_carecycle import _compat

    for secret in url_passwords(url):
        _compat.mask_secret(secret)
    check_redis_url(url, conn_id)
    try:
        import redis
        import redis.asyncio
    except ImportError:
        raise ValueError(
            f"Airflow connection {conn_id!r}: extra 'rate_limit_backend' names a Redis server, but the 'redis' "
            "package is not installed: pip install 'airflow-provider-carecycle[redis]'."
        ) from None
    fallback = host_limiter(
        base_url,
        api_key,
        requests_per_window,
        window_s,
        directory=directory,
        adaptive=True,
        max_wait_s=max_wait_s,
        conn_id=conn_id,
    )
    digest = key_digest(base_url, api_key)

    def make() -> RedisRateLimiter:
        try:
            client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
        except ValueError:  # raised outside this block, so redis-py's message (it may quote the URL) is not chained
            client = None
        if client is None:
            raise ValueError(
                f"Airflow connection {conn_id!r}: extra 'rate_limit_backend' is not a Redis URL redis-py accepts "
                "(not shown: it may hold a password). Check its scheme, host, port and database number, and "
                "percent-encode special characters of the user name and password."
            )

        def async_client() -> Any:
            return redis.asyncio.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)

        return RedisRateLimiter(
            client,
            digest,
            requests_per_window,
            window_s,
            fallback=fallback,
            url=url,
            max_wait_s=max_wait_s,
            async_client=async_client,
        )

    where = f"{hashlib.sha256(url.encode()).hexdigest()}|{fallback.path}"
    key = ("redis", base_url.rstrip("/"), digest, repr(float(window_s)), where)
    limiter = registered(key, make)
    assert isinstance(limiter, RedisRateLimiter)
    limiter.set_rate(requests_per_window, max_wait_s)
    return limiter
