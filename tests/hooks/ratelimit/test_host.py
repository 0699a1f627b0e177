"""The host-wide limiter: several limiter objects on one state file behave as one limiter, as processes do.

Each :class:`HostRateLimiter` below stands for a process (its own object, its own file descriptor per call); they
share an injected clock, so nothing sleeps. The real multi-process test is ``test_host_multiprocess.py``.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from airflow_provider_carecycle.hooks.ratelimit import forget_shared_limiters, limiter_for
from airflow_provider_carecycle.hooks.ratelimit import host as rate_limit_host
from airflow_provider_carecycle.hooks.ratelimit.host import (
    HostRateLimiter,
    default_state_dir,
    host_limiter,
    state_dir,
    state_file,
)
from tests.hooks.ratelimit.helpers import FakeClock, acquire_from_threads, assert_never_more_than, starts_in_turn


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_700_000_000.0)


def processes(tmp_path, clock, n, limit, window_s=60.0, **kwargs):
    path = tmp_path / "key.window"
    return [HostRateLimiter(path, limit, window_s, clock=clock, sleep=clock.sleep, **kwargs) for _ in range(n)]


def test_processes_on_one_host_share_the_window(tmp_path, clock):
    starts = starts_in_turn(processes(tmp_path, clock, 4, 10), clock, 40)
    assert_never_more_than(10, 60.0, starts)
    assert starts[:10] == [starts[0]] * 10  # the first window's requests go at once, whoever sends them
    assert starts[-1] - starts[0] == pytest.approx(3 * 60.5)  # and then at the limit, not slower


def test_a_pause_holds_every_process_back(tmp_path, clock):
    a, b = processes(tmp_path, clock, 2, 100)
    a.acquire()
    a.pause(7.0)
    b.pause(1.0)  # a shorter pause does not shorten a longer one
    assert b.acquire() == pytest.approx(7.0)
    assert a.acquire() == 0.0


def test_a_429_cuts_the_whole_hosts_allowance_and_it_recovers(tmp_path, clock):
    a, b = processes(tmp_path, clock, 2, 60)
    a.on_rate_limited(5.0)
    assert b.allowed() == 42
    b.on_rate_limited(5.0)  # the same congestion: in flight before the cut
    assert a.allowed() == 42
    clock.now += 5.0 + 60.0
    assert b.allowed() == 45
    for _ in range(45):
        b.acquire()
    assert clock.sleeps == [pytest.approx(60.5 / 60)] * 44  # no burst while cut (see below)
    assert a.try_acquire() > 0  # the 46th of the window waits although the ceiling is 60


def test_a_cut_host_sends_no_bursts(tmp_path, clock):
    """Once other hosts' 429s cut the host, its requests start at most at the ceiling's pace (one every window /
    ceiling), whichever process sends them: a burst into a window the other hosts filled draws one 429 per request
    in flight, paced requests meet it about one at a time."""
    a, b = processes(tmp_path, clock, 2, 60)
    assert starts_in_turn([a, b], clock, 10) == [clock.now] * 10  # never cut: the window's requests go at once
    clock.now += 61.0
    a.on_rate_limited(None)
    assert a.allowed() == 42
    starts = starts_in_turn([a, b], clock, 43)
    gaps = [later - earlier for earlier, later in zip(starts[:-1], starts[1:], strict=True)]
    assert gaps[:41] == [pytest.approx(60.5 / 60)] * 41  # the allowance, at the ceiling's pace
    assert starts[42] - starts[0] == pytest.approx(60.5)  # and no more than the allowance per window
    assert_never_more_than(42, 60.0, starts)


def test_without_adaptive_pacing_a_429_only_pauses(tmp_path, clock):
    (limiter,) = processes(tmp_path, clock, 1, 60, adaptive=False)
    limiter.on_rate_limited(5.0)
    assert limiter.allowed() == 60


def test_threads_of_one_process_share_it_safely(tmp_path):
    limiter = HostRateLimiter(tmp_path / "key.window", 50, 60.0)
    waited = acquire_from_threads(limiter)
    assert len(waited) == 48 and max(waited) == 0.0
    assert limiter.try_acquire() == 0.0 and limiter.try_acquire() == 0.0  # 49th and 50th: all 48 were recorded
    assert limiter.try_acquire() > 0


def test_old_requests_leave_the_window_and_a_clock_set_back_keeps_them_for_a_window(tmp_path, clock):
    (limiter,) = processes(tmp_path, clock, 1, 2)
    limiter.acquire()
    limiter.acquire()
    clock.now += 60.5
    assert limiter.acquire() == 0.0  # a window later the first two left it
    limiter.acquire()
    clock.now -= 3600  # the wall clock was set back an hour: the window's times are now in the future
    assert limiter.acquire() == pytest.approx(60.5)  # they count as made now (dropping them would send a burst)


def test_the_state_file_holds_no_key_and_is_private(tmp_path):
    path = state_file(tmp_path, "https://api.carecycle.ai/", "cc_secret_key", 60.0)
    assert path == state_file(tmp_path, "https://api.carecycle.ai", "cc_secret_key", 60.0)
    assert path != state_file(tmp_path, "https://api.carecycle.ai", "cc_other_key", 60.0)
    assert path != state_file(tmp_path, "https://api.carecycle.ai", "cc_secret_key", 2.0)
    HostRateLimiter(path, 5).acquire()
    assert "cc_secret" not in path.name and b"cc_secret" not in path.read_bytes()
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_damaged_state_file_is_a_clear_error(tmp_path):
    path = tmp_path / "key.window"
    path.write_bytes(b"not a state file")
    with pytest.raises(ValueError, match=r"key\.window.*was not written by this provider.*delete it"):
        HostRateLimiter(path, 5).acquire()
    path.write_bytes(b"ccrl\x00\x00\x00\x01" + b"\x00" * 32 + b"\xff\xff\x00\x00")  # claims 65535 times, has none
    with pytest.raises(ValueError, match="damaged"):
        HostRateLimiter(path, 5).acquire()


def test_a_half_written_tail_is_ignored(tmp_path, clock):
    (limiter,) = processes(tmp_path, clock, 1, 5)
    limiter.acquire()
    with open(limiter.path, "ab") as f:
        f.write(b"\x01\x02\x03")  # a write cut short after a longer state: the count in the header wins
    assert limiter.acquire() == 0.0


def test_the_default_folder_is_per_user_and_private(tmp_path, monkeypatch):
    monkeypatch.setattr(rate_limit_host.tempfile, "gettempdir", lambda: str(tmp_path))
    folder = state_dir(None)
    assert folder == default_state_dir() == tmp_path / f"carecycle-rate-limits-{os.getuid()}"
    assert folder.stat().st_mode & 0o777 == 0o700
    folder.chmod(0o777)  # someone opened it (or made it) for everybody: refuse rather than share a budget file
    with pytest.raises(ValueError, match="open to others.*rate_limit_dir"):
        state_dir("", conn_id="cc")


def test_a_configured_folder_is_created_and_must_be_a_folder(tmp_path):
    assert state_dir(str(tmp_path / "a" / "b")).is_dir()
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match=r"Airflow connection 'cc': rate-limit folder .*file' is not a folder"):
        state_dir(str(tmp_path / "file"), conn_id="cc")
    with pytest.raises(ValueError, match="'rate_limit_dir' must be a folder path"):
        state_dir(5, conn_id="cc")  # type: ignore[arg-type]


def test_hooks_of_a_process_get_one_limiter_per_url_key_and_folder(tmp_path):
    a = host_limiter("http://x", "cc_one", 60, directory=str(tmp_path))
    assert host_limiter("http://x/", "cc_one", 30, directory=str(tmp_path)) is a and a.limit == 30
    assert host_limiter("http://x", "cc_two", 60, directory=str(tmp_path)) is not a
    assert host_limiter("http://x", "cc_one", 60, directory=str(tmp_path / "other")) is not a
    assert limiter_for("http://x", "cc_one", 60, directory=str(tmp_path), backend="host") is a


def test_forgetting_a_base_url_empties_its_state(tmp_path):
    a = host_limiter("http://forget.me", "cc_one", 1, directory=str(tmp_path))
    other = host_limiter("http://keep.me", "cc_one", 1, directory=str(tmp_path))
    a.acquire()
    other.acquire()
    forget_shared_limiters("http://forget.me/")
    fresh = host_limiter("http://forget.me", "cc_one", 1, directory=str(tmp_path))
    assert fresh is not a and fresh.try_acquire() == 0.0
    assert host_limiter("http://keep.me", "cc_one", 1, directory=str(tmp_path)) is other
    assert other.try_acquire() > 0


def test_an_unknown_backend_is_a_clear_error():
    with pytest.raises(ValueError, match=r"Airflow connection 'cc': extra 'rate_limit_backend' must be 'host' or a"):
        limiter_for("http://x", "cc_one", 60, backend="memcached://x", conn_id="cc")


def test_a_forked_child_does_not_inherit_a_held_thread_lock(tmp_path):
    limiter = HostRateLimiter(tmp_path / "key.window", 5)
    with limiter._lock:  # a parent thread is inside the limiter when the worker forks
        pid = os.fork()
        if pid == 0:  # the child must not wait for a lock no thread of it will release
            os._exit(0 if limiter.try_acquire() == 0.0 else 1)
    for _ in range(1000):  # up to 10 s for the child (it hangs forever if it inherited the held lock)
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.01)  # waiting for the child, not timing a behaviour
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the forked child deadlocked on the parent's lock")
    assert os.waitstatus_to_exitcode(status) == 0
    assert limiter.try_acquire() == 0.0
    assert HostRateLimiter(limiter.path, 2).try_acquire() > 0  # the child's request and the parent's are recorded


def test_a_claim_in_flight_counts_for_every_process_until_it_is_settled(tmp_path, clock):
    a, b = processes(tmp_path, clock, 2, 2)
    slot = a.claim(30.0)
    b.acquire()
    clock.now += 20.0  # a's request is in flight: b's process cannot take its slot
    assert b.try_acquire() > 0
    a.settle(slot)  # the answer arrived at +20: the request counts from here
    clock.now += 60.5 - 20.0  # b's request (at +0) left the window, a's has 20 s to go
    assert b.acquire() == 0.0
    assert b.acquire() == pytest.approx(20.0)


def test_a_claim_of_a_killed_process_frees_after_its_hold_and_a_window(tmp_path, clock):
    killed, survivor = processes(tmp_path, clock, 2, 1)
    killed.claim(30.0)  # kill -9 before the answer: no settle ever comes
    assert survivor.acquire() == pytest.approx(30.0 + 60.5)


def test_a_hold_longer_than_max_wait_is_cut_to_it(tmp_path, clock):
    (limiter,) = processes(tmp_path, clock, 1, 1, max_wait_s=90.0)
    limiter.claim(3600.0)
    assert limiter.acquire() == pytest.approx(90.0 + 60.5)
