"""The triggers of the triggerer figures run (imported by the real triggerer from the DAG folder)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_carecycle.campaign_stats import evaluate
from airflow_provider_carecycle.hooks.carecycle import CareCycleHook
from airflow_provider_carecycle.triggers.campaigns import CareCycleCampaignStatsTrigger


class CanaryTrigger(BaseTrigger):
    """Calls ``asyncio.to_thread`` once a second and appends how long each call waited for a thread to ``path``."""

    def __init__(self, path: str, seconds: float) -> None:
        super().__init__()
        self.path, self.seconds = path, seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("figures_triggers.CanaryTrigger", {"path": self.path, "seconds": self.seconds})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        end = time.monotonic() + self.seconds
        while time.monotonic() < end:
            asked = time.monotonic()
            started = await asyncio.to_thread(time.monotonic)
            with open(self.path, "a") as out:
                out.write(json.dumps({"at": time.time(), "wait": started - asked}) + "\n")
            await asyncio.sleep(1.0)
        yield TriggerEvent({"status": "done"})


class ThreadedStatsTrigger(CareCycleCampaignStatsTrigger):
    """The stats trigger as it was before issue 25: each poll runs the synchronous hook in ``asyncio.to_thread``."""

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("figures_triggers.ThreadedStatsTrigger", super().serialize()[1])

    def _new_hook(self, loop: asyncio.AbstractEventLoop) -> CareCycleHook:
        hook = CareCycleHook(self.carecycle_conn_id, **self.hook_params)
        hook.get_conn()
        return hook

    async def _poll(self) -> Any:
        hook = self._hook
        assert hook is not None

        def poll() -> Any:
            campaign = hook.get_campaign(self.campaign_id)
            return evaluate(campaign, self.conditions, self.terminal_statuses, campaign_id=self.campaign_id)

        return await asyncio.to_thread(poll)
