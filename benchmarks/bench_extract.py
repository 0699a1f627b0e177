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

The calls mode (``mode="placed"``): an emulator of ``CALLS_CUSTOMERS`` (100,000) customers, ``CALLED`` (10,000) of
them called one to three times on one day (on top of their seeded history), at ``CALLS_RATE_LIMIT`` requests per
``CALLS_WINDOW_S`` seconds (1,200 a minute: the operator's pacing, not the real limit's hours, is measured). Prints
the requests used against the floor (one request per called customer plus the listing's pages), the calls per
request, and the run's time as a ratio of that floor at the limit's rate (goal <= 1.05). Then the peak memory of a
Parquet export of all 100,000 customers, whole records, above the interpreter's (resident set size before the
export, pyarrow not yet imported; goal <= 150 MB).

Run with ``make bench`` or ``python -m benchmarks.bench_extract`` (``python -m benchmarks.bench_extract calls``: the
calls mode only).
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
from datetime import datetime, timedelta, timezone
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
MAX_PER_PAGE_LISTING = 100  # the calls mode lists the called customers 100 to a page
API_KEY = "cc_bench_key"
CONN_ID = "carecycle_bench"


@contextmanager
def emulator(
    customers: int,
    workdir: Path,
    *,
    program: tuple[str, ...] = ("carecycle_emulator.carecycle.cli",),
    rate_limit: int = RATE_LIMIT,
    window_s: float = WINDOW_S,
) -> Iterator[str]:
    """An emulator subprocess seeded with ``customers`` (``python -m <program> <carecycle-emulator options>``);
    yields its URL."""
    port_file = workdir / f"port-{customers}-{'-'.join(program)}"
    cmd = [sys.executable, "-m", *program, "--customers", str(customers), "--rate-limit", str(rate_limit)]
    cmd += ["--rate-window", str(window_s), "--api-key", API_KEY, "--port-file", str(port_file), "--quiet"]
    proc = subprocess.Popen(cmd)
    try:
        deadline = time.monotonic() + 600
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


# -- the calls mode -------------------------------------------------------------------------------------------------

CALLS_CUSTOMERS = 100_000
CALLED = 10_000
CALLS_RATE_LIMIT = 40  # requests per window
CALLS_WINDOW_S = 2.0  # so 1,200 requests a minute
CALL_DAY = datetime(2031, 5, 1, tzinfo=timezone.utc)  # after the seeded history: only the bench's calls are on it
GOAL_CALLS_TIME_RATIO = 1.05
GOAL_PARQUET_MB = 150.0


def serve_called(argv: list[str]) -> int:
    """The emulator process of the calls mode: seeded, ``CALLED`` customers called on ``CALL_DAY``, then served.

    ``python -m benchmarks.bench_extract serve-called <carecycle-emulator options>``.
    """
    import random

    from carecycle_emulator.carecycle.cli import build_parser
    from carecycle_emulator.carecycle.seed import rng_uuid
    from carecycle_emulator.carecycle.server import CareCycleEmulator
    from carecycle_emulator.carecycle.store import iso
    from carecycle_emulator.cli import serve, server_settings

    args = build_parser().parse_args(argv)
    emu = CareCycleEmulator(api_keys=tuple(args.api_keys), **server_settings(args))
    rng = random.Random("bench-calls")
    ids = [row[0] for row in emu.store.db.execute("SELECT id FROM customers WHERE test_customer = 0 ORDER BY seq")]
    placed = 0
    for customer_id in rng.sample(ids, CALLED):
        for _ in range(rng.randint(1, 3)):
            placed += 1
            emu.store.add_call(
                call_id=rng_uuid(rng),
                customer_id=customer_id,
                campaign_id=None,
                created_at=iso(CALL_DAY + timedelta(seconds=rng.randint(0, 86_399), milliseconds=placed % 1000)),
                disposition="answered",
                duration_ms=rng.randint(3_000, 900_000),
                summary="bench",
                success="true",
            )
    return serve(emu, args, lambda: f"{placed} calls placed", "bench emulator")


def run_calls_mode(url: str, workdir: Path) -> dict[str, Any]:
    """Export the calls placed on ``CALL_DAY`` at the limit; return the summary and the figures."""
    from airflow_provider_carecycle.operators.customers import CareCycleExtractCustomerCallsOperator

    os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = json.dumps(
        {"conn_type": "carecycle", "host": url, "password": API_KEY}
    )
    time.sleep(CALLS_WINDOW_S + 1)  # a fresh window
    export = CareCycleExtractCustomerCallsOperator(
        task_id="calls_placed",
        mode="placed",
        since=CALL_DAY,
        until=CALL_DAY + timedelta(days=1),
        carecycle_conn_id=CONN_ID,
        hook_params={"requests_per_minute": CALLS_RATE_LIMIT, "rate_limit_window": CALLS_WINDOW_S},
        output_path=str(workdir / "calls.jsonl.gz"),
        fields=["id", "createdAt", "disposition", "durationMs"],
    )
    started = time.monotonic()
    summary = export.execute({})
    elapsed = time.monotonic() - started
    listing_pages = -(-summary["customers"] // MAX_PER_PAGE_LISTING)
    floor = summary["customers"] + listing_pages
    floor_s = floor * CALLS_WINDOW_S / CALLS_RATE_LIMIT
    return {**summary, "floor": floor, "elapsed": elapsed, "floor_s": floor_s, "time_ratio": elapsed / floor_s}


def run_parquet_memory(url: str, workdir: Path) -> dict[str, float]:
    """Peak RSS of a Parquet export of every customer (whole records), limit lifted, above the RSS before it."""
    from benchmarks._memory import PeakRss

    admin(url, "config", {"rate_limit": UNLIMITED})
    export = make_export(url, CALLS_CUSTOMERS, workdir, UNLIMITED)
    export.output_path = str(workdir / "customers.parquet")
    export.format = "parquet"
    with PeakRss() as peak:
        summary = export.execute({})
    if summary["count"] != CALLS_CUSTOMERS:
        raise RuntimeError(f"exported {summary['count']} customers, expected {CALLS_CUSTOMERS}")
    size_mb = (workdir / "customers.parquet").stat().st_size / 2**20
    return {"rows": summary["count"], "above_mb": peak.peak_mb - peak.before_mb, "file_mb": size_mb}


def main_calls() -> dict[str, Any]:
    """The calls mode and the Parquet memory figure, printed with their ratios to the goals."""
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="carecycle-bench-home-"))
    workdir = Path(tempfile.mkdtemp(prefix="carecycle-bench-calls-"))
    try:
        serve = ("benchmarks.bench_extract", "serve-called")  # seeded, then the day's calls placed
        with emulator(
            CALLS_CUSTOMERS, workdir, program=serve, rate_limit=CALLS_RATE_LIMIT, window_s=CALLS_WINDOW_S
        ) as url:
            calls = run_calls_mode(url, workdir)
            print(
                f"bench_extract calls mode: {CALLED:,} of {CALLS_CUSTOMERS:,} customers called on {CALL_DAY:%Y-%m-%d}, "
                f"limit {CALLS_RATE_LIMIT} requests per {CALLS_WINDOW_S:g} s"
            )
            print(
                f"  {calls['count']:,} calls from {calls['customers']:,} customers in {calls['requests']:,} requests "
                f"(floor {calls['floor']:,}: {calls['requests'] / calls['floor']:.3f} of it), "
                f"{calls['count'] / calls['requests']:.2f} calls per request, "
                f"{calls['missing_customers']} missing, {calls['rate_limited']} answers 429"
            )
            print(
                f"  time {calls['elapsed']:.1f} s; the floor's requests at the limit take {calls['floor_s']:.1f} s: "
                f"{calls['time_ratio']:.3f} of the floor (goal <= {GOAL_CALLS_TIME_RATIO}: "
                f"{calls['time_ratio'] / GOAL_CALLS_TIME_RATIO:.2f} of the goal)"
            )
            print(
                f"  {calls['elapsed'] * 1000 / calls['requests']:.0f} ms a request, one at a time: the limit binds "
                f"(and the floor holds) below {calls['requests'] * 60 / calls['elapsed']:,.0f} requests a minute; "
                "careCycle allows 60"
            )
            memory = run_parquet_memory(url, workdir)
            print(
                f"  Parquet, {memory['rows']:,} whole customers: peak RSS {memory['above_mb']:.1f} MB above the "
                f"interpreter's (goal <= {GOAL_PARQUET_MB:.0f} MB: {memory['above_mb'] / GOAL_PARQUET_MB:.2f} of the "
                f"budget), file {memory['file_mb']:.1f} MB"
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {"calls": calls, "parquet": memory}


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
    if sys.argv[1:2] == ["serve-called"]:
        sys.exit(serve_called(sys.argv[2:]))
    if sys.argv[1:2] != ["calls"]:
        main()
    main_calls()
