"""Benchmark: export 10,000 and 100,000 customers from the emulator at a raised rate limit.

Prints, for each run, the rows per minute as a ratio of the ceiling (rate limit x ``per_page``; goal >= 0.95), the
429 count (goal 0) and the peak Python memory of the export (``tracemalloc``, in a second, untimed run; goal: the
100,000 run within 20 MB of the 10,000 run). The emulator runs in its own process (the ``carecycle-emulator``
CLI), so neither its CPU nor its memory is counted against the export.

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
from pathlib import Path
from typing import Any

RATE_LIMIT = 6000  # requests per minute, for the emulator and the hook alike
PER_PAGE = 100
CEILING_ROWS_PER_MIN = RATE_LIMIT * PER_PAGE
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
        "airflow_provider_carecycle.emulator.cli",
        "--customers",
        str(customers),
        "--rate-limit",
        str(RATE_LIMIT),
        "--rate-window",
        "60",
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


def emulator_counts(url: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{url}/_emulator/counts", timeout=10) as answer:
        return json.load(answer)


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


def make_export(url: str, customers: int, workdir: Path, **filters: Any) -> Any:
    """The operator under test, pointed at the emulator at ``url``."""
    from airflow_provider_carecycle.operators.customers import CareCycleExtractCustomersOperator

    os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = json.dumps(
        {"conn_type": "carecycle", "host": url, "password": API_KEY}
    )
    return CareCycleExtractCustomersOperator(
        task_id=f"export_{customers}",
        carecycle_conn_id=CONN_ID,
        hook_params={"requests_per_minute": RATE_LIMIT},
        output_path=str(workdir / f"customers-{customers}.jsonl.gz"),
        include_test_numbers=True,
        per_page=PER_PAGE,
        **filters,
    )


def run_export(url: str, customers: int, workdir: Path) -> dict[str, Any]:
    """Export every customer twice: timed, then under ``tracemalloc`` (which slows Python down) for peak memory.

    A one-request export first warms up what the first run would otherwise allocate once (lazy imports, the
    connection lookup, the HTTP connection pool), so the peaks compare the exports and nothing else.
    """
    emulator_rate = warm_up(url, customers)
    make_export(url, customers, workdir, search="no customer matches this").execute({})
    timed = make_export(url, customers, workdir).execute({})
    if timed["count"] != customers:
        raise RuntimeError(f"exported {timed['count']} customers, expected {customers}")
    tracemalloc.start()
    try:
        make_export(url, customers, workdir).execute({})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return {
        **timed,
        "emulator_rows_per_min": emulator_rate,
        "emulator_429": emulator_counts(url)["rate_limited"],
        "peak_mb": peak / 2**20,
    }


def main() -> dict[str, Any]:
    """Run both exports and print each figure with its ratio to the goal; return the figures."""
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="carecycle-bench-home-"))
    workdir = Path(tempfile.mkdtemp(prefix="carecycle-bench-extract-"))
    results: dict[int, dict[str, Any]] = {}
    print(
        f"bench_extract: ceiling {RATE_LIMIT:,} requests/min x {PER_PAGE} per page = {CEILING_ROWS_PER_MIN:,} rows/min"
    )
    try:
        for customers in SIZES:
            with emulator(customers, workdir) as url:
                result = run_export(url, customers, workdir)
            rows_per_min = result["count"] * 60.0 / result["elapsed_s"]
            result["rows_per_min"] = rows_per_min
            result["ratio"] = rows_per_min / CEILING_ROWS_PER_MIN
            results[customers] = result
            print(
                f"  {customers:>7,} customers: {result['elapsed_s']:.1f} s, {result['requests']:,} requests, "
                f"{rows_per_min:,.0f} rows/min = {result['ratio']:.2f} of the ceiling "
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
