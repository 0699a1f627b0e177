"""The rate limiters fail closed (issue 20, section 4): state someone else wrote, a clock set back, a worker
descheduled between its claim and its request.

* A pause, a request time or an adaptive-pacing time read from the host-wide state file or from Redis that is not
  finite, or lies further ahead than ``max_retry_after``, is clamped: never an unlimited sender, never a sleep of a
  day. :class:`StrictClock` fails a test the moment a limiter tries to sleep longer than an hour.
* A ``rate_limit_dir`` other users can write (and a state file someone else planted) is refused, as ssh refuses
  such key files.
* A Redis URL that cannot be read never shows up, whole or in part, in an error or a log line; its password is
  given to Airflow's secrets masker.
* A request's slot is recorded when its answer arrives (the last moment careCycle can have counted it), not when
  it was claimed: a worker descheduled in between cannot push the key over its limit. The "server" here is the
  emulator's own sliding window, counting each request when it arrives, on the tests' clock.

Limiters run on an injected clock; nothing sleeps for real.
"""

from __future__ import annotations

import json
import math
import os
import stat
import struct
from collections import deque
from collections.abc import Callable, Iterator
from itertools import count
from pathlib import Path
from typing import Any

import pytest
import requests
import requests_mock as requests_mock_lib

from airflow_provider_carecycle.exceptions import CARECYCLE_ERRORS, ApiError
from airflow_provider_carecycle.hooks._http import HttpSender
from airflow_provider_carecycle.hooks.ratelimit import limiter_for
from airflow_provider_carecycle.hooks.ratelimit.host import HostRateLimiter, state_dir
from airflow_provider_carecycle.hooks.ratelimit.process import RateLimiter
from carecycle_emulator.base import SlidingWindowRateLimiter
from tests.hooks.ratelimit.helpers import FakeClock

#: the connection's default max_retry_after: no value read from shared state may hold a caller back longer
MAX_WAIT_S = 300.0
#: a test fails as soon as a limiter asks to sleep longer than this
SANE_SLEEP_S = 3600.0
DAY_S = 86_400.0


class StrictClock(FakeClock):
    """A :class:`FakeClock` whose ``sleep`` refuses a wait that is not finite or longer than an hour."""

    def sleep(self, seconds: float) -> None:
        if not (math.isfinite(seconds) and 0 <= seconds <= SANE_SLEEP_S):
            raise AssertionError(f"the limiter tried to sleep {seconds!r} s")
        super().sleep(seconds)


@pytest.fixture
def clock() -> StrictClock:
    return StrictClock(1_700_000_000.0)


def host(path: Path, clock: FakeClock, limit: int = 60, window_s: float = 60.0) -> HostRateLimiter:
    return HostRateLimiter(path, limit, window_s, clock=clock, sleep=clock.sleep)


def patch_double(path: Path, old: float, new: float) -> None:
    """Replace the double ``old`` (every copy) in the state file with ``new`` (what a damaged or hand-edited file
    holds), wherever the file format keeps it."""
    data = path.read_bytes()
    packed = struct.pack("<d", old)
    assert packed in data, f"{old!r} is not in the state file"
    path.write_bytes(data.replace(packed, struct.pack("<d", new)))


# -- 4.1 values from the state file or Redis are bounded -------------------------------------------------------


def test_a_clock_set_back_a_day_after_a_pause_does_not_sleep_a_day(tmp_path, clock):
    limiter = host(tmp_path / "key.window", clock)
    limiter.pause(30.0)  # a 429 asked for 30 s
    clock.now -= DAY_S  # then the host's clock was set back a day: the pause now ends a day and 30 s from now
    assert limiter.acquire() <= MAX_WAIT_S


def test_a_full_window_stays_full_when_the_clock_is_set_back(tmp_path, clock):
    """Dropping the window's request times because they now lie in the future would let a second full window go
    out within a minute of the first, drawing a 429 for each."""
    limiter = host(tmp_path / "key.window", clock, limit=5)
    for _ in range(5):
        limiter.acquire()
    clock.now -= 3600.0
    assert 0 < limiter.acquire() <= 60.5  # the five requests still hold their slots, for one window at most


@pytest.mark.parametrize("damage", [math.inf, math.nan, DAY_S * 365])
@pytest.mark.parametrize("field", ["pause", "request time", "cut allowance", "cut time", "hold after a cut"])
def test_a_damaged_value_in_the_state_file_is_clamped(tmp_path, clock, field, damage):
    """Every double the host-wide state file holds, made not finite or a year ahead: the limiter neither sleeps a
    day, nor crashes, nor stays cut for good, nor lets more than the window's requests through."""
    path = tmp_path / "key.window"
    limiter = host(path, clock)
    start = clock.now
    if field == "pause":
        limiter.pause(12.25)
        stored = start + 12.25
    elif field == "request time":
        clock.now += 0.75
        limiter.acquire()
        stored = clock.now
    else:
        clock.now += 1.5
        limiter.on_rate_limited(7.25)  # cuts 60 to 42 at start + 1.5, holds further cuts until start + 8.75
        stored = {"cut allowance": 42.0, "cut time": start + 1.5, "hold after a cut": start + 8.75}[field]
    patch_double(path, stored, damage + (clock.now if damage == DAY_S * 365 else 0.0))

    assert limiter.acquire() <= MAX_WAIT_S  # no day-long sleep, no crash
    sent = 1
    while clock.now - start < 60.0 and sent < 200:  # never more than the window's 60 within a window
        limiter.acquire()
        sent += 1
    assert sent <= 61
    clock.now += 3600.0  # an hour later the damage has healed: the whole allowance is back
    assert limiter.allowed() == 60


def test_a_retry_after_of_years_does_not_cut_the_host_for_years(tmp_path, clock):
    """A 429 asking for 10^9 s (finite, so accepted as the wait) fails the task at once (max_retry_after), but the
    adaptive cut it records in the host's state must not hold for 31 years."""
    limiter = host(tmp_path / "key.window", clock)
    limiter.on_rate_limited(1e9)
    assert limiter.allowed() == 42
    clock.now += 3600.0
    assert limiter.allowed() == 60


@pytest.fixture(scope="module")
def redis_server() -> Iterator[str]:
    pytest.importorskip("redis", reason="the 'redis' package (dev extra) is needed for the Redis backend")
    from tests.hooks.ratelimit.test_redis import free_port, start_redis, stop_redis

    port = free_port()
    process = start_redis(port)
    yield f"redis://127.0.0.1:{port}/0"
    stop_redis(process)


_hosts = count()


def redis_host(url: str, tmp_path: Path, clock: FakeClock, limit: int = 60, window_s: float = 60.0) -> Any:
    """A Redis limiter on a fresh database with its own host-wide fallback, and its Redis client."""
    import redis

    from airflow_provider_carecycle.hooks.ratelimit.redis import RedisRateLimiter

    client = redis.Redis.from_url(url)
    client.flushdb()
    fallback = host(tmp_path / f"fallback-{next(_hosts)}.window", clock, limit, window_s)
    return RedisRateLimiter(
        client, "k", limit, window_s, fallback=fallback, url=url, clock=clock, sleep=clock.sleep
    ), client


@pytest.mark.parametrize("value", ["inf", str(1_700_000_000.0 + DAY_S), "nan"])
def test_a_pause_in_redis_a_day_ahead_or_not_finite_is_clamped(redis_server, tmp_path, clock, value):
    limiter, client = redis_host(redis_server, tmp_path, clock)
    client.set("carecycle:rl:k:pause", value)  # a clock set back, or someone else's write
    assert limiter.acquire() <= MAX_WAIT_S
    assert not limiter.using_fallback


def test_request_times_in_redis_a_day_ahead_are_clamped(redis_server, tmp_path, clock):
    limiter, client = redis_host(redis_server, tmp_path, clock, limit=3)
    client.zadd("carecycle:rl:k", {"a": clock.now + DAY_S, "b": math.inf, "c": clock.now + 3 * DAY_S})
    waited = limiter.acquire()  # the window is full, but of times no later than now: one window's wait at most
    assert 0 < waited <= 60.5


# -- 4.2 a rate_limit_dir other users can write is refused --------------------------------------------------------


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o775, 0o707, 0o720])
def test_a_folder_other_users_can_write_is_refused(tmp_path, mode):
    folder = tmp_path / "limits"
    folder.mkdir()
    folder.chmod(mode)
    with pytest.raises(ValueError, match=r"Airflow connection 'cc': rate-limit folder .*limits'.* other users"):
        state_dir(str(folder), conn_id="cc")


def test_a_sticky_shared_folder_like_tmp_is_accepted(tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o1777)  # others can create files there, but not remove or rename this user's
    assert state_dir(str(folder), conn_id="cc") == folder


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another user needs root")
def test_a_folder_of_another_user_is_refused_even_when_this_one_may_write_it(tmp_path):
    folder = tmp_path / "theirs"
    folder.mkdir(mode=0o700)
    os.chown(folder, 65534, 65534)  # nobody's: root may still write there, but nobody may swap the state
    with pytest.raises(ValueError, match=r"'cc': rate-limit folder .*theirs' belongs to another user"):
        state_dir(str(folder), conn_id="cc")


@pytest.mark.parametrize("plant", ["writable by others", "another user's", "a symlink"])
def test_a_state_file_someone_else_planted_is_refused(tmp_path, clock, plant):
    if plant == "another user's" and os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")
    folder = tmp_path / "limits"
    folder.mkdir(mode=0o1777)
    folder.chmod(0o1777)
    path = folder / "key.window"
    if plant == "a symlink":
        (tmp_path / "elsewhere").write_bytes(b"")
        path.symlink_to(tmp_path / "elsewhere")
    else:
        path.write_bytes(b"")
        if plant == "writable by others":
            path.chmod(0o666)
        else:
            path.chmod(0o600)
            os.chown(path, 65534, 65534)
    with pytest.raises(ValueError, match=r"key\.window.*(another user|other users|not a regular file)"):
        host(path, clock).acquire()


def test_folders_the_provider_creates_are_not_open_to_others_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        folder = state_dir(str(tmp_path / "a" / "b" / "limits"), conn_id="cc")
    finally:
        os.umask(old)
    for created in (tmp_path / "a", tmp_path / "a" / "b", folder):
        assert not created.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH), f"{created} is open to others"
    assert folder.stat().st_mode & 0o777 == 0o700


# -- 4.3 a Redis URL that cannot be read shows no part of itself ----------------------------------------------

SECRET_PARTS = ("Sekr3tHead", "Sekr3tMiddle", "Sekr3tTail")


@pytest.mark.parametrize(
    "url",
    [
        "redis://:Sekr3tHead/Sekr3tMiddle@redis.internal:6379/1",
        "redis://airflow:Sekr3tHead#Sekr3tMiddle@redis.internal:6379/1",
        "rediss://airflow:Sekr3tHead?Sekr3tMiddle@redis.internal:6380/1",
        "redis://:Sekr3tHead/Sekr3tMiddle#Sekr3tTail@redis.internal/1",
        "unix://:Sekr3tHead/Sekr3tMiddle@/var/run/redis.sock?db=1",
    ],
)
def test_an_unreadable_redis_url_is_refused_without_showing_any_part_of_it(tmp_path, captured_logs, url):
    pytest.importorskip("redis")
    with pytest.raises(ValueError) as failure:
        limiter_for("https://api.test", "cc_k", 60, backend=url, directory=str(tmp_path), conn_id="cc_redis").acquire()
    said = []
    error: BaseException | None = failure.value
    while error is not None:  # the message and everything chained to it
        said.append(str(error))
        error = error.__cause__ or error.__context__
    said.append(captured_logs())
    text = "\n".join(said)
    assert "Airflow connection 'cc_redis'" in str(failure.value) and "percent-encode" in str(failure.value)
    for part in (*SECRET_PARTS, "redis.internal", "redis.sock", url):
        assert part not in text


def test_the_redis_password_is_given_to_airflows_secrets_masker(tmp_path, monkeypatch):
    pytest.importorskip("redis")
    from airflow_provider_carecycle import _compat

    masked: list[str] = []
    monkeypatch.setattr(_compat, "mask_secret", lambda secret, *args, **kwargs: masked.append(secret), raising=False)
    url = "redis://airflow:Sekr3t%2FHead@127.0.0.1:1/1"
    limiter_for("https://api.masked.test", "cc_k", 60, backend=url, directory=str(tmp_path), conn_id="cc")
    assert "Sekr3t/Head" in masked and "Sekr3t%2FHead" in masked  # as redis-py sends it, and as the URL holds it
    with pytest.raises(ValueError):
        limiter_for(
            "https://api.masked.test",
            "cc_k",
            60,
            backend="redis://:Sekr3tHead/Sekr3tMiddle@h:1/1",
            directory=str(tmp_path),
            conn_id="cc",
        )
    assert "Sekr3tHead/Sekr3tMiddle" in masked  # also when the URL cannot be read


# -- 4.4 a slot counts from the answer's arrival, not from the claim ------------------------------------------


class OracleServer:
    """careCycle's per-key window (the emulator's class) on the tests' clock, counting each request when it arrives.

    ``while_in_flight`` holds what happens between a request's claim and its arrival (other workers' requests, the
    clock moving on while this one is descheduled); the next request to arrive runs the first of them.
    """

    def __init__(self, clock: FakeClock, limit: int, window_s: float) -> None:
        self.clock = clock
        self.window = SlidingWindowRateLimiter(limit, window_s, clock=clock)
        self.answers: list[tuple[float, int]] = []
        self.while_in_flight: deque[Callable[[], None]] = deque()

    def answer(self, request: Any, context: Any) -> str:
        if self.while_in_flight:
            self.while_in_flight.popleft()()
        context.status_code = 200 if self.window.hit("key") is None else 429
        self.answers.append((self.clock.now, context.status_code))
        return json.dumps({"retryAfter": 1} if context.status_code == 429 else {})


def sender(limiter: Any, server: OracleServer) -> HttpSender:
    session = requests.Session()
    adapter = requests_mock_lib.Adapter()
    adapter.register_uri("GET", "http://api.test/v2/campaigns", text=server.answer)
    session.mount("http://", adapter)

    def error_for(method: str, path: str, response: Any) -> ApiError:
        return CARECYCLE_ERRORS.rate_limit("429", status=429, retry_after=None)

    return HttpSender(
        session,
        "http://api.test",
        limiter,
        timeout=30.0,
        max_retries=0,
        errors=CARECYCLE_ERRORS,
        error_for=error_for,
        no_answer=lambda method, path, error: CARECYCLE_ERRORS.server("no answer"),
        sleep=server.clock.sleep,
    )


def send(worker: HttpSender) -> None:
    try:
        worker.send("GET", "/v2/campaigns")
    except ApiError:
        pass  # the oracle's record says what happened


@pytest.fixture(params=["process", "host", "redis"])
def two_workers(request, tmp_path) -> Callable[[FakeClock, int, float], tuple[Any, Any]]:
    """``two_workers(clock, limit, window_s)``: the limiters of two workers sharing one key, for each backend."""

    def make(clock: FakeClock, limit: int, window_s: float) -> tuple[Any, Any]:
        if request.param == "process":  # two threads of one task
            shared = RateLimiter(limit, window_s, clock=clock, sleep=clock.sleep)
            return shared, shared
        if request.param == "host":  # two task processes of one host
            return host(tmp_path / "key.window", clock, limit, window_s), host(
                tmp_path / "key.window", clock, limit, window_s
            )
        url = request.getfixturevalue("redis_server")  # two hosts
        a, client = redis_host(url, tmp_path, clock, limit, window_s)
        b, _ = redis_host(url, tmp_path, clock, limit, window_s)
        client.flushdb()
        return a, b

    return make


def test_a_worker_descheduled_between_claim_and_send_cannot_push_the_key_over_its_limit(two_workers, clock):
    """Worker A claims a slot and is descheduled for 2 s before its request leaves; meanwhile worker B sends two.
    The window's three slots then free one window after their claims, but A's request reached careCycle 2 s late:
    slots recorded at the claim let B's next three requests out while A's still counts at the server (a 429)."""
    server = OracleServer(clock, limit=3, window_s=6.0)
    limiter_a, limiter_b = two_workers(clock, 3, 6.0)
    a, b = sender(limiter_a, server), sender(limiter_b, server)

    def worker_b_meanwhile() -> None:
        send(b)
        send(b)
        clock.now += 2.0  # A's process gets the CPU back only now

    server.while_in_flight.append(worker_b_meanwhile)
    send(a)
    for _ in range(3):
        send(b)
    statuses = [status for _, status in server.answers]
    assert statuses == [200] * 6, f"answers (time, status): {server.answers}"
