"""The poking (non-deferrable) sensor in a real DAG run with Airflow's ExecutorSafeguard on, as in production.

Airflow 2.11's safeguard logged "CareCycleCampaignStatsSensor.execute cannot be called outside TaskInstance!" on
every run while the sensor called ``super().execute()``; unit-test mode (tests/conftest.py) silences it, so the DAG
runs in a process of its own with unit-test mode off (``run_dag_file_in_production_mode``).
"""

from __future__ import annotations

import pytest

SENSOR_DAG = """
from datetime import datetime

from airflow import DAG

from airflow_provider_carecycle.sensors.campaigns import CareCycleCampaignStatsSensor

with DAG(dag_id="poking_sensor", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
    CareCycleCampaignStatsSensor(
        task_id="wait",
        campaign_id={campaign_id!r},
        threshold={{"total": 1}},
        hook_params={{"requests_per_minute": 6000}},
        poke_interval=0.1,
        timeout=30,
        deferrable=False,
    )
"""


@pytest.mark.airflow_dag
def test_a_poking_sensor_run_logs_no_execute_outside_task_instance_warning(
    run_dag_file_in_production_mode, carecycle_emulator
):
    campaign = next(c for c in carecycle_emulator.list_campaigns() if c["customerStats"]["total"] >= 1)

    tasks, logs = run_dag_file_in_production_mode(SENSOR_DAG.format(campaign_id=campaign["id"]))

    assert tasks["wait"]["state"] == "success"
    assert tasks["wait"]["xcom"]["id"] == campaign["id"]
    assert campaign["id"] in logs  # the run's own log lines were captured
    assert "cannot be called outside" not in logs
