"""The async transport (a trigger's polls) over real HTTP against the emulator: the same answers as the
synchronous hook, one request per call, the key's budget shared with the synchronous requests."""

from __future__ import annotations

import asyncio

import pytest

from airflow_provider_carecycle.exceptions import CareCycleNotFoundError
from airflow_provider_carecycle.hooks.carecycle import CareCycleHook

UNKNOWN_ID = "00000000-0000-0000-0000-000000000000"


def test_aget_campaign_answers_as_get_campaign_with_one_request(carecycle_emulator):
    campaign = carecycle_emulator.list_campaigns()[0]
    hook = CareCycleHook(requests_per_minute=6000)
    hook.prepare_async()
    assert asyncio.run(hook.aget_campaign(campaign["id"])) == hook.get_campaign(campaign["id"])
    gets = [r for r in carecycle_emulator.request_log() if r["path"] == f"/v2/campaigns/{campaign['id']}"]
    assert len(gets) == 2 and hook.stats.requests == 2
    with pytest.raises(CareCycleNotFoundError):
        asyncio.run(hook.aget_campaign(UNKNOWN_ID))


def test_arequest_needs_prepare_async_first(carecycle_emulator):
    with pytest.raises(RuntimeError, match="prepare_async"):
        asyncio.run(CareCycleHook().aget_campaign(UNKNOWN_ID))


def test_sync_and_async_requests_count_against_one_limiter(carecycle_emulator):
    campaign_id = carecycle_emulator.list_campaigns()[0]["id"]
    worker, trigger = CareCycleHook(requests_per_minute=2), CareCycleHook(requests_per_minute=2)
    trigger.prepare_async()
    assert worker.limiter is trigger.limiter  # the process's (and host's) one limiter of the key
    worker.get_campaign(campaign_id)
    asyncio.run(trigger.aget_campaign(campaign_id))
    slot_wait = asyncio.run(_wait_for_a_slot(trigger))
    assert slot_wait > 1.0  # the key's 2 requests a minute are spent: a third waits (not slept here)


async def _wait_for_a_slot(hook: CareCycleHook) -> float:
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)
        raise asyncio.CancelledError  # stop at the first wait: its length is the point

    limiter = hook.limiter
    own, limiter._async_sleep = limiter._async_sleep, record
    try:
        await limiter.aclaim(0.0)
    except asyncio.CancelledError:
        pass
    finally:
        limiter._async_sleep = own
    return waits[0]
