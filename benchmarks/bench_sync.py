"""Stateful sync benchmark: what a daily feed costs when most leads did not change (issue 13).

Run with ``python -m benchmarks.bench_sync`` (or ``make bench``). Each figure is printed with its ratio to the goal.

1. **100,000 leads**: a feed of 100,000 leads is uploaded once with a ``sync_state_path`` (against an emulator with
   no rate limit, so this seeding run takes seconds instead of 500 requests' worth of the key's budget). Then 1 %
   of the leads change and 0.5 % are new, and the feed runs again against the emulator at careCycle's real limit
   (60 requests per 60 s window, the hook at its default). Printed: the upload requests the second run sent (goal:
   at most 8, against 500 without a ledger), its wall time, and the **reconciliation rate**: source leads checked
   per minute, as a ratio of the API ceiling of 12,000 leads a minute (goal: at least 50x).
2. **1,000,000 leads, 1 % changed**: the ledger is seeded by a run against a stub that acknowledges every batch at
   once (the emulator would take 5,000 requests), then the changed feed runs against the emulator at the real limit
   in a fresh worker process: the whole run (read the JSON Lines file, validate, diff, upload, save the ledger) in
   at most 90 s, peak RSS (sampled every 10 ms from ``/proc/self/status``; Linux) at most 300 MB, Airflow included.

Every run is ``CareCycleUploadLeadsOperator.execute`` in its own process, reading a ``.jsonl`` file. Wall times
are printed with the process's CPU time: on a machine shared with other work, the CPU time is what the run would
take on its own (the work is one thread but for the uploads).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from carecycle_emulator import CareCycleEmulator
from carecycle_emulator.phones import us_phone

API_KEY = "cc_bench_key"
BATCH = 200
CEILING_PER_MIN = 60 * BATCH  # careCycle: 60 requests a minute, 200 leads each
SMALL = 100_000
LARGE = 1_000_000
CHANGED = 0.01
NEW = 0.005
REQUESTS_GOAL = 8
RATE_GOAL_X = 50.0
LARGE_TIME_GOAL_S = 90.0
LARGE_MEMORY_GOAL_MB = 300.0


def lead(i: int, version: int = 1) -> dict[str, Any]:
    """A valid CRM-style lead; ``version`` > 1 changes its first name."""
    return {
        "externalId": f"sync-{i}",
        "phoneNumber": us_phone(i),
        "postalCode": "33101",
        "firstName": f"First{i}" if version == 1 else f"Changed{i}v{version}",
        "lastName": "Bench",
        "dateOfBirth": "06-15-1950",
    }


def write_feed(path: Path, size: int, *, changed: float = 0.0, new: float = 0.0) -> int:
    """Write a feed of ``size`` leads (every ``1/changed``-th one changed) plus ``size * new`` new ones."""
    step = round(1 / changed) if changed else 0
    extra = round(size * new)
    with path.open("w") as out:
        for start in range(0, size + extra, 10_000):
            out.writelines(
                json.dumps(lead(i, 2 if step and i < size and i % step == 0 else 1)) + "\n"
                for i in range(start, min(start + 10_000, size + extra))
            )
    return size + extra


CHILD = """
import json, sys, time
from airflow_provider_carecycle.operators.leads import CareCycleUploadLeadsOperator
from benchmarks._memory import PeakRss

source, ledger, mode, rpm = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
op = CareCycleUploadLeadsOperator(
    task_id="bench", source_path=source, sync_state_path=ledger, max_in_flight=4,
    hook_params={"requests_per_minute": rpm},
)
hook = op.hook
if mode == "stub":  # acknowledge every batch at once, as careCycle would, without a request
    hook.upload_lead_texts = lambda texts: {"succeeded": len(texts), "failed": 0, "errors": []}
hook.limiter  # connect before the baseline
with PeakRss() as memory:
    started, cpu = time.monotonic(), time.process_time()
    result = op.execute({})
    elapsed, cpu = time.monotonic() - started, time.process_time() - cpu
print(json.dumps({**result, "rss_mb": memory.peak_mb, "before_mb": memory.before_mb, "wall_s": elapsed,
                  "cpu_s": cpu, "requests": hook.stats.requests}))
"""


def run_feed(source: Path, ledger: Path, *, mode: str = "real", requests_per_minute: int = 60) -> dict[str, Any]:
    """One run of the feed in a fresh worker process; its summary, wall time, peak RSS and request count.

    Each run gets its own host-wide limiter state (``rate_limit_dir``): the runs stand for days a day apart, and
    the seeding run's 500 requests would otherwise still fill the key's 60 s window when the next "day" starts.
    """
    connection = json.loads(os.environ["AIRFLOW_CONN_CARECYCLE_DEFAULT"])
    connection["extra"] = {"rate_limit_dir": str(ledger.parent / f"rate-limit-{source.stem}")}
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(source), str(ledger), mode, str(requests_per_minute)],
        env={**os.environ, "AIRFLOW_CONN_CARECYCLE_DEFAULT": json.dumps(connection)},
        cwd=Path(__file__).resolve().parent.parent,  # the worker imports benchmarks._memory
        capture_output=True,
        text=True,
        check=False,
    )
    if child.returncode:
        raise SystemExit(f"bench run failed:\n{child.stderr[-3000:]}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def upload_requests(emu: CareCycleEmulator) -> int:
    return sum(1 for e in emu.request_log() if e["path"] == "/v2/leads/upload")


def measured_run(emu: CareCycleEmulator, source: Path, ledger: Path) -> tuple[dict[str, Any], int]:
    """The feed at careCycle's real rate limit: its result and the upload requests it sent."""
    emu.configure(rate_limit=60, rate_window_s=60.0)
    before = upload_requests(emu)
    result = run_feed(source, ledger)
    return result, upload_requests(emu) - before


def bench_small(emu: CareCycleEmulator, workdir: Path) -> None:
    ledger = workdir / "ledger-100k"
    first, second = workdir / "feed-100k-day1.jsonl", workdir / "feed-100k-day2.jsonl"
    write_feed(first, SMALL)
    total = write_feed(second, SMALL, changed=CHANGED, new=NEW)
    emu.configure(rate_limit=0)
    seed = run_feed(first, ledger, requests_per_minute=100_000)
    print(
        f"day 1 (seeding, no rate limit): {seed['uploaded']:,} uploaded in {seed['requests']} requests, "
        f"{seed['wall_s']:.1f} s"
    )
    day2, requests = measured_run(emu, second, ledger)
    per_min = total / day2["wall_s"] * 60
    print(
        f"day 2: {total:,} source leads ({CHANGED:.0%} changed, {NEW:.1%} new): {day2['uploaded']:,} uploaded, "
        f"{day2['unchanged']:,} unchanged, {day2['rejected']} rejected"
    )
    print(
        f"day 2 upload requests: {requests} (goal <= {REQUESTS_GOAL}: {REQUESTS_GOAL / max(requests, 1):.2f}x goal; "
        f"{-(-total // BATCH)} without a ledger)"
    )
    print(
        f"day 2 wall time {day2['wall_s']:.1f} s: reconciliation rate {per_min:,.0f} source leads/min = "
        f"{per_min / CEILING_PER_MIN:.0f}x the API ceiling of {CEILING_PER_MIN:,}/min "
        f"(goal >= {RATE_GOAL_X:.0f}x: {per_min / CEILING_PER_MIN / RATE_GOAL_X:.2f}x goal)"
    )
    cpu_per_min = total / day2["cpu_s"] * 60
    print(
        f"day 2 CPU time {day2['cpu_s']:.1f} s: {cpu_per_min:,.0f} source leads per CPU minute = "
        f"{cpu_per_min / CEILING_PER_MIN:.0f}x the ceiling ({cpu_per_min / CEILING_PER_MIN / RATE_GOAL_X:.2f}x goal)"
    )


def bench_large(emu: CareCycleEmulator, workdir: Path) -> None:
    ledger = workdir / "ledger-1m"
    first, second = workdir / "feed-1m-day1.jsonl", workdir / "feed-1m-day2.jsonl"
    write_feed(first, LARGE)
    write_feed(second, LARGE, changed=CHANGED)
    seed = run_feed(first, ledger, mode="stub", requests_per_minute=1_000_000)
    print(
        f"1M seeding run (stub acknowledges at once): {seed['uploaded']:,} leads in {seed['wall_s']:.1f} s, "
        f"peak RSS {seed['rss_mb']:.0f} MB"
    )
    run, requests = measured_run(emu, second, ledger)
    print(
        f"1M run, {CHANGED:.0%} changed: {run['uploaded']:,} uploaded, {run['unchanged']:,} unchanged, "
        f"{requests} upload requests"
    )
    print(
        f"1M run wall time: {run['wall_s']:.1f} s, {run['cpu_s']:.1f} s CPU (goal <= {LARGE_TIME_GOAL_S:.0f} s: "
        f"{LARGE_TIME_GOAL_S / run['wall_s']:.2f}x goal)"
    )
    print(
        f"1M run peak RSS: {run['rss_mb']:.0f} MB, {run['before_mb']:.0f} MB before the run "
        f"(goal <= {LARGE_MEMORY_GOAL_MB:.0f} MB: {LARGE_MEMORY_GOAL_MB / run['rss_mb']:.2f}x goal)"
    )


def main(argv: list[str]) -> None:
    """Run both parts (``small`` or ``large`` to run one) and print each figure with its ratio to the goal."""
    parts = argv or ["small", "large"]
    workdir = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    os.environ.setdefault("AIRFLOW_HOME", str(workdir / "airflow"))
    with CareCycleEmulator(api_keys=(API_KEY,), customers=0) as emu:
        os.environ["AIRFLOW_CONN_CARECYCLE_DEFAULT"] = json.dumps(
            {"conn_type": "carecycle", "host": emu.url, "password": API_KEY}
        )
        if "small" in parts:
            print(f"== stateful sync: {SMALL:,} leads, then {CHANGED:.0%} changed and {NEW:.1%} new")
            started = time.monotonic()
            bench_small(emu, workdir)
            print(f"   ({time.monotonic() - started:.0f} s)")
        if "large" in parts:
            print(f"== stateful sync: {LARGE:,} leads, then {CHANGED:.0%} changed")
            bench_large(emu, workdir)


if __name__ == "__main__":
    main(sys.argv[1:])
