"""Triggerer benchmark (in one process, one event loop, not a real triggerer): many deferred stats sensors' triggers
on one key, next to a canary that needs a thread once a second, today's threaded poll and the async poll side by
side.

The loop gets a 2-core triggerer's default executor (6 threads). Each phase runs ``SENSORS`` triggers on one key of
60 requests per compressed window against the emulator (the same limit), plus a canary calling
``asyncio.to_thread`` once a second and a 50 ms heartbeat that measures how late the loop runs. Figures per phase:
the canary's ``to_thread`` wait p99 (goal <= 100 ms), the loop's longest lateness (Airflow warns above 0.2 s),
requests per window / limit and 429s (goals <= 1.0, 0), each sensor's longest gap between polls / even share (goal
<= 1.5), and the RSS the triggers added (goal <= 100 MB).

Run with ``python -m benchmarks.bench_triggerer`` (``SENSORS=500 PHASE_S=90`` by default).
"""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp())

from airflow_provider_carecycle.campaign_stats import evaluate
from airflow_provider_carecycle.hooks.carecycle import CareCycleHook
from airflow_provider_carecycle.hooks.ratelimit import forget_shared_limiters
from airflow_provider_carecycle.triggers.campaigns import CareCycleCampaignStatsTrigger
from carecycle_emulator import CareCycleEmulator

SENSORS = int(os.environ.get("SENSORS", "500"))
PHASE_S = float(os.environ.get("PHASE_S", "90"))
LIMIT, WINDOW_S = 60, 3.0  # 60 requests per compressed window: the emulator's limit too
HOOK_PARAMS = {"rate_limit_window": WINDOW_S, "retry_backoff": 0.1}


class ThreadedTrigger(CareCycleCampaignStatsTrigger):
    """Today's trigger (before issue 25): each poll runs the synchronous hook in ``asyncio.to_thread``, where the
    hook waits for the key's budget, backs off and sleeps through ``retryAfter``."""

    def _new_hook(self, loop: asyncio.AbstractEventLoop) -> CareCycleHook:
        hook = CareCycleHook(self.carecycle_conn_id, **self.hook_params)
        hook.get_conn()
        return hook

    async def _poll(self) -> Any:
        assert self._hook is not None
        hook = self._hook

        def poll() -> Any:
            campaign = hook.get_campaign(self.campaign_id)
            return evaluate(campaign, self.conditions, self.terminal_statuses, campaign_id=self.campaign_id)

        return await asyncio.to_thread(poll)


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 2 else (values or [0.0])[0]


async def phase(trigger_class: type[CareCycleCampaignStatsTrigger], campaign_ids: list[str]) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(max_workers=6))  # min(32, cpus + 4) on 2 cores
    polls: dict[int, list[float]] = defaultdict(list)
    canary: list[float] = []
    lateness: list[float] = []
    stop = loop.time() + PHASE_S
    rss_before = rss_mb()
    triggers = []
    for n in range(SENSORS):
        trigger = trigger_class(
            campaign_id=campaign_ids[n % len(campaign_ids)],
            threshold={"total": 10**9},
            end_time=time.time() + 3600,
            hook_params=HOOK_PARAMS,
            poll_interval=WINDOW_S,
        )
        poll = trigger._poll

        async def counted(poll: Any = poll, n: int = n) -> Any:
            result = await poll()
            polls[n].append(loop.time())
            return result

        trigger._poll = counted  # type: ignore[method-assign]
        triggers.append(trigger)

    async def run(trigger: CareCycleCampaignStatsTrigger) -> None:
        async for _ in trigger.run():
            return

    async def canary_trigger() -> None:
        while loop.time() < stop:
            asked = time.monotonic()
            started = await asyncio.to_thread(time.monotonic)
            canary.append(started - asked)
            await asyncio.sleep(1.0)

    async def heartbeat() -> None:
        while loop.time() < stop:
            before = loop.time()
            await asyncio.sleep(0.05)
            lateness.append(loop.time() - before - 0.05)

    tasks = [asyncio.ensure_future(run(t)) for t in triggers]
    await asyncio.gather(canary_trigger(), heartbeat())
    rss_added = rss_mb() - rss_before
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    even_share = SENSORS * WINDOW_S / LIMIT
    settled = [times for times in polls.values() if len(times) >= 2]
    # steady state: the gaps that start once every sensor has polled (the triggerer loads them a few at a time)
    all_in = max((times[0] for times in polls.values()), default=0.0)
    gaps = [b - a for times in settled for a, b in zip(times, times[1:], strict=False) if a >= all_in]
    starved = SENSORS - len(settled)
    return {
        "canary_p99_ms": 1000 * p99(canary),
        "loop_late_max_s": max(lateness, default=0.0),
        "gap_ratio": max(gaps, default=float("inf")) / even_share,
        "sensors_with_2_polls": len(settled),
        "starved": starved,
        "rss_added_mb": rss_added,
    }


def window_figures(emu: CareCycleEmulator) -> tuple[float, int]:
    log = [r for r in emu.request_log() if r["path"].startswith("/v2/campaigns/")]
    times = sorted(
        datetime.fromisoformat(r["ts"].replace("Z", "+00:00")).timestamp() for r in log if r["status"] == 200
    )
    worst = 0
    for i, start in enumerate(times):
        j = i
        while j < len(times) and times[j] - start < WINDOW_S:
            j += 1
        worst = max(worst, j - i)
    return worst / LIMIT, sum(1 for r in log if r["status"] == 429)


def main() -> None:
    # a real triggerer sends each trigger's lines to its task's log; here only the pacer's one line is printed
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("airflow_provider_carecycle.triggers.pacing").setLevel(logging.INFO)
    with CareCycleEmulator(api_keys=("cc_test_key",), rate_limit=LIMIT, rate_window_s=WINDOW_S) as emu:
        os.environ["AIRFLOW_CONN_CARECYCLE_DEFAULT"] = emu.airflow_connection("cc_test_key", requests_per_minute=LIMIT)
        campaign_ids = [c["id"] for c in emu.list_campaigns()]
        print(f"{SENSORS} sensors on one key, {LIMIT} requests per {WINDOW_S:g} s window, {PHASE_S:g} s per phase")
        for name, trigger_class in (("threaded (today)", ThreadedTrigger), ("async", CareCycleCampaignStatsTrigger)):
            emu.reset()
            forget_shared_limiters(emu.url)
            figures = asyncio.run(phase(trigger_class, campaign_ids))
            per_window, too_many = window_figures(emu)
            print(
                f"{name}: canary to_thread wait p99 {figures['canary_p99_ms']:.1f} ms (goal <= 100, ratio "
                f"{figures['canary_p99_ms'] / 100:.2f}); loop late at most {figures['loop_late_max_s'] * 1000:.0f} ms "
                f"(Airflow warns > 200); requests per window / limit {per_window:.2f} (goal <= 1.0), 429s "
                f"{too_many}; longest gap / even share {figures['gap_ratio']:.2f} (goal <= 1.5; "
                f"{figures['sensors_with_2_polls']} of {SENSORS} sensors polled twice or more); RSS added "
                f"{figures['rss_added_mb']:.0f} MB (goal <= 100)",
                flush=True,
            )


if __name__ == "__main__":
    main()
