"""careCycle -> warehouse files: every call placed on the day, the customers touched on the day, a weekly diff.

::

    carecycle_customer_export (daily):   export_calls, export_customers, campaign_stats
    carecycle_customer_diff (weekly):    customers_diff

* ``export_calls``: every call placed in the run's day (``mode="placed"``), whoever it went to, with the columns
  analytics needs and no transcripts or summaries. careCycle's calls never change once placed, so the daily files
  hold every call exactly once, and a rerun or a backfill of a day, even weeks later, writes the same rows.
* ``export_customers``: the customers created or called on the run's day (``changed="touched"``), each once, with
  ``extractedAt``: a warehouse appends the daily files to a customer history table.
* ``customers_diff`` (weekly): every customer, compared with the previous week's export through a small state file
  of hashes (``changed="diff"``): the new and changed customers, and the ids deleted since.
* ``campaign_stats``: one row per active campaign with its ``customerStats``, appended to a monthly file.

Each file is an asset event on the alias ``carecycle_customer_export`` (its rendered URI, row counts in the extra),
which ``carecycle_customer_export_consumer`` (``carecycle_export_consumer.py``) is scheduled on.

What a warehouse gets: every call once, by the day it was placed (``createdAt``), with its disposition and
duration; the state of every customer created or called on a day, as of that day's run; once a week, every change,
including edits made by hand in careCycle's web app and deletions. What it misses: between two weekly diffs, a
customer changed by hand without a call (it arrives with the next diff); the state of a customer called on a day
and again before that day's run (the daily file has its later state); a call deleted in careCycle's web app after
its day was exported (the file keeps it; a backfill of the day would not). Test numbers are left out.

A manual run exports the UTC day before it was triggered, with or without a logical date
(``airflow dags trigger carecycle_customer_export``). Files go to ``params.output_root`` (any
``ObjectStoragePath`` URI: ``s3://...``, ``gs://...``, ``file:///...``); name them ``.parquet`` (with the
provider's ``parquet`` extra) for typed columns.
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
#: every file these DAGs write, as an asset: each task adds an event for the file it wrote (its rendered URI) to this
#: alias, and ``carecycle_customer_export_consumer`` is scheduled on it
CUSTOMER_EXPORT_ALIAS = "carecycle_customer_export"
#: the run's interval: its data interval, or for a manual Airflow 3 run without a logical date (which has none), the
#: UTC day before it was triggered
START = "{{ run_interval(dag_run).start }}"
END = "{{ run_interval(dag_run).end }}"
#: the day a daily run exports (the interval's start)
DAY = "{{ run_interval(dag_run).start | ds }}"
#: the customer columns the files carry (no names, phone numbers or dates of birth)
CUSTOMER_FIELDS = [
    "id",
    "createdAt",
    "status",
    "state",
    "source.name",
    "totalCalls",
    "lastCallDate",
    "lastCallDisposition",
]

with DAG(
    dag_id="carecycle_customer_export",
    description="Daily careCycle calls and touched customers, and a campaign stats time series",
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
    export_calls = CareCycleExtractCustomerCallsOperator(
        task_id="export_calls",
        mode="placed",  # every call placed in [since, until), exactly once across the daily runs
        since=START,
        until=END,
        output_path="{{ params.output_root }}/calls/" + DAY + ".jsonl",
        # no transcripts, summaries or recording links: they hold what the patient said
        fields=["id", "createdAt", "campaignId", "disposition", "durationMs", "successEvaluation"],
        outlets=[AssetAlias(CUSTOMER_EXPORT_ALIAS)],
        pool=CARECYCLE_POOL,
    )

    export_customers = CareCycleExtractCustomersOperator(
        task_id="export_customers",
        changed="touched",  # created or called on the day, each once, with extractedAt
        since=START,
        until=END,
        output_path="{{ params.output_root }}/customers/" + DAY + ".jsonl",
        fields=CUSTOMER_FIELDS,
        # "the day's customer file landed": an asset event for the file's URI, with its row count as extra
        outlets=[AssetAlias(CUSTOMER_EXPORT_ALIAS)],
        pool=CARECYCLE_POOL,
    )

    campaign_stats = CareCycleCampaignSnapshotOperator(
        task_id="campaign_stats",
        statuses=["active"],
        output_path="{{ params.output_root }}/campaign_stats/{{ run_interval(dag_run).start.strftime('%Y-%m') }}.csv",
        append=True,  # each run adds today's rows to the month's file
        pool=CARECYCLE_POOL,
    )

with DAG(
    dag_id="carecycle_customer_diff",
    description="Weekly careCycle customers diff: new, changed and deleted customers",
    schedule=CronDataIntervalTimetable("@weekly", timezone="UTC"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # one state file: one run at a time
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    params={"output_root": "file:///tmp/carecycle"},
    user_defined_macros={"run_interval": run_interval},
    tags=["carecycle", "example", "export"],
    doc_md=__doc__,
) as diff_dag:
    customers_diff = CareCycleExtractCustomersOperator(
        task_id="customers_diff",
        changed="diff",  # a full listing compared with last week's, through a state of per-customer hashes
        state_path="{{ params.output_root }}/state/customers_diff.jsonl.gz",
        output_path="{{ params.output_root }}/customers_diff/{{ run_interval(dag_run).end | ds }}.jsonl",
        fields=CUSTOMER_FIELDS,
        outlets=[AssetAlias(CUSTOMER_EXPORT_ALIAS)],
        pool=CARECYCLE_POOL,
    )
