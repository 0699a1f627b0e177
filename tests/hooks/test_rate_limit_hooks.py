"""The hooks choose their limiter from the connection extras, report answers to it, and share it with triggers."""

from __future__ import annotations

import asyncio

import pytest

from airflow_provider_carecycle.carecloud.hook import CareCloudCrmHook
from airflow_provider_carecycle.exceptions import CareCycleRateLimitError, CareCycleServerError
from airflow_provider_carecycle.hooks.carecycle import CareCycleHook
from airflow_provider_carecycle.hooks.ratelimit.base import Slot
from airflow_provider_carecycle.hooks.ratelimit.host import HostRateLimiter, state_file
from airflow_provider_carecycle.triggers.campaigns import CareCycleCampaignStatsTrigger
from carecycle_emulator.pytest_plugin import TEST_API_KEY, carecloud_connection_json, carecycle_connection_json


def test_the_carecycle_hook_shares_its_budget_host_wide_in_rate_limit_dir(carecycle_emulator, monkeypatch, tmp_path):
    conn = carecycle_connection_json(carecycle_emulator, rate_limit_dir=str(tmp_path))
    monkeypatch.setenv("AIRFLOW_CONN_CARECYCLE_DEFAULT", conn)
    hook = CareCycleHook(requests_per_minute=5)
    assert isinstance(hook.limiter, HostRateLimiter)
    for _ in range(5):
        hook.request("GET", "/v2/campaigns")
    # another process of the host (its own limiter object on the same file) finds the window full
    other = HostRateLimiter(state_file(tmp_path, carecycle_emulator.url, TEST_API_KEY, 60.0), 5)
    assert other.try_acquire() > 0


def test_a_429_from_elsewhere_cuts_the_hosts_pace(carecycle_emulator, monkeypatch, tmp_path):
    carecycle_emulator.configure(rate_limit=3, rate_window_s=60.0)  # someone else spends the rest of the key
    conn = carecycle_connection_json(carecycle_emulator, rate_limit_dir=str(tmp_path))
    monkeypatch.setenv("AIRFLOW_CONN_CARECYCLE_DEFAULT", conn)
    hook = CareCycleHook(requests_per_minute=10, max_retries=0)
    for _ in range(3):
        hook.request("GET", "/v2/campaigns")
    with pytest.raises(CareCycleRateLimitError):
        hook.request("GET", "/v2/campaigns")
    assert hook.limiter.allowed() == 7  # 10 x 0.7: the hook told the limiter about the 429


def test_a_deferred_sensors_polls_count_against_the_same_budget(carecycle_emulator, monkeypatch, tmp_path):
    conn = carecycle_connection_json(carecycle_emulator, rate_limit_dir=str(tmp_path))
    monkeypatch.setenv("AIRFLOW_CONN_CARECYCLE_DEFAULT", conn)
    campaign = carecycle_emulator.list_campaigns()[0]
    trigger = CareCycleCampaignStatsTrigger(
        campaign_id=campaign["id"], threshold={"total": 10**9}, end_time=2e9, hook_params={"requests_per_minute": 2}
    )

    async def ready_and_poll():
        await trigger._ready_hook()  # the connection, read in sync_to_async as the triggerer does
        await trigger._poll()  # one request, through the async transport on the event loop

    asyncio.run(ready_and_poll())
    task_hook = CareCycleHook(requests_per_minute=2)
    assert task_hook.limiter is trigger._hook.limiter  # a worker's hooks and the trigger share one limiter ...
    other_process = HostRateLimiter(state_file(tmp_path, carecycle_emulator.url, TEST_API_KEY, 60.0), 2)
    assert other_process.try_acquire() == 0.0  # ... and the host's other processes see the poll: one slot left
    assert other_process.try_acquire() > 0


def test_the_carecloud_hook_reads_the_same_extras(carecloud_emulator, monkeypatch, tmp_path):
    conn = carecloud_connection_json(carecloud_emulator, rate_limit_dir=str(tmp_path / "cc"))
    monkeypatch.setenv("AIRFLOW_CONN_CARECLOUD_CRM_DEFAULT", conn)
    limiter = CareCloudCrmHook().limiter
    assert isinstance(limiter, HostRateLimiter) and limiter.path.parent == tmp_path / "cc"
    assert TEST_API_KEY not in limiter.path.name


def test_an_unknown_backend_names_the_connection_and_extra(carecycle_connection):
    carecycle_connection("cc_bad", extra={"rate_limit_backend": "memcached://cache:11211"})
    with pytest.raises(ValueError, match=r"Airflow connection 'cc_bad': extra 'rate_limit_backend' must be"):
        CareCycleHook("cc_bad").limiter  # noqa: B018


class RecordingLimiter:
    """A limiter that only records what the hook asks of it, in order."""

    limit, window_s = 1000, 60.0

    def __init__(self, log: list) -> None:
        self.log = log

    def claim(self, hold_s: float) -> Slot:
        self.log.append(("claim", hold_s))
        return Slot(0.0, "t")

    def settle(self, slot: Slot) -> None:
        self.log.append(("settle", slot.token))

    def pause(self, seconds: float) -> None:
        pass

    def on_success(self) -> None:
        self.log.append(("answer",))

    def on_rate_limited(self, retry_after: float | None) -> None:
        pass


@pytest.mark.parametrize("answered", [True, False])
def test_each_attempt_claims_a_slot_and_settles_it_when_the_answer_arrives(
    carecycle_connection, carecycle_emulator, answered
):
    url = carecycle_emulator.url if answered else "http://127.0.0.1:9"  # nothing listens on port 9
    carecycle_connection("cc_rec", host=url)
    hook = CareCycleHook("cc_rec", timeout=7.0, max_retries=0)
    log: list = []
    hook.__dict__["limiter"] = RecordingLimiter(log)  # the cached property, before the sender is built
    if answered:
        hook.request("GET", "/v2/campaigns")
        assert log == [("claim", 14.0), ("settle", "t"), ("answer",)]
    else:
        with pytest.raises(CareCycleServerError):
            hook.request("GET", "/v2/campaigns")
        assert log == [("claim", 14.0), ("settle", "t")]  # no answer: settled when the attempt gave up
