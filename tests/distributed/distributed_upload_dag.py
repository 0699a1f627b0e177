"""The DAGs of ``make test-distributed``: four parallel lead uploads on one API key, one DAG per limiter setup.

Each DAG ``carecycle_distributed_<setup>`` has four ``CareCycleUploadLeadsOperator`` tasks reading
``<data_dir>/leads-<n>.jsonl`` (the run's ``data_dir`` param, a ``file://`` URI) and uploading them through the
connection ``carecycle_<setup>``. Every worker defines those connections in its own environment
(``AIRFLOW_CONN_CARECYCLE_<SETUP>``), so one setup differs between the two workers only where the test wants it to:
the ``rate_limit_dir`` (one folder per worker: two hosts) and the ``rate_limit_backend``.

The careCycle limit of 60 requests a minute is compressed into ``WINDOW_S`` seconds, as the benchmarks do; the
hook's limiter uses the same window, and every connection asks for the key's full limit. Nothing here reads
anything when the file is parsed.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_carecycle.operators.leads import CareCycleUploadLeadsOperator

#: the limiter setups, in the order the test runs them
SETUPS = ("process", "host", "adaptive", "redis")
#: upload tasks per DAG, and leads per task
TASKS = 4
LEADS_PER_TASK = 5_000
#: careCycle's limit per key, and its window compressed from 60 s
RATE = 60
WINDOW_S = 6.0
#: leads per request: 100 requests per task, 400 per run, about seven windows at the key's ceiling
BATCH_SIZE = 50
#: per-process limiters on one key draw many 429s in a row: enough retries that a request is never given up
MAX_RETRIES = 30


def dag_id(setup: str) -> str:
    return f"carecycle_distributed_{setup}"


def conn_id(setup: str) -> str:
    return f"carecycle_{setup}"


for _setup in SETUPS:
    with DAG(
        dag_id(_setup),
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        params={"data_dir": ""},
        tags=["carecycle", "test"],
    ) as _dag:
        for _n in range(1, TASKS + 1):
            CareCycleUploadLeadsOperator(
                task_id=f"upload_{_n}",
                source_path=f"{{{{ params.data_dir }}}}/leads-{_n}.jsonl",
                batch_size=BATCH_SIZE,
                carecycle_conn_id=conn_id(_setup),
                hook_params={"requests_per_minute": RATE, "rate_limit_window": WINDOW_S, "max_retries": MAX_RETRIES},
            )
    globals()[_dag.dag_id] = _dag
