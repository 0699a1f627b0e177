from __future__ import annotations

import pytest

from airflow_provider_carecycle.hooks.ratelimit import forget_shared_limiters
from airflow_provider_carecycle.hooks.ratelimit.base import WINDOW_GUARD_S
from airflow_provider_carecycle.hooks.ratelimit.process import RateLimiter, shared_limiter
from tests.hooks.ratelimit.helpers import FakeClock, acquire_from_threads


def test_never_more_than_the_limit_in_any_window():
    clock = FakeClock()
    limiter = RateLimiter(10, 60.0, clock=clock, sleep=clock.sleep)
    starts = []
    for _ in range(35):
        limiter.acquire()
        starts.append(clock.now)
    for i in range(len(starts) - 10):
        assert starts[i + 10] - starts[i] >= 60.0, "11 requests inside one window"
    # steady state runs at the limit: 35 requests need 3 full windows (plus the jitter guard), no more
    assert starts[-1] - starts[0] == pytest.approx(3 * (60.0 + WINDOW_GUARD_S))


def test_the_guard_shrinks_with_a_short_window():
    clock = FakeClock()
    limiter = RateLimiter(5, 2.0, clock=clock, sleep=clock.sleep)
    starts = []
    for _ in range(11):
        limiter.acquire()
        starts.append(clock.now)
    assert starts[-1] - starts[0] == pytest.approx(2 * (2.0 + 0.1))


def test_pause_holds_everyone_back():
    clock = FakeClock()
    limiter = RateLimiter(100, 60.0, clock=clock, sleep=clock.sleep)
    limiter.acquire()
    limiter.pause(7.0)
    assert limiter.acquire() == pytest.approx(7.0)


def test_rate_change_applies_and_bad_rate_is_refused():
    clock = FakeClock()
    limiter = RateLimiter(1, 60.0, clock=clock, sleep=clock.sleep)
    limiter.acquire()
    limiter.set_rate(2)
    assert limiter.acquire() == 0.0
    with pytest.raises(ValueError, match="at least 1"):
        limiter.set_rate(0)


def test_shared_per_url_and_key():
    a = shared_limiter("http://x", "cc_one", 60)
    assert shared_limiter("http://x/", "cc_one", 30) is a
    assert a.limit == 30
    assert shared_limiter("http://x", "cc_two", 60) is not a
    assert shared_limiter("http://y", "cc_one", 60) is not a


def test_forgetting_a_base_url_starts_its_limiters_afresh():
    a, other = shared_limiter("http://z", "cc_one", 60), shared_limiter("http://w", "cc_one", 60)
    forget_shared_limiters("http://z/")
    assert shared_limiter("http://z", "cc_one", 60) is not a
    assert shared_limiter("http://w", "cc_one", 60) is other


def test_thread_safe_under_contention():
    waited = acquire_from_threads(RateLimiter(50, 60.0))
    assert len(waited) == 48 and max(waited) == 0.0  # 48 <= 50: nobody had to wait, nobody was lost


def test_a_claim_in_flight_holds_its_slot_until_its_answer_and_a_window_after_it():
    clock = FakeClock()
    limiter = RateLimiter(1, 60.0, clock=clock, sleep=clock.sleep)
    slot = limiter.claim(30.0)
    clock.now += 70.0  # the request is still in flight a window later: its slot is not free
    clock.now += 5.0
    limiter.settle(slot)  # careCycle answered at 1075: it counted the request at 1075 at the latest
    assert limiter.acquire() == pytest.approx(60.5)


def test_a_claim_never_settled_counts_until_its_hold_then_for_a_window():
    clock = FakeClock()
    limiter = RateLimiter(1, 60.0, clock=clock, sleep=clock.sleep)
    limiter.claim(30.0)  # the thread died before the answer came
    assert limiter.acquire() == pytest.approx(30.0 + 60.5)


def test_holds_and_pauses_are_bounded_by_max_wait():
    clock = FakeClock()
    limiter = RateLimiter(1, 60.0, max_wait_s=100.0, clock=clock, sleep=clock.sleep)
    limiter.claim(10_000.0)
    assert limiter.acquire() == pytest.approx(100.0 + 60.5)
    limiter.pause(10_000.0)
    assert limiter.acquire() == pytest.approx(100.0)
    assert max(clock.sleeps) <= 100.0  # one bounded sleep each, never the hold or pause asked for
