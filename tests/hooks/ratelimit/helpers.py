"""Helpers shared by the rate limiter tests: an injected clock whose sleep only advances it, and a thread crowd."""

from __future__ import annotations

import threading
from typing import Any


class FakeClock:
    """A clock for limiters: ``sleep`` records the wait and moves the time on, so nothing really waits.

    :param start: the first reading (a wall-clock-like value for limiters that share state across objects).
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        """The async limiters' sleep: the same record, no waiting (nothing else runs on the loop meanwhile)."""
        self.sleep(seconds)


def acquire_from_threads(limiter: Any, threads: int = 8, each: int = 6) -> list[float]:
    """Start ``threads`` threads at once, each acquiring ``each`` slots; return every wait they reported."""
    barrier = threading.Barrier(threads)
    waited: list[float] = []

    def worker() -> None:
        barrier.wait()
        for _ in range(each):
            waited.append(limiter.acquire())

    crowd = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in crowd:
        thread.start()
    for thread in crowd:
        thread.join()
    return waited


def starts_in_turn(limiters: list[Any], clock: FakeClock, count: int) -> list[float]:
    """Let ``limiters`` (processes or hosts sharing one limit) acquire ``count`` slots in turn; return the starts."""
    starts = []
    for i in range(count):
        limiters[i % len(limiters)].acquire()
        starts.append(clock.now)
    return starts


def assert_never_more_than(limit: int, window_s: float, starts: list[float]) -> None:
    """No ``limit + 1`` of ``starts`` lie within one window."""
    for i in range(len(starts) - limit):
        assert starts[i + limit] - starts[i] >= window_s, f"{limit + 1} requests inside one window"
