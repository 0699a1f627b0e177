"""The Redis limiter against a real ``redis-server`` on loopback, started here (and installed when missing).

Two limiter objects with their own clients stand for two hosts. Most tests inject the clock into the scripts (the
server's ``TIME`` is used otherwise) and a sleep that only advances it, so nothing waits.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

redis = pytest.importorskip("redis", reason="the 'redis' package (dev extra) is needed for the Redis backend tests")

from airflow_provider_carecycle.hooks.carecycle import CareCycleHook  # noqa: E402
from airflow_provider_carecycle.hooks.ratelimit import limiter_for  # noqa: E402
from airflow_provider_carecycle.hooks.ratelimit.base import key_digest  # noqa: E402
from airflow_provider_carecycle.hooks.ratelimit.host import HostRateLimiter  # noqa: E402
from airflow_provider_carecycle.hooks.ratelimit.redis import RedisRateLimiter, redacted_url  # noqa: E402
from tests.hooks.ratelimit.helpers import FakeClock, assert_never_more_than, starts_in_turn  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_server_binary() -> str:
    """``redis-server``, installed from Debian's packages when missing (needs root and apt-get), else a skip."""
    binary = shutil.which("redis-server")
    if binary is None and shutil.which("apt-get") and os.geteuid() == 0:
        install = ["apt-get", "install", "-y", "-q", "redis-server"]
        try:
            if subprocess.run(install, capture_output=True, timeout=600).returncode != 0:
                # a fresh machine may not have package lists yet
                subprocess.run(["apt-get", "update", "-q"], check=True, capture_output=True, timeout=600)
                subprocess.run(install, check=True, capture_output=True, timeout=600)
        except (OSError, subprocess.SubprocessError) as err:
            pytest.skip(f"redis-server is not installed and 'apt-get install -y redis-server' failed: {err}")
        binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip(
            "redis-server is not installed and cannot be here (needs root and apt-get): apt-get install redis-server"
        )
    return binary


def start_redis(port: int, *args: str, url: str | None = None) -> subprocess.Popen:
    """A throwaway ``redis-server`` on ``127.0.0.1:port``, no persistence; ready when this returns.

    :param args: more ``redis-server`` options.
    :param url: how to reach it for the readiness check (default: no credentials).
    """
    process = subprocess.Popen(
        [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis.from_url(url or f"redis://127.0.0.1:{port}/0", socket_connect_timeout=1)
    for _ in range(200):
        try:
            if client.ping():
                return process
        except redis.ConnectionError:
            time.sleep(0.05)  # waiting for a server to start, not timing a behaviour
    process.kill()
    raise RuntimeError(f"redis-server did not answer on port {port}")


def stop_redis(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    port = free_port()
    process = start_redis(port)
    yield f"redis://127.0.0.1:{port}/0"
    stop_redis(process)


@pytest.fixture
def redis_client(redis_url) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


def host(redis_url, tmp_path, clock, limit, window_s=60.0, name="k", **kwargs) -> RedisRateLimiter:
    """One 'host': its own Redis client and its own host-wide fallback folder."""
    folder = tmp_path / f"host-{id(clock)}-{len(list(tmp_path.iterdir()))}"
    folder.mkdir()
    fallback = HostRateLimiter(
        folder / "k.window", limit, window_s, clock=clock, sleep=clock.sleep, async_sleep=clock.asleep
    )
    return RedisRateLimiter(
        redis.Redis.from_url(redis_url),
        name,
        limit,
        window_s,
        fallback=fallback,
        url=redis_url,
        clock=clock,
        sleep=clock.sleep,
        async_client=lambda: redis.asyncio.Redis.from_url(redis_url),
        async_sleep=clock.asleep,
        **kwargs,
    )


def test_hosts_share_one_exact_window(redis_url, redis_client, tmp_path):
    clock = FakeClock()
    hosts = [host(redis_url, tmp_path, clock, 10) for _ in range(3)]
    starts = starts_in_turn(hosts, clock, 40)
    assert_never_more_than(10, 60.0, starts)
    assert starts[-1] - starts[0] == pytest.approx(3 * 60.5)
    assert not any(h.using_fallback for h in hosts)


def test_a_pause_holds_every_host_back(redis_url, redis_client, tmp_path):
    clock = FakeClock()
    a, b = host(redis_url, tmp_path, clock, 100), host(redis_url, tmp_path, clock, 100)
    a.acquire()
    a.pause(7.0)
    b.pause(1.0)
    assert b.acquire() == pytest.approx(7.0)


def test_with_the_servers_clock(redis_url, redis_client, tmp_path):
    clock = FakeClock()
    limiter = host(redis_url, tmp_path, clock, 3)
    limiter._clock = None  # the scripts read the Redis server's TIME, as in production
    assert [limiter.try_claim(0.0)[0] for _ in range(3)] == [0.0, 0.0, 0.0]
    assert 60.0 < limiter.try_claim(0.0)[0] <= 60.5


def test_keys_hold_no_credential_and_expire(redis_url, redis_client, tmp_path):
    limiter = limiter_for("http://api.test", "cc_secret_key", 5, 60.0, backend=redis_url, directory=str(tmp_path))
    assert isinstance(limiter, RedisRateLimiter)
    limiter.acquire()
    limiter.pause(3.0)
    keys = sorted(k.decode() for k in redis_client.keys("*"))
    digest = key_digest("http://api.test", "cc_secret_key")
    assert keys == [f"carecycle:rl:{digest}", f"carecycle:rl:{digest}:pause"]
    assert all(0 < redis_client.pttl(k) <= 60_500 for k in keys)
    assert limiter_for("http://api.test/", "cc_secret_key", 5, 60.0, backend=redis_url, directory=str(tmp_path)) is (
        limiter
    )


def test_unreachable_redis_falls_back_logs_once_without_credentials_and_comes_back(tmp_path, caplog):
    port = free_port()
    url = f"redis://airflow:s3cret@127.0.0.1:{port}/0"
    clock = FakeClock()
    monotonic = FakeClock()
    limiter = host(url, tmp_path, clock, 2, fallback_clock=monotonic)
    with caplog.at_level(logging.WARNING, logger="airflow_provider_carecycle.hooks.ratelimit.redis"):
        assert limiter.acquire() == 0.0
        assert limiter.acquire() == 0.0
        assert limiter.using_fallback
        limiter.on_rate_limited(5.0)  # adaptive pacing works on the fallback meanwhile
        assert limiter.fallback.allowed() == 1
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert f"redis://127.0.0.1:{port}/0 is unreachable" in warnings[0] and "s3cret" not in warnings[0]
    assert "airflow" not in warnings[0]
    process = start_redis(port, "--user", "airflow", "on", ">s3cret", "~*", "&*", "+@all", url=url)
    try:
        monotonic.now += 59.0
        assert limiter.try_claim(0.0) is None  # still within a window of the failure: not retried yet
        monotonic.now += 1.0
        assert limiter.try_claim(0.0)[0] == 0.0
        assert not limiter.using_fallback
        assert redis.Redis.from_url(url).zcard(limiter._keys[0]) == 1
    finally:
        stop_redis(process)


def test_the_redis_package_missing_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(ValueError, match=r"'cc'.*pip install 'airflow-provider-carecycle\[redis\]'"):
        limiter_for("http://x", "cc_k", 60, backend="redis://127.0.0.1:1/0", directory=str(tmp_path), conn_id="cc")


def test_redacted_url_drops_user_and_password():
    assert redacted_url("rediss://user:pw@redis.internal:6380/2") == "rediss://redis.internal:6380/2"
    assert redacted_url("redis://:pw@[::1]:6379") == "redis://[::1]:6379"


def test_the_hook_picks_redis_from_the_connection_and_requests_count_there(
    carecycle_emulator, carecycle_connection, redis_url, redis_client, tmp_path
):
    extra = {"requests_per_minute": 6000, "rate_limit_backend": redis_url, "rate_limit_dir": str(tmp_path)}
    carecycle_connection(host=carecycle_emulator.url, extra=extra)
    hook = CareCycleHook()
    assert isinstance(hook.limiter, RedisRateLimiter)
    assert hook.limiter.fallback.path.parent == tmp_path
    list(hook.iter_campaigns())
    digest = key_digest(carecycle_emulator.url, "cc_test_key")
    assert redis_client.zcard(f"carecycle:rl:{digest}") == hook.stats.requests >= 1


def test_a_claim_counts_on_every_host_until_its_answer_then_for_a_window(redis_url, redis_client, tmp_path):
    clock = FakeClock()
    a, b = host(redis_url, tmp_path, clock, 2), host(redis_url, tmp_path, clock, 2)
    slot = a.claim(30.0)
    b.acquire()
    clock.now += 20.0
    assert b.try_claim(0.0)[0] > 0  # a's request is in flight
    a.settle(slot)
    members = {m.decode(): s for m, s in redis_client.zrange(a._keys[0], 0, -1, withscores=True)}
    assert members[f"s:{slot.token}"] == pytest.approx(clock.now) and f"c:{slot.token}" not in members
    clock.now += 60.5 - 20.0
    assert b.acquire() == 0.0
    assert b.acquire() == pytest.approx(20.0)


def test_a_claim_never_settled_frees_after_its_hold_and_a_window(redis_url, redis_client, tmp_path):
    clock = FakeClock()
    killed, survivor = host(redis_url, tmp_path, clock, 1), host(redis_url, tmp_path, clock, 1)
    killed.claim(30.0)
    assert 0 < redis_client.pttl(killed._keys[0]) <= 90_500  # the key outlives the claim's hold and window
    assert survivor.acquire() == pytest.approx(30.0 + 60.5)


def test_a_claim_made_on_the_fallback_is_settled_there(tmp_path):
    clock, monotonic = FakeClock(), FakeClock()
    limiter = host(f"redis://127.0.0.1:{free_port()}/0", tmp_path, clock, 1, fallback_clock=monotonic)
    slot = limiter.claim(30.0)  # Redis is down: the host-wide fallback holds the claim
    clock.now += 10.0
    limiter.settle(slot)
    assert limiter.fallback.try_acquire() == pytest.approx(60.5)


def test_a_percent_encoded_password_with_special_characters_reaches_redis(tmp_path):
    """What the docs advise: '/', '#', '?' and '@' in a password, percent-encoded in the URL, as redis-py decodes it."""
    port, password = free_port(), "p/ss#w?rd@1"
    url = f"redis://:p%2Fss%23w%3Frd%401@127.0.0.1:{port}/0"
    process = start_redis(port, "--requirepass", password, url=url)
    try:
        limiter = limiter_for("http://api.encoded.test", "cc_k", 5, 60.0, backend=url, directory=str(tmp_path))
        assert isinstance(limiter, RedisRateLimiter)
        assert limiter.acquire() == 0.0 and not limiter.using_fallback
        assert redis.Redis.from_url(url).zcard(limiter._keys[0]) == 1
    finally:
        stop_redis(process)


# -- the async half (a trigger's polls) ------------------------------------------------------------------------------


def test_async_claims_share_the_window_with_sync_claims_and_wait_on_the_loop(redis_url, redis_client, tmp_path):
    import asyncio

    clock = FakeClock()
    worker, triggerer = host(redis_url, tmp_path, clock, 3), host(redis_url, tmp_path, clock, 3)
    worker.acquire()
    worker.acquire()

    async def polls() -> list[float]:
        waits = []
        for _ in range(2):
            slot = await triggerer.aclaim(30.0)
            await triggerer.asettle(slot)
            waits.append(slot.waited)
        await triggerer.apause(7.0)
        return waits

    assert asyncio.run(polls()) == [0.0, pytest.approx(60.5)]  # the third slot was the key's last in the window
    assert clock.sleeps == [pytest.approx(60.5)]  # slept with the injected async sleep: no thread held
    assert worker.try_claim(0.0)[0] == pytest.approx(7.0)  # the async pause holds the worker back too


def test_async_claims_fall_back_to_the_host_file_when_redis_is_down(tmp_path):
    import asyncio

    clock, monotonic = FakeClock(), FakeClock(0.0)
    limiter = host(f"redis://127.0.0.1:{free_port()}/0", tmp_path, clock, 1, fallback_clock=monotonic)

    async def poll() -> None:
        slot = await limiter.aclaim(30.0)
        await limiter.asettle(slot)
        await limiter.aon_rate_limited(5.0)

    asyncio.run(poll())
    assert limiter.using_fallback and limiter.fallback.try_acquire() > 0  # counted, and cut, in the fallback
