"""The triggerer figures run's DAGs: N campaign sensors started straight in the triggerer, plus a canary."""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta

from airflow.sdk import DAG, BaseOperator
from airflow.triggers.base import StartTriggerArgs

CAMPAIGNS = json.loads(os.environ.get("FIGURES_CAMPAIGNS", "[]"))
CANARY_FILE = os.environ.get("FIGURES_CANARY_FILE", "/dev/null")
WINDOW_S = float(os.environ.get("FIGURES_WINDOW_S", "3"))
PHASE_S = float(os.environ.get("FIGURES_PHASE_S", "60"))


class StartedInTheTriggerer(BaseOperator):
    """A task that starts deferred (``start_from_trigger``): no worker process for each of hundreds of sensors."""

    start_from_trigger = True

    def __init__(self, *, trigger_cls: str, trigger_kwargs: dict, **kwargs) -> None:
        super().__init__(**kwargs)
        self.start_trigger_args = StartTriggerArgs(
            trigger_cls=trigger_cls,
            trigger_kwargs=trigger_kwargs,
            next_method="execute_complete",
            timeout=timedelta(hours=2),
        )

    def execute_complete(self, context, event=None):
        return None


for flavour, classpath in (
    ("threaded", "figures_triggers.ThreadedStatsTrigger"),
    ("async", "airflow_provider_carecycle.triggers.campaigns.CareCycleCampaignStatsTrigger"),
):
    with DAG(f"figures_{flavour}", schedule=None, catchup=False) as dag:
        StartedInTheTriggerer(
            task_id="canary",
            trigger_cls="figures_triggers.CanaryTrigger",
            trigger_kwargs={"path": f"{CANARY_FILE}.{flavour}", "seconds": 3600},
        )
        for n, campaign_id in enumerate(CAMPAIGNS):
            StartedInTheTriggerer(
                task_id=f"sensor_{n}",
                trigger_cls=classpath,
                trigger_kwargs={
                    "campaign_id": campaign_id,
                    "threshold": {"total": [">=", 10**9]},
                    "end_time": time.time() + 7200,
                    "hook_params": {"rate_limit_window": WINDOW_S},
                    "poll_interval": WINDOW_S,
                },
            )
    globals()[f"dag_{flavour}"] = dag
