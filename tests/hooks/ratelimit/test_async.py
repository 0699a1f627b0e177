"""The limiters' async half (a trigger's polls): the same budget as the synchronous claims, waits as async sleeps.

Every test injects the clock and the async sleep (it only advances the clock), so nothing really waits; the Redis
backend's async half is tested in ``test_redis.py`` against a real server.
"""

from __future__ import annotations

import asyncio
import fcntl
import os

import pytest

from airflow_provider_carecycle.hooks.ratelimit.base import AsyncLimiter
from airflow_provider_carecycle.hooks.ratelimit.host import LOCK_RETRY_S, HostRateLimiter
from airflow_provider_carecycle.hooks.ratelimit.process import RateLimiter
from tests.hooks.ratelimit.helpers import FakeClock, assert_never_more_than


def process(clock, limit, window_s=60.0):
    return RateLimiter(limit, window_s, clock=clock, sleep=clock.sleep, async_sleep=clock.asleep)


def host(path, clock, limit, window_s=60.0, **kwargs):
    return HostRateLimiter(path, limit, window_s, clock=clock, sleep=clock.sleep, async_sleep=clock.asleep, **kwargs)


async def claims(limiter, count, hold_s=30.0, clock=None):
    starts = []
    for _ in range(count):
        slot = await limiter.aclaim(hold_s)
        starts.append(clock.now if clock else 0.0)
        await limiter.asettle(slot)
    return starts


@pytest.mark.parametrize("kind", ["process", "host"])
def test_every_limiter_has_the_async_half(tmp_path, kind):
    clock = FakeClock()
    limiter = process(clock, 5) if kind == "process" else host(tmp_path / "k.window", clock, 5)
    assert isinstance(limiter, AsyncLimiter)


@pytest.mark.parametrize("kind", ["process", "host"])
def test_async_claims_keep_the_window_and_wait_with_the_async_sleep(tmp_path, kind):
    clock = FakeClock(1_700_000_000.0)
    limiter = process(clock, 10) if kind == "process" else host(tmp_path / "k.window", clock, 10)
    starts = asyncio.run(claims(limiter, 35, clock=clock))
    assert_never_more_than(10, 60.0, starts)
    assert starts[:10] == [starts[0]] * 10
    assert clock.sleeps and all(s > 0 for s in clock.sleeps)  # every wait went through the injected async sleep


def test_the_triggerers_async_claims_and_a_workers_sync_claims_share_the_hosts_budget(tmp_path):
    clock = FakeClock(1_700_000_000.0)
    worker, triggerer = host(tmp_path / "k.window", clock, 4), host(tmp_path / "k.window", clock, 4)
    for _ in range(3):
        worker.acquire()
    assert asyncio.run(claims(triggerer, 1, clock=clock)) == [clock.now]  # the key's 4th slot: at once
    slot = asyncio.run(triggerer.aclaim(30.0))  # the 5th waits for the worker's first request to leave the window
    assert slot.waited == pytest.approx(60.5)
    asyncio.run(triggerer.asettle(slot))
    assert [worker.try_acquire() for _ in range(4)][-1] > 0  # ... and the worker counts the triggerer's request


@pytest.mark.parametrize("kind", ["process", "host"])
def test_an_async_pause_holds_sync_callers_back(tmp_path, kind):
    clock = FakeClock(1_700_000_000.0)
    make = (lambda: process(clock, 100)) if kind == "process" else (lambda: host(tmp_path / "k.window", clock, 100))
    limiter = make()
    asyncio.run(limiter.apause(12.0))
    other = limiter if kind == "process" else make()
    assert other.acquire() == pytest.approx(12.0)


def test_an_async_429_cuts_the_hosts_adaptive_allowance(tmp_path):
    clock = FakeClock(1_700_000_000.0)
    limiter = host(tmp_path / "k.window", clock, 10)
    asyncio.run(limiter.aon_rate_limited(5.0))
    assert limiter.allowed() == 7


def test_a_held_state_file_lock_is_waited_for_on_the_loop_not_blocked_on(tmp_path):
    """Another process holds the host-wide file's lock: the async claim retries after an async sleep instead of
    blocking the event loop in ``flock``."""
    clock = FakeClock(1_700_000_000.0)
    path = tmp_path / "k.window"
    limiter = host(path, clock, 10)
    limiter.acquire()  # creates the file
    holder = os.open(path, os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)
    retries: list[float] = []

    async def sleep_then_release(seconds: float) -> None:
        retries.append(seconds)
        fcntl.flock(holder, fcntl.LOCK_UN)  # the other process is done

    limiter._async_sleep = sleep_then_release
    try:
        slot = asyncio.run(limiter.aclaim(30.0))
    finally:
        os.close(holder)
    assert retries == [LOCK_RETRY_S] and slot.waited == 0.0
    asyncio.run(limiter.asettle(slot))
