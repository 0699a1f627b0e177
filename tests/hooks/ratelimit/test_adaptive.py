"""Adaptive pacing (AIMD): the allowance's arithmetic, and a deterministic simulation of N hosts sharing one key.

The simulation runs real :class:`HostRateLimiter` objects (one state folder per host, so they cannot see each
other) on an injected clock against a simulated server with the emulator's per-key sliding window, and prints the
combined rate as a share of the key's ceiling and the share of 429 answers. Those figures are in
``docs/rate-limits-and-errors.md``; run ``pytest -s tests/hooks/ratelimit/test_adaptive.py`` to see them.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_carecycle.hooks.ratelimit.adaptive import BETA, INCREASE_RATIO, Aimd
from airflow_provider_carecycle.hooks.ratelimit.base import Slot
from airflow_provider_carecycle.hooks.ratelimit.host import HostRateLimiter


def test_a_fresh_client_may_use_its_whole_rate():
    assert Aimd().allowed(60, 60.0, now=0.0) == 60


def test_a_cut_is_multiplicative_and_recovery_additive_after_each_quiet_window():
    aimd = Aimd()
    assert aimd.cut(60, 60.0, now=100.0, retry_after=5.0)
    assert aimd.allowed(60, 60.0, now=100.0) == math.floor(60 * BETA) == 42
    # the quiet window starts when the API's retryAfter is over: the cut allowance must first be tried
    assert aimd.allowed(60, 60.0, now=164.9) == 42
    assert aimd.allowed(60, 60.0, now=165.0) == 42 + 3  # + 5 % of 60
    assert aimd.allowed(60, 60.0, now=105.0 + 4 * 60) == 42 + 4 * 3
    assert aimd.allowed(60, 60.0, now=100.0 + 60 * 60) == 60  # back at the ceiling, and no longer cut
    assert math.isinf(aimd.base)


def test_429s_within_retry_after_of_a_cut_are_the_same_congestion():
    aimd = Aimd()
    assert aimd.cut(60, 60.0, now=0.0, retry_after=10.0)
    assert not aimd.cut(60, 60.0, now=9.9, retry_after=10.0)  # requests that were already in flight
    assert aimd.allowed(60, 60.0, now=9.9) == 42
    assert aimd.cut(60, 60.0, now=10.0, retry_after=10.0)
    assert aimd.allowed(60, 60.0, now=10.0) == math.floor(42 * BETA)


def test_the_allowance_never_drops_below_one_request_and_always_recovers_by_at_least_one():
    aimd = Aimd()
    for i in range(30):
        aimd.cut(3, 1.0, now=i * 0.5, retry_after=None)
    assert aimd.allowed(3, 1.0, now=14.5) == 1
    hold_over = 14.5 + 1.0 / 3  # the hold after a cut without retryAfter: one request's share of the window
    assert aimd.allowed(3, 1.0, now=hold_over + 1.0) == 2  # + max(1, 5 % of 3) per quiet window
    assert aimd.allowed(3, 1.0, now=hold_over + 2.0) == 3


# -- the simulation ----------------------------------------------------------------------------------------------


class SimClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:  # the simulation never blocks: it schedules instead
        raise AssertionError("the simulation must not sleep")


class SlidingWindowServer:
    """The emulator's per-key limit: at most ``limit`` accepted requests in any ``window_s``; 429s cost nothing."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit, self.window_s = limit, window_s
        self.hits: deque[float] = deque()

    def hit(self, now: float) -> float | None:
        while self.hits and self.hits[0] <= now - self.window_s:
            self.hits.popleft()
        if len(self.hits) < self.limit:
            self.hits.append(now)
            return None
        return float(max(1, math.ceil(self.hits[0] + self.window_s - now)))


@dataclass
class Figures:
    rate_ratio: float  # accepted requests per window over the whole run, / the key's limit
    share_429: float  # 429 answers / requests sent, whole run
    start_429: float  # 429 answers / requests sent in the first 5 windows (the start-up congestion)
    first_quiet_window: int  # the first window (0-based) without a 429: the start-up congestion is over


def simulate(
    tmp_path: Path,
    hosts: int,
    *,
    limit: int = 60,
    window_s: float = 60.0,
    share: int | None = None,
    windows: int = 40,
    workers: int = 2,
    rtt_s: float = 0.2,
) -> Figures:
    """Run ``hosts`` hosts, each with ``workers`` sequential senders, for ``windows`` windows; return the figures.

    Each sender does what :class:`~airflow_provider_carecycle.hooks._http.HttpSender` does: claim a slot, send (the
    request reaches the server ``rtt_s / 2`` later), settle the slot when the answer arrives (``rtt_s`` after the
    claim), and on a 429 report it (``on_rate_limited``), pause the limiter for ``retryAfter`` and retry after it.
    Claims, arrivals and answers are events of their own, in time order, so the shared clock never runs backwards.
    """
    clock = SimClock()
    start = clock.now
    server = SlidingWindowServer(limit, window_s)
    limiters = []
    for h in range(hosts):
        folder = tmp_path / f"host-{h}"
        folder.mkdir()
        limiters.append(
            HostRateLimiter(folder / "key.window", share or limit, window_s, clock=clock, sleep=clock.sleep)
        )
    # (time, sequence, host, what, claim): what is "claim" (a sender is ready), "arrive" or "answer"
    events: list[tuple[float, int, int, str, Any]] = []
    seq = itertools.count()
    for h in range(hosts):
        for _ in range(workers):
            heapq.heappush(events, (start, next(seq), h, "claim", None))
    end = start + windows * window_s
    accepted: list[float] = []
    rejected: list[float] = []
    while events:
        now, _, h, what, claim = heapq.heappop(events)
        clock.now = now
        if what == "claim":
            if now >= end:
                continue
            delay, token = limiters[h]._try_claim(30.0)
            if token is None:
                heapq.heappush(events, (now + delay, next(seq), h, "claim", None))
            else:
                heapq.heappush(events, (now + rtt_s / 2, next(seq), h, "arrive", (now, token)))
        elif what == "arrive":
            sent_at, token = claim
            heapq.heappush(events, (sent_at + rtt_s, next(seq), h, "answer", (sent_at, token, server.hit(now))))
        else:
            sent_at, token, retry_after = claim
            limiters[h].settle(Slot(0.0, token))
            if retry_after is None:
                accepted.append(sent_at)
                limiters[h].on_success()
                heapq.heappush(events, (now, next(seq), h, "claim", None))
            else:
                rejected.append(sent_at)
                limiters[h].on_rate_limited(retry_after)
                limiters[h].pause(retry_after)
                heapq.heappush(events, (now + retry_after, next(seq), h, "claim", None))
    early = start + 5 * window_s
    early_sent = sum(1 for t in accepted + rejected if t < early)
    windows_with_429 = {int((t - start) // window_s) for t in rejected}
    return Figures(
        rate_ratio=len(accepted) / windows / limit,
        share_429=len(rejected) / (len(accepted) + len(rejected)),
        start_429=sum(1 for t in rejected if t < early) / early_sent,
        first_quiet_window=min(set(range(windows + 1)) - windows_with_429),
    )


@pytest.mark.parametrize(
    ("hosts", "min_ratio", "max_429"), [(1, 0.98, 0.0), (2, 0.85, 0.05), (4, 0.85, 0.05), (8, 0.85, 0.10)]
)
def test_hosts_sharing_a_key_converge_under_its_limit(tmp_path, capsys, hosts, min_ratio, max_429):
    figures = simulate(tmp_path, hosts)
    with capsys.disabled():
        print(
            f"\nAIMD, {hosts} host(s), each allowed the whole key (60 a minute), 40 windows: combined rate / ceiling "
            f"{figures.rate_ratio:.3f}, 429s / requests {figures.share_429:.2%} (first 5 windows "
            f"{figures.start_429:.1%}), first window without a 429: {figures.first_quiet_window}"
        )
    assert figures.rate_ratio >= min_ratio
    assert figures.share_429 <= max_429


def test_hosts_that_split_the_key_never_see_a_429(tmp_path):
    figures = simulate(tmp_path, 4, share=15)
    assert figures.share_429 == 0.0
    assert figures.rate_ratio >= 0.95


def test_increase_ratio_is_a_small_share():
    assert 0 < INCREASE_RATIO <= 0.1 and 0.5 <= BETA < 1
