"""careCycle -> files: a daily incremental export of new customers and their calls, and a campaign time series.

::

    export_customers -> export_calls
    campaign_stats

* ``export_customers``: the customers created on the run's day (``dateField=createdAt``), only the columns
  analytics needs (``fields=``: exporting less means less patient data at rest), one file per day. Each file is an
  asset event on the alias ``carecycle_customer_export``, which ``carecycle_customer_export_consumer``
  (``carecycle_export_consumer.py``) is scheduled on.
* ``export_calls``: the calls of exactly those customers, reading their ids from the first file (its path comes
  through XCom: ``export_customers.output["path"]``).
* ``campaign_stats``: one row per active campaign with its ``customerStats``, appended to a monthly file, so the
  file becomes a day-by-day time series.

A manual run exports the UTC day before it was triggered, with or without a logical date
(``airflow dags trigger carecycle_customer_export``). Files go to ``params.output_root`` (any
``ObjectStoragePath`` URI: ``s3://...``, ``gs://...``, ``file:///...``).
Every careCycle task runs in the ``carecycle_api`` pool (``airflow pools set carecycle_api 1 "careCycle API"``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow import DAG

try:  # Airflow 3.2+ exposes timetables in its authoring API...
    from airflow.sdk import CronDataIntervalTimetable
except ImportError:  # ...Airflow 2, 3.0 and 3.1 in airflow.timetables
    from airflow.timetables.interval import CronDataIntervalTimetable

try:  # Airflow 3 calls them assets...
    from airflow.sdk import AssetAlias
except ImportError:  # ...Airflow 2.10/2.11 datasets
    from airflow.datasets import DatasetAlias as AssetAlias

from airflow_provider_carecycle.operators.base import run_interval
from airflow_provider_carecycle.operators.campaigns import CareCycleCampaignSnapshotOperator
from airflow_provider_carecycle.operators.customers import (
    CareCycleExtractCustomerCallsOperator,
    CareCycleExtractCustomersOperator,
)

CARECYCLE_POOL = "carecycle_api"
#: the day's customer file, as an asset: each run adds an event for the file it wrote (its rendered URI) to this
#: alias, and ``carecycle_customer_export_consumer`` is scheduled on it
CUSTOMER_EXPORT_ALIAS = "carecycle_customer_export"
#: the day a run exports: its data interval's start (a manual run's previous day); for a manual Airflow 3 run
#: without a logical date, which has no data interval, the day before it was triggered
DAY = "{{ run_interval(dag_run).start | ds }}"

with DAG(
    dag_id="carecycle_customer_export",
    description="Daily careCycle customers + calls export and campaign stats time series",
    # A daily data interval (yesterday 00:00 -> today 00:00 UTC); Airflow 3's bare "@daily" has an empty one.
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    params={"output_root": "file:///tmp/carecycle"},
    user_defined_macros={"run_interval": run_interval},
    tags=["carecycle", "example", "export"],
    doc_md=__doc__,
) as dag:
    export_customers = CareCycleExtractCustomersOperator(
        task_id="export_customers",
        output_path="{{ params.output_root }}/customers/" + DAY + ".jsonl",
        # careCycle's date filters take whole days and endDate is inclusive, so both bounds are the run's day:
        # consecutive runs then never export a customer twice.
        filters={"date_field": "createdAt", "start_date": DAY, "end_date": DAY},
        fields=["id", "createdAt", "status", "state", "source.name", "totalCalls", "lastCallDisposition"],
        # "the daily customer export landed": an asset event for the file's URI, with its row count as extra
        outlets=[AssetAlias(CUSTOMER_EXPORT_ALIAS)],
        pool=CARECYCLE_POOL,
    )

    export_calls = CareCycleExtractCustomerCallsOperator(
        task_id="export_calls",
        customer_ids_path=export_customers.output["path"],  # also sets the dependency on export_customers
        output_path="{{ params.output_root }}/calls/" + DAY + ".jsonl",
        # no transcripts, summaries or recording links: they hold what the patient said
        fields=["id", "createdAt", "campaignId", "disposition", "durationMs", "successEvaluation"],
        pool=CARECYCLE_POOL,
    )

    campaign_stats = CareCycleCampaignSnapshotOperator(
        task_id="campaign_stats",
        statuses=["active"],
        output_path="{{ params.output_root }}/campaign_stats/{{ run_interval(dag_run).start.strftime('%Y-%m') }}.csv",
        append=True,  # each run adds today's rows to the month's file
        pool=CARECYCLE_POOL,
    )
