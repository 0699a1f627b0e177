"""Four real processes on one key, against the emulator's per-key limit: the host-wide limiter keeps them within it.

Each process has its own hook (and would have its own in-process limiter, as Airflow task processes do); the
emulator enforces the key's sliding window and answers 429 beyond it. The window is compressed (20 requests per
2 s) as the benchmarks do. Before the host-wide limiter, four processes on one key collected about 50 % 429s.
"""

from __future__ import annotations

import multiprocessing
import os
from typing import Any

from airflow_provider_carecycle.hooks.carecycle import CareCycleHook

PROCESSES = 4
REQUESTS_EACH = 12
RATE = 20
WINDOW_S = 2.0


def send_requests(conn_json: str, start: Any, results: Any) -> None:
    """One task process: a fresh hook sends ``REQUESTS_EACH`` requests once all are ready; report what it saw."""
    os.environ["AIRFLOW_CONN_CARECYCLE_DEFAULT"] = conn_json
    hook = CareCycleHook(requests_per_minute=RATE, rate_limit_window=WINDOW_S, max_retries=10, retry_backoff=0.05)
    hook.limiter  # noqa: B018 -- read the connection before the start, so all four send at once
    start.wait()
    served = 0
    for _ in range(REQUESTS_EACH):
        served += isinstance(hook.request("GET", "/v2/campaigns", params={"perPage": 1}), dict)
    results.put({"pid": os.getpid(), "served": served, "rate_limited": hook.stats.rate_limited})


def test_processes_sharing_a_key_on_one_host_never_see_a_429(carecycle_emulator, tmp_path):
    from carecycle_emulator.pytest_plugin import carecycle_connection_json

    emu = carecycle_emulator
    emu.configure(rate_limit=RATE, rate_window_s=WINDOW_S)
    conn_json = carecycle_connection_json(emu, requests_per_minute=RATE, rate_limit_dir=str(tmp_path))
    context = multiprocessing.get_context("fork")  # as Celery's prefork pool and Airflow's task supervisor do
    results, start = context.Queue(), context.Barrier(PROCESSES)
    workers = [context.Process(target=send_requests, args=(conn_json, start, results)) for _ in range(PROCESSES)]
    for worker in workers:
        worker.start()
    reports = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    log = [r for r in emu.request_log() if r["path"] == "/v2/campaigns"]
    assert len({r["pid"] for r in reports}) == PROCESSES  # four processes, not four threads
    assert sum(1 for r in log if r["status"] == 429) == 0
    assert [r["rate_limited"] for r in reports] == [0] * PROCESSES
    assert [r["served"] for r in reports] == [REQUESTS_EACH] * PROCESSES
    assert len(log) == PROCESSES * REQUESTS_EACH  # every request was served once: none lost, none repeated
