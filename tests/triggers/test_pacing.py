"""Fair turns on one key: many triggers' polls spread over the key's budget, none starving, in virtual time.

The triggers here are plain coroutines doing what the stats trigger does (claim a slot through the key's paced
limiter, then sleep the poll interval) on a real :class:`RateLimiter`; the clock and every sleep are virtual
(:class:`VirtualTime`), so 30 windows of 500 sensors take a fraction of a second and nothing really waits.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections import defaultdict

import pytest

from airflow_provider_carecycle.hooks.ratelimit.base import window_span
from airflow_provider_carecycle.hooks.ratelimit.process import RateLimiter
from airflow_provider_carecycle.triggers.pacing import KeyPacer, PacedLimiter, pacer_for
from tests.hooks.ratelimit.helpers import FakeClock, assert_never_more_than


class VirtualTime:
    """A clock and an async sleep for many tasks: time jumps to the next wake-up once every task waits."""

    def __init__(self) -> None:
        self.now = 0.0
        self._wakeups: list[tuple[float, int, asyncio.Future[None]]] = []
        self._count = 0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._wakeups, (self.now + max(0.0, seconds), self._count, future))
        self._count += 1
        await future

    async def run_until(self, end: float) -> None:
        while True:
            for _ in range(20):  # let every task that can run, run
                await asyncio.sleep(0)
            if not self._wakeups or self._wakeups[0][0] > end:
                return
            self.now, _, future = heapq.heappop(self._wakeups)
            future.set_result(None)


def simulate(sensors: int, limit: int, window_s: float, poll_interval: float, windows: int):
    """Run ``sensors`` pollers on one key for ``windows`` windows; return each sensor's poll times and all of them."""
    time = VirtualTime()
    polls: dict[int, list[float]] = defaultdict(list)

    async def main() -> None:
        limiter = RateLimiter(limit, window_s, clock=time, sleep=lambda s: None, async_sleep=time.sleep)
        pacer = pacer_for(limiter, asyncio.get_running_loop(), clock=time, sleep=time.sleep)
        paced = PacedLimiter(pacer)

        async def sensor(n: int) -> None:
            pacer.join(n, poll_interval)
            while True:
                slot = await paced.aclaim(30.0)
                polls[n].append(time.now)
                await paced.asettle(slot)
                await time.sleep(poll_interval)

        tasks = [asyncio.ensure_future(sensor(n)) for n in range(sensors)]
        await time.run_until(windows * window_s)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())
    return polls, sorted(t for times in polls.values() for t in times)


def test_500_sensors_on_one_key_share_it_evenly_and_keep_to_its_limit(caplog):
    caplog.set_level(logging.INFO, logger="airflow_provider_carecycle.triggers.pacing")
    polls, every = simulate(sensors=500, limit=60, window_s=60.0, poll_interval=60.0, windows=30)
    assert_never_more_than(60, 60.0, every)  # requests per window / limit <= 1.0
    even_share = 500 * 60.0 / 60
    # from the first round on (the first poll of each waits its turn once), the longest gap of any sensor
    longest = max(b - a for times in polls.values() for a, b in zip(times, times[1:], strict=False))
    assert len(polls) == 500 and min(len(t) for t in polls.values()) >= 3  # nobody starved
    assert longest / even_share <= 1.5
    assert longest == pytest.approx(500 * window_span(60.0) / 60, rel=0.01)  # round-robin: one slot each
    stretched = [r for r in caplog.records if "are stretched" in r.getMessage()]
    assert len(stretched) == 1 and "500 deferred sensors" in stretched[0].getMessage()


def test_few_sensors_poll_at_their_own_interval_without_a_line(caplog):
    caplog.set_level(logging.INFO, logger="airflow_provider_carecycle.triggers.pacing")
    polls, every = simulate(sensors=10, limit=60, window_s=60.0, poll_interval=30.0, windows=5)
    gaps = [b - a for times in polls.values() for a, b in zip(times, times[1:], strict=False)]
    assert max(gaps) == pytest.approx(30.0, abs=window_span(60.0))
    assert not [r for r in caplog.records if "stretched" in r.getMessage()]


def test_the_stretch_is_said_once_and_its_end_once():
    clock = FakeClock(0.0)
    limiter = RateLimiter(2, 60.0, clock=clock, sleep=clock.sleep, async_sleep=clock.asleep)
    pacer = KeyPacer(limiter, clock=clock, sleep=clock.asleep)
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("airflow_provider_carecycle.triggers.pacing")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        for n in range(5):
            pacer.join(n, 60.0)  # 5 sensors at 2 a minute: each about every 151 s
        assert pacer.interval(60.0) == pytest.approx(5 * window_span(60.0) / 2)

        async def turns() -> None:
            await pacer.claim(0.0)  # the sensors just arrived: not said yet
            clock.now += 60.0
            for _ in range(3):
                await pacer.claim(0.0)

        asyncio.run(turns())
        for n in range(4):
            pacer.leave(n)
    finally:
        logger.removeHandler(handler)
    assert len(records) == 2
    assert "5 deferred sensors" in records[0] and "every 151.2 s" in records[0]
    assert "fit its budget again" in records[1]


def test_one_pacer_per_key_and_loop():
    limiter, other = RateLimiter(5, 60.0), RateLimiter(5, 60.0)
    loop = asyncio.new_event_loop()
    try:
        assert pacer_for(limiter, loop) is pacer_for(limiter, loop)
        assert pacer_for(limiter, loop) is not pacer_for(other, loop)
    finally:
        loop.close()
