"""Benchmark: export 10,000 and 100,000 customers from the emulator at a raised rate limit.

The limit is raised to ``RATE_LIMIT`` requests per ``WINDOW_S`` seconds (600 requests/minute, ten times careCycle's)
and a minute is compressed into that window, so the limit binds and every run spans several windows. Prints, for
each run, the sustained rows per minute as a ratio of the ceiling (rate limit x ``per_page``; goal >= 0.95): a
sliding-window limit lets request ``k`` (``k`` a multiple of the limit) start ``k / limit`` windows after the
first at the earliest, so ``k x per_page / (t_k - t_0)`` (times from the emulator's request log) is at most the
ceiling and is what a long production run sees. Also the 429 count (goal 0) and the peak Python memory of the
export (``tracemalloc``, in a second run with the limit lifted; goal: the 100,000 run within 20 MB of the 10,000
run). The emulator runs in its own process (the ``carecycle-emulator`` CLI), so neither its CPU nor its memory is
counted against the export.

Run with ``make bench`` or ``python -m benchmarks.bench_extract``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

RATE_LIMIT = 40  # requests per window, for the emulator and the hook alike
WINDOW_S = 4.0  # so 600 requests per minute
UNLIMITED = 1_000_000  # the memory runs lift the limit: they measure memory, not pacing
PER_PAGE = 100
CEILING_ROWS_PER_MIN = RATE_LIMIT * PER_PAGE * 60 / WINDOW_S
SIZES = (10_000, 100_000)
GOAL_RATIO = 0.95
GOAL_MEMORY_GROWTH_MB = 20.0
API_KEY = "cc_bench_key"
CONN_ID = "carecycle_bench"


@contextmanager
def emulator(customers: int, workdir: Path) -> Iterator[str]:
    """A ``carecycle-emulator`` subprocess seeded with ``customers``; yields its URL."""
    port_file = workdir / f"port-{customers}"
    cmd = [
        sys.executable,
        "-m",
        "carecycle_emulator.carecycle.cli",
        "--customers",
        str(customers),
        "--rate-limit",
        str(RATE_LIMIT),
        "--rate-window",
        str(WINDOW_S),
        "--api-key",
        API_KEY,
        "--port-file",
        str(port_file),
        "--quiet",
    ]
    proc = subprocess.Popen(cmd)
    try:
        deadline = time.monotonic() + 300
        while not port_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the emulator did not start (exit code {proc.returncode})")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port_file.read_text().strip()}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def admin(url: str, route: str, body: dict[str, Any] | None = None) -> Any:
    """GET (or POST ``body`` to) one of the emulator's ``/_emulator/`` admin routes."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    request = urllib.request.Request(f"{url}/_emulator/{route}", data=data, headers=headers)
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.load(answer)


def sustained_rows_per_min(url: str, since: float) -> tuple[float, int]:
    """Rows per minute (see the module docstring) and 429 answers, from the emulator's log of list requests."""
    log = [
        (datetime.fromisoformat(entry["ts"].replace("Z", "+00:00")).timestamp(), entry["status"])
        for entry in admin(url, "requests")
        if entry["path"] == "/v2/customers"
    ]
    times = sorted(ts for ts, status in log if ts >= since and status == 200)
    k = (len(times) - 1) // RATE_LIMIT * RATE_LIMIT
    return k * PER_PAGE * 60.0 / (times[k] - times[0]), sum(1 for ts, status in log if ts >= since and status == 429)


def warm_up(url: str, customers: int) -> float:
    """Fetch every page once without processing it; return the emulator's own rate in rows per minute.

    A freshly seeded emulator serves its first pass over the data much slower than later ones, which would be
    charged to the operator; this pass takes it, and tells how fast the emulator alone can go.
    """
    import requests

    with requests.Session() as session:
        session.headers["x-api-key"] = API_KEY
        started = time.monotonic()
        for page in range(1, customers // PER_PAGE + 1):
            params = {"page": page, "perPage": PER_PAGE, "includeTestNumbers": "true"}
            session.get(f"{url}/v2/customers", params={**params, "sortBy": "createdAt", "sortDirection": "asc"})
        return customers * 60.0 / (time.monotonic() - started)


def make_export(url: str, customers: int, workdir: Path, requests_per_window: int = RATE_LIMIT, **filters: Any) -> Any:
    """The operator under test, pointed at the emulator at ``url``."""
    from airflow_provider_carecycle.operators.customers import CareCycleExtractCustomersOperator

    os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = json.dumps(
        {"conn_type": "carecycle", "host": url, "password": API_KEY}
    )
    return CareCycleExtractCustomersOperator(
        task_id=f"export_{customers}",
        carecycle_conn_id=CONN_ID,
        hook_params={"requests_per_minute": requests_per_window, "rate_limit_window": WINDOW_S},
        output_path=str(workdir / f"customers-{customers}.jsonl.gz"),
        filters={"include_test_numbers": True, **filters},
        per_page=PER_PAGE,
    )


def run_export(url: str, customers: int, workdir: Path) -> dict[str, Any]:
    """Export every customer twice: at the limit (timed), then with the limit lifted under ``tracemalloc``.

    The emulator first serves every page once (a freshly seeded emulator is slow on its first pass, which would
    be charged to the operator) and tells how fast it is alone; a one-request export warms up what the first run
    would otherwise allocate once (lazy imports, the connection lookup, the HTTP pool), so the memory peaks
    compare the exports and nothing else.
    """
    admin(url, "config", {"rate_limit": UNLIMITED})
    emulator_rate = warm_up(url, customers)
    make_export(url, customers, workdir, UNLIMITED, search="no customer matches this").execute({})
    admin(url, "config", {"rate_limit": RATE_LIMIT})
    time.sleep(WINDOW_S + 1)  # a fresh window
    since = time.time()
    timed = make_export(url, customers, workdir).execute({})
    if timed["count"] != customers:
        raise RuntimeError(f"exported {timed['count']} customers, expected {customers}")
    sustained, answers_429 = sustained_rows_per_min(url, since)
    admin(url, "config", {"rate_limit": UNLIMITED})
    tracemalloc.start()
    try:
        make_export(url, customers, workdir, UNLIMITED).execute({})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return {
        **timed,
        "sustained_rows_per_min": sustained,
        "emulator_rows_per_min": emulator_rate,
        "emulator_429": answers_429,
        "peak_mb": peak / 2**20,
    }


def main() -> dict[str, Any]:
    """Run both exports and print each figure with its ratio to the goal; return the figures."""
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="carecycle-bench-home-"))
    workdir = Path(tempfile.mkdtemp(prefix="carecycle-bench-extract-"))
    results: dict[int, dict[str, Any]] = {}
    print(
        f"bench_extract: ceiling {RATE_LIMIT} requests per {WINDOW_S:g} s window x {PER_PAGE} per page = "
        f"{CEILING_ROWS_PER_MIN:,.0f} rows/min"
    )
    try:
        for customers in SIZES:
            with emulator(customers, workdir) as url:
                result = run_export(url, customers, workdir)
            rows_per_min = result["sustained_rows_per_min"]
            result["ratio"] = rows_per_min / CEILING_ROWS_PER_MIN
            results[customers] = result
            print(
                f"  {customers:>7,} customers: {result['elapsed_s']:.1f} s, {result['requests']:,} requests, "
                f"sustained {rows_per_min:,.0f} rows/min = {result['ratio']:.3f} of the ceiling "
                f"(goal >= {GOAL_RATIO}: {result['ratio'] / GOAL_RATIO:.2f} of goal)"
            )
            print(
                f"  {customers:>7,} customers: the emulator alone (fetch only, no processing) serves "
                f"{result['emulator_rows_per_min']:,.0f} rows/min = "
                f"{result['emulator_rows_per_min'] / CEILING_ROWS_PER_MIN:.2f} of the ceiling"
            )
            print(
                f"  {customers:>7,} customers: 429 answers {result['emulator_429']} "
                f"(hook saw {result['rate_limited']}; goal 0), peak memory {result['peak_mb']:.1f} MB"
            )
        small, large = (results[n] for n in SIZES)
        growth = large["peak_mb"] - small["peak_mb"]
        print(
            f"  peak memory growth {SIZES[0]:,} -> {SIZES[1]:,} customers: {growth:+.1f} MB "
            f"(goal <= {GOAL_MEMORY_GROWTH_MB:.0f} MB: {growth / GOAL_MEMORY_GROWTH_MB:.2f} of the budget)"
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {"runs": results, "memory_growth_mb": growth}


if __name__ == "__main__":
    main()
