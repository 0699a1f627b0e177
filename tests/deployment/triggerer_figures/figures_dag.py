"""The triggerer figures run's DAGs: per flavour, one DAG of a canary and a campaign sensor mapped over N campaigns
(the shape of a DAG that watches many campaigns: ``.partial(...).expand(campaign_id=...)``).

The tasks never run on a worker: the figures run defers each one straight into the triggerer (``defer.py``), as a
worker's ``TaskDeferred`` does, so no worker process starts per sensor and the triggerer gets what a deferred
``CareCycleCampaignStatsSensor(deferrable=True)`` gives it. The DAGs stay paused: the scheduler never queues them.
"""

from __future__ import annotations

import json
import os

from airflow.sdk import DAG, BaseOperator

CAMPAIGNS = json.loads(os.environ.get("FIGURES_CAMPAIGNS", "[]"))


class DeferredByTheFigures(BaseOperator):
    """A task the figures run defers into the triggerer itself; it resumes in ``execute_complete`` only."""

    def __init__(self, *, campaign_id: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.campaign_id = campaign_id

    def execute(self, context):
        raise RuntimeError("the figures run defers this task itself: it never starts on a worker")

    def execute_complete(self, context, event=None):
        return None


for flavour in ("threaded", "async", "control"):
    with DAG(f"figures_{flavour}", schedule=None, catchup=False) as dag:
        DeferredByTheFigures(task_id="canary")
        DeferredByTheFigures.partial(task_id="sensor").expand(campaign_id=CAMPAIGNS)
    globals()[f"dag_{flavour}"] = dag
