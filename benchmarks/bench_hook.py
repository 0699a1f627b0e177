"""Hook benchmark: paging through customers at the rate limit, alone and with two hooks sharing one key.

A minute is compressed into ``WINDOW_S`` seconds (``RATE`` requests per window = 600 requests/minute, ten times
careCycle's 60/minute) so the run spans several windows in seconds. The emulator enforces the same sliding window
and answers 429 beyond it.

1. **One hook**: ``iter_customers`` over ``CUSTOMERS`` customers, ``PER_PAGE`` per page (about four windows of
   requests). Figure: the sustained request rate (see :func:`sustained_rate`; times from the emulator's request
   log) as a ratio of the limit (goal >= 0.95), and the 429 count (goal 0).
2. **Two hooks, one key**: two threads, each its own hook on the same connection, page through at once. The
   process-wide limiter must keep their sum under the limit: 429 count (goal 0) and the combined sustained rate.

Run with ``python -m benchmarks.bench_hook`` (or ``make bench``).
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from datetime import datetime
from typing import Any

from airflow_provider_carecycle.hooks.carecycle import CareCycleHook
from carecycle_emulator import CareCycleEmulator

API_KEY = "cc_bench_key"
CUSTOMERS = 5_000
PER_PAGE = 20  # small pages, so the run spans several windows
RATE = 60  # requests per window
WINDOW_S = 6.0  # so RATE per WINDOW_S = 600 requests per minute
GOAL_RATIO = 0.95


def sustained_rate(times: list[float]) -> float:
    """Requests per window, as a long run sees it.

    A sliding-window limit lets request ``k`` (``k`` a multiple of the limit) start ``k / limit`` windows after the
    first at the earliest, so ``k / (t_k - t_0)`` x window is at most the limit; ``k`` is the largest such index.
    """
    times = sorted(times)
    k = (len(times) - 1) // RATE * RATE
    if k == 0:
        raise SystemExit(f"{len(times)} requests do not span a window of {RATE}: raise CUSTOMERS")
    return k / (times[k] - times[0]) * WINDOW_S


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def page_through(results: dict[str, Any], key: str) -> None:
    """Read every customer with a fresh hook; store the count and the hook's stats under ``key``."""
    hook = CareCycleHook(requests_per_minute=RATE, rate_limit_window=WINDOW_S, max_retries=10)
    count = sum(1 for _ in hook.iter_customers(per_page=PER_PAGE))
    results[key] = {"count": count, "requests": hook.stats.requests, "rate_limited": hook.stats.rate_limited}


def run(emu: CareCycleEmulator, hooks: int) -> dict[str, Any]:
    """Page through every customer with ``hooks`` concurrent hooks; return the figures from the request log."""
    emu.reset(customers=CUSTOMERS, campaigns=1, seed=0)
    listed = len(emu.query_customers({}))  # what GET /v2/customers lists (the seed marks a few as deleted)
    time.sleep(WINDOW_S * 1.1)  # let the previous run's window drain on both sides
    results: dict[str, Any] = {}
    threads = [threading.Thread(target=page_through, args=(results, f"hook-{i}")) for i in range(hooks)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    log = [r for r in emu.request_log() if r["path"] == "/v2/customers"]
    return {
        "elapsed_s": elapsed,
        "requests": len(log),
        "answers_429": sum(1 for r in log if r["status"] == 429),
        "rate": sustained_rate([_epoch(r["ts"]) for r in log if r["status"] != 429]),
        "complete": all(r["count"] == listed for r in results.values()) and len(results) == hooks,
    }


def main() -> None:
    """Run both scenarios and print each figure with its ratio to the goal."""
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="carecycle-bench-home-"))
    with CareCycleEmulator(api_keys=(API_KEY,), rate_limit=RATE, rate_window_s=WINDOW_S, customers=0) as emu:
        os.environ["AIRFLOW_CONN_CARECYCLE_DEFAULT"] = json.dumps(
            {"conn_type": "carecycle", "host": emu.url, "password": API_KEY}
        )
        print(f"== hook: {CUSTOMERS:,} customers, {PER_PAGE} per page, limit {RATE} requests per {WINDOW_S:g} s")
        for hooks, label in ((1, "one hook"), (2, "two hooks, one key")):
            figures = run(emu, hooks)
            ratio = figures["rate"] / RATE
            if not figures["complete"]:
                raise SystemExit(f"{label}: a hook did not read every listed customer")
            print(
                f"{label}: {figures['requests']} requests in {figures['elapsed_s']:.1f} s; sustained "
                f"{figures['rate']:.1f} requests/window = {ratio:.3f} of the limit (goal >= {GOAL_RATIO}: "
                f"{ratio / GOAL_RATIO:.2f}x goal); 429 answers {figures['answers_429']} (goal 0)"
            )


if __name__ == "__main__":
    main()
