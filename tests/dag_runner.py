"""Run one DAG file with ``dag.test()`` in a fresh process, as in production: ``[core] unit_test_mode`` off.

Airflow reads ``unit_test_mode`` once, when it is imported: in unit-test mode (which ``tests/conftest.py`` sets for the
test session) its ``ExecutorSafeguard`` stays silent, in production it logs "<Operator>.execute cannot be called
outside TaskInstance!" for an ``execute`` called from another method. A test of what a real run logs runs its DAG
here, through the configuration, instead of patching the safeguard. Usage (the ``run_dag_file_in_production_mode``
fixture of :mod:`tests.airflow_db` does this)::

    python -m tests.dag_runner DAG_FILE [LOGICAL_DATE]

The run's log goes to stdout and stderr; the last line is ``task states: <JSON>``, ``{task_id: {"state": ...,
"xcom": <its return value>}}``.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from pathlib import Path


def main(dag_file: str, logical_date: str | None = None) -> None:
    from airflow_provider_carecycle._compat import AIRFLOW_V_3_0_PLUS
    from dev.dag_loader import dag_bundle_config, load_dag, task_states

    path = Path(dag_file).resolve()
    os.environ["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = dag_bundle_config(path.parent)
    dag = load_dag(path)
    kwargs = {}
    if logical_date:
        kwargs["logical_date" if AIRFLOW_V_3_0_PLUS else "execution_date"] = datetime.fromisoformat(logical_date)
    dag_run = dag.test(**kwargs)
    states = task_states(dag_run)
    finished = {
        ti.task_id: {"state": states[ti.task_id], "xcom": ti.xcom_pull(task_ids=ti.task_id)}
        for ti in dag_run.get_task_instances()
    }
    print(f"task states: {json.dumps(finished, default=str)}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:3])
