"""Campaign benchmark: requests per sensor poke (goal exactly 1), worker time before deferring (goal: one poke,
then the slot is free), and the snapshot's XCom size per campaign.

Run with ``python -m benchmarks.bench_campaign_stats`` (or ``make bench``).
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import threading
import time

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp())

from airflow_provider_carecycle._compat import TaskDeferred
from airflow_provider_carecycle.operators.campaigns import CareCycleCampaignSnapshotOperator
from airflow_provider_carecycle.sensors.campaigns import CareCycleCampaignStatsSensor
from carecycle_emulator import CareCycleEmulator
from carecycle_emulator import carecycle_connection_json as connection_json

FAST = {"requests_per_minute": 6000}


def gets(emu, cid):
    return sum(1 for r in emu.request_log() if r["path"] == f"/v2/campaigns/{cid}")


def main() -> None:
    with CareCycleEmulator(api_keys=("cc_test_key",), rate_limit=6000) as emu:
        os.environ["AIRFLOW_CONN_CARECYCLE_DEFAULT"] = connection_json(emu)
        cid = emu.list_campaigns()[0]["id"]

        # 1. poke mode: requests per poke
        op = CareCycleCampaignStatsSensor(task_id="w", campaign_id=cid, threshold={"total": 10**6}, hook_params=FAST)
        pokes = 50
        for _ in range(pokes):
            op.poke({})
        print(f"poke mode: {pokes} pokes -> {gets(emu, cid)} GET requests ({gets(emu, cid) / pokes:.2f} per poke)")

        # 1b. with 10 % injected 503s: the hook retries inside a poke
        emu.reset()
        emu.configure(fault_rate=0.1, fault_kinds=("503",))
        op = CareCycleCampaignStatsSensor(
            task_id="w", campaign_id=cid, threshold={"total": 10**6}, hook_params={**FAST, "retry_backoff": 0.01}
        )
        for _ in range(pokes):
            op.poke({})
        calls = gets(emu, cid)
        print(f"poke mode, 10% 503s: {pokes} pokes -> {calls} requests ({calls / pokes:.2f} per poke)")
        emu.configure(fault_rate=0.0)

        # 2. deferrable: worker time until the slot is given back, then the trigger's wait
        emu.reset()
        start_completed = emu.list_campaigns()[0]["customerStats"]["statusCounts"]["completed"]
        op = CareCycleCampaignStatsSensor(
            task_id="w",
            campaign_id=cid,
            threshold={"completed": start_completed + 5},
            deferrable=True,
            poke_interval=0.1,
            timeout=60,
            hook_params=FAST,
        )
        t0 = time.perf_counter()
        try:
            op.execute({})
            raise SystemExit("did not defer")
        except TaskDeferred as deferred:
            trigger = deferred.trigger
        worker_s = time.perf_counter() - t0
        worker_threads_before = threading.active_count()

        def dial_later():
            time.sleep(2.0)
            emu.configure(dialer_speed=10)

        threading.Thread(target=dial_later, daemon=True).start()
        polls = []
        poll = trigger._poll
        trigger._poll = lambda: (polls.append(1), poll())[1]
        before = gets(emu, cid)

        async def wait():
            async for event in trigger.run():
                return event

        t1 = time.perf_counter()
        event = asyncio.run(wait())
        trigger_s = time.perf_counter() - t1
        emu.configure(dialer_speed=0)
        print(
            f"deferrable: worker part {worker_s * 1000:.0f} ms "
            "(1 poke, then TaskDeferred: execute() returned, slot free); "
            f"triggerer waited {trigger_s:.2f} s with {len(polls)} polls -> {gets(emu, cid) - before} GET requests; "
            f"event={event.payload['status']}; worker slots held while deferred: 0 "
            f"(no execute() frame alive; threads before trigger {worker_threads_before})"
        )
        print(f"trigger serialize() kwargs: {len(json.dumps(trigger.serialize()[1]))} bytes of JSON")

        # 3. snapshot XCom size
        for i in range(97):
            emu.add_campaign(name=f"Campaign {i:03d}")
        output_path = tempfile.mkdtemp() + "/s.jsonl"
        snap = CareCycleCampaignSnapshotOperator(task_id="s", output_path=output_path, hook_params=FAST)
        t2 = time.perf_counter()
        result = snap.execute({})
        size = len(json.dumps(result))
        print(
            f"snapshot of {len(result)} campaigns: {time.perf_counter() - t2:.2f} s, XCom {size} bytes "
            f"({size / len(result):.0f} bytes per campaign)"
        )


if __name__ == "__main__":
    main()
