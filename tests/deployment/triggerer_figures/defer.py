"""Defer every task of one figures run into the triggerer, as a worker's ``TaskDeferred`` does.

``python defer.py DAG_ID RUN_ID FLAVOUR``, in the deployment's environment. For each task instance of the run it
writes what Airflow's execution API writes when a worker's task defers (``ti_update_state`` with a deferred
payload): a ``trigger`` row (classpath and encrypted kwargs of the task's trigger) and the task instance in state
``deferred`` pointing at it, ``execute_complete`` as its next method and a trigger timeout. The triggerer then loads
them as it loads any deferred sensor's trigger: a workload without the DAG (that one is only sent for
``start_from_trigger`` tasks, whose triggerer deserializes the task's whole DAG for every trigger).

``sensor`` (mapped) waits, at map index ``n``, on campaign ``n`` of ``FIGURES_CAMPAIGNS`` with the flavour's stats
trigger (the ``control`` flavour: Airflow's own ``DateTimeTrigger``, two hours ahead, which sends no request: what
the triggerer costs without careCycle); ``canary`` runs the canary trigger.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from datetime import timedelta

from airflow.models.taskinstance import TaskInstance
from airflow.models.trigger import Trigger
from airflow.triggers.base import BaseTrigger
from airflow.utils import timezone
from airflow.utils.session import create_session
from airflow.utils.state import TaskInstanceState
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

STATS_TRIGGERS = {
    "threaded": "figures_triggers.ThreadedStatsTrigger",
    "async": "airflow_provider_carecycle.triggers.campaigns.CareCycleCampaignStatsTrigger",
}
IN_TWO_HOURS = timedelta(hours=2)


def triggers(flavour: str) -> dict[tuple[str, int], BaseTrigger]:
    """Each task instance's trigger: ``(task_id, map_index) -> trigger``."""
    from figures_triggers import CanaryTrigger

    window_s = float(os.environ["FIGURES_WINDOW_S"])
    wanted: dict[tuple[str, int], BaseTrigger] = {
        ("canary", -1): CanaryTrigger(path=f"{os.environ['FIGURES_CANARY_FILE']}.{flavour}", seconds=3600)
    }
    campaigns = json.loads(os.environ["FIGURES_CAMPAIGNS"])
    if flavour == "control":
        from airflow.providers.standard.triggers.temporal import DateTimeTrigger

        wanted.update({("sensor", n): DateTimeTrigger(timezone.utcnow() + IN_TWO_HOURS) for n in range(len(campaigns))})
        return wanted
    module, _, name = STATS_TRIGGERS[flavour].rpartition(".")
    stats = getattr(importlib.import_module(module), name)
    for n, campaign_id in enumerate(campaigns):
        wanted["sensor", n] = stats(
            campaign_id=campaign_id,
            threshold={"total": [">=", 10**9]},
            end_time=time.time() + 7200,
            hook_params={"rate_limit_window": window_s},
            poll_interval=window_s,
        )
    return wanted


def defer(dag_id: str, run_id: str, flavour: str) -> int:
    """Defer the run's task instances; return how many."""
    wanted = triggers(flavour)
    with create_session() as session:
        tis = session.scalars(
            select(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
        ).all()
        missing = set(wanted) - {(ti.task_id, ti.map_index) for ti in tis}
        if missing:
            raise SystemExit(f"{dag_id}/{run_id} has no task instance for {sorted(missing)[:5]}")
        for ti in tis:
            row = Trigger.from_object(wanted[ti.task_id, ti.map_index])
            session.add(row)
            session.flush()
            ti.state = TaskInstanceState.DEFERRED
            ti.trigger_id = row.id
            ti.next_method = "execute_complete"
            ti.next_kwargs = None
            ti.trigger_timeout = timezone.utcnow() + IN_TWO_HOURS
    return len(tis)


if __name__ == "__main__":
    for attempt in range(5):  # SQLite has one writer: the scheduler may hold it for a moment
        try:
            print(f"deferred {defer(*sys.argv[1:4])} task instances")
            break
        except OperationalError as err:
            if "locked" not in str(err) or attempt == 4:
                raise
            time.sleep(1 + attempt)
