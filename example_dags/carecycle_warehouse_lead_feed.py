"""Warehouse -> careCycle: every day, upload the leads a SQL query finds in your warehouse.

One task, :class:`~airflow_provider_carecycle.transfers.sql.SqlToCareCycleLeadsOperator`: it runs the query through
any Airflow SQL connection (Postgres, Snowflake, BigQuery, Redshift, SQLite, ...), streams the rows
(``fetchmany``), validates and normalises them as careCycle leads, uploads them in batches at the API's rate limit
and writes every rejected row with its reason to a file.

Before the first run:

* a SQL connection ``warehouse_default`` (any type whose hook is a common-sql ``DbApiHook``) and the careCycle
  connection ``carecycle_default``;
* the pool every careCycle task runs in, so all DAGs together stay under the API's 60 requests per minute::

      airflow pools set carecycle_api 1 "careCycle API: 60 requests/minute shared by every DAG"

* the table: ``params.lead_table``, with an ``updated_at`` timestamp column (text in ISO 8601 or a timestamp).

A manual run uploads the rows of the UTC day before it was triggered, with or without a logical date
(``airflow dags trigger carecycle_warehouse_lead_feed --conf '{"lead_table": "crm.marketing_leads"}'``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow import DAG

try:  # Airflow 3 exposes Param in its authoring API...
    from airflow.sdk import Param
except ImportError:  # ...Airflow 2 in airflow.models
    from airflow.models.param import Param

try:  # Airflow 3.2+ exposes timetables in its authoring API...
    from airflow.sdk import CronDataIntervalTimetable
except ImportError:  # ...Airflow 2, 3.0 and 3.1 in airflow.timetables
    from airflow.timetables.interval import CronDataIntervalTimetable

from airflow_provider_carecycle.operators.base import run_interval
from airflow_provider_carecycle.transfers.sql import SqlToCareCycleLeadsOperator

CARECYCLE_POOL = "carecycle_api"
#: the day whose rows a run uploads: its data interval's start (a manual run's previous day); for a manual
#: Airflow 3 run without a logical date, which has no data interval, the day before it was triggered
DAY = "{{ run_interval(dag_run).start | ds }}"

# The rows changed in the run's data interval. The bounds are rendered by Airflow (not user input), so inlining
# them is safe and works with every driver's SQL dialect; compare them with a timestamp column in yours.
# Column aliases give careCycle's field names directly; `field_mapping` below shows the other way.
LEADS_SQL = """
{%- set interval = run_interval(dag_run) %}
SELECT
    lead_id        AS "externalId",
    first_name     AS "firstName",
    last_name      AS "lastName",
    phone,
    email,
    birth_date,
    zip            AS "postalCode",
    state
FROM {{ params.lead_table }}
WHERE updated_at >= '{{ interval.start.strftime("%Y-%m-%d %H:%M:%S") }}'
  AND updated_at <  '{{ interval.end.strftime("%Y-%m-%d %H:%M:%S") }}'
ORDER BY updated_at
"""

with DAG(
    dag_id="carecycle_warehouse_lead_feed",
    description="A warehouse table -> validated careCycle leads",
    # A daily data interval (yesterday 00:00 -> today 00:00 UTC); Airflow 3's bare "@daily" has an empty one.
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    params={
        "output_root": "file:///tmp/carecycle",
        # The table is inlined into the SQL, and whoever triggers the DAG may set params: the pattern lets only a
        # (schema-qualified) table name through, never SQL.
        "lead_table": Param(
            "marketing_leads", type="string", pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$"
        ),
    },
    user_defined_macros={"run_interval": run_interval},
    tags=["carecycle", "example", "leads"],
    doc_md=__doc__,
) as dag:
    SqlToCareCycleLeadsOperator(
        task_id="warehouse_to_leads",
        sql_conn_id="warehouse_default",
        sql=LEADS_SQL,
        # careCycle field -> column, for the columns not already aliased in the query
        field_mapping={"phoneNumber": "phone", "dateOfBirth": "birth_date"},
        # Fields every lead gets when its row lacks them: careCycle needs a zip or a time zone (for calling hours).
        defaults={"timezone": "EST"},
        rejected_path="{{ params.output_root }}/rejected/warehouse_leads_" + DAY + ".jsonl",
        # Warehouse data is curated: any rejected row means something upstream changed, so fail the task (after
        # uploading every valid row and writing the rejected file). Loosen it if some loss is expected.
        max_rejected_ratio=0.0,
        checkpoint_path="{{ params.output_root }}/checkpoints/warehouse_leads_" + DAY + ".json",
        # Send only the rows careCycle does not already hold as they are (docs/operators/sync.md): one ledger per
        # feed and careCycle, kept across runs (never per run). A query over the whole table then costs a request
        # per 200 changed rows, not per 200 rows.
        sync_state_path="{{ params.output_root }}/ledgers/warehouse_leads",
        pool=CARECYCLE_POOL,
    )
