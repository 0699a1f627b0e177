"""Downstream of the customer export: runs whenever a careCycle export file has landed.

The exports of ``carecycle_customer_export.py`` (the day's calls, the customers touched on the day, and the weekly
customers diff) declare ``outlets=[AssetAlias("carecycle_customer_export")]`` and, once a file is complete, add an
asset event for the file written (the rendered URI, e.g. ``s3://analytics/carecycle/calls/2026-03-01.jsonl``) with
its row counts in the event's extra. This DAG is scheduled on that alias, so it starts after each export, and reads
which files landed from its triggering events (a warehouse load would pick its table by the file's folder).

On Airflow 2.10/2.11 the same works with ``DatasetAlias`` (imported below under the Airflow 3 name).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow import DAG

try:  # Airflow 3
    from airflow.sdk import AssetAlias, task
except ImportError:  # Airflow 2.10/2.11
    from airflow.datasets import DatasetAlias as AssetAlias
    from airflow.decorators import task

with DAG(
    dag_id="carecycle_customer_export_consumer",
    description="Runs after each careCycle export file landed",
    schedule=[AssetAlias("carecycle_customer_export")],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args={"retries": 1},
    tags=["carecycle", "example", "assets"],
    doc_md=__doc__,
) as dag:

    @task
    def load_new_customer_files(**context: Any) -> list[str]:  # the task id the deployment tests know
        """The files that triggered this run (counts only are in the events: no patient data)."""
        triggering = context.get("triggering_asset_events") or context.get("triggering_dataset_events") or {}
        files = []
        for asset_key, events in triggering.items():
            for event in events:
                uri = getattr(asset_key, "uri", asset_key)
                print(f"New careCycle export: {uri} ({(event.extra or {}).get('count')} rows)")
                files.append(str(uri))
        return files

    load_new_customer_files()
