"""The factory's choice of backend, and the ``process`` backend it gives for ``rate_limit_backend = "process"``: the
in-process limiter, on purpose.

One process only, for tests and single-task deployments, and for measuring what the host-wide limiter replaced
(``make test-distributed`` runs it side by side with the other backends). It keeps no state outside the process.
"""

from __future__ import annotations

import multiprocessing

import pytest

from airflow_provider_carecycle.hooks.carecycle import CareCycleHook
from airflow_provider_carecycle.hooks.ratelimit import forget_shared_limiters, limiter_for
from airflow_provider_carecycle.hooks.ratelimit.factory import BACKENDS
from airflow_provider_carecycle.hooks.ratelimit.host import HostRateLimiter
from airflow_provider_carecycle.hooks.ratelimit.process import RateLimiter


def test_process_backend_is_the_in_process_limiter_shared_within_the_process(tmp_path):
    forget_shared_limiters("http://proc.test")
    limiter = limiter_for("http://proc.test", "cc_one", 60, 6.0, backend="process", directory=str(tmp_path))
    assert isinstance(limiter, RateLimiter) and not isinstance(limiter, HostRateLimiter)
    assert (limiter.limit, limiter.window_s) == (60, 6.0)
    # every hook of the process on the same URL, key and window shares it; the latest rate wins
    same = limiter_for("http://proc.test/", "cc_one", 30, 6.0, backend=" process ")
    assert same is limiter and limiter.limit == 30
    assert limiter_for("http://proc.test", "cc_two", 60, 6.0, backend="process") is not limiter
    assert limiter_for("http://proc.test", "cc_one", 60, 6.0) is not limiter  # the default stays host-wide
    # nothing is written outside the process: no state file in the folder the host-wide limiter would use
    assert list(tmp_path.iterdir()) == []


def _acquire(limiter: RateLimiter, results: multiprocessing.Queue) -> None:
    results.put(limiter.acquire())


def test_process_backend_is_not_shared_with_other_processes():
    """A process's requests are not seen by another process's limiter (why it is for one process only): the child
    takes the window's only slot, and the parent still gets it at once (a shared limiter would make it wait 30 s)."""
    forget_shared_limiters("http://proc.test")
    limiter = limiter_for("http://proc.test", "cc_fork", 1, 30.0, backend="process")
    context = multiprocessing.get_context("fork")  # as Celery's prefork pool and Airflow's task supervisor do
    results = context.Queue()
    child = context.Process(target=_acquire, args=(limiter, results))
    child.start()
    assert results.get(timeout=30) == 0.0
    child.join(timeout=30)
    assert child.exitcode == 0
    assert limiter.acquire() == 0.0


def test_a_hook_with_the_process_backend(carecycle_connection):
    conn_id = carecycle_connection("cc_proc", host="http://127.0.0.1:9", extra={"rate_limit_backend": "process"})
    forget_shared_limiters("http://127.0.0.1:9")
    limiter = CareCycleHook(conn_id, requests_per_minute=20, rate_limit_window=2.0).limiter
    assert isinstance(limiter, RateLimiter) and (limiter.limit, limiter.window_s) == (20, 2.0)


def test_an_unknown_backend_names_the_process_backend_too():
    with pytest.raises(ValueError, match=r"extra 'rate_limit_backend' must be .* or 'process' \(one process only"):
        limiter_for("http://proc.test", "cc_one", 60, backend="thread", conn_id="cc")


def test_every_backend_value_of_the_docs_has_a_builder_and_nothing_else_does():
    assert set(BACKENDS) == {"host", "process", "redis://", "rediss://", "unix://"}
    for written in ("HOST", "host://", "Process", "memcached://x"):
        with pytest.raises(ValueError, match="'rate_limit_backend' must be 'host' or a redis://"):
            limiter_for("http://proc.test", "cc_one", 60, backend=written, conn_id="cc")
