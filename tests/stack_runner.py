"""Run example DAGs with ``dag.test()`` in a fresh process, for ``tests/test_stack_in_airflow.py``.

Airflow reads ``[metrics]`` and ``[openlineage]`` once, when ``Stats`` and the OpenLineage listener are first
used, so the test sets them in this process's environment and starts it. Usage::

    python -m tests.stack_runner SPEC.json RESULT.json

SPEC is ``[{"dag_file", "dag_id", "run_conf", "logical_date", "link_tasks": [...]}]``; RESULT receives, per run, the
task states, the asset events of the run (URI and extra) and the "careCycle campaign" link of ``link_tasks`` as
the UI would show it.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any


def _setup_db() -> None:
    from airflow.utils import db

    from airflow_provider_carecycle._compat import AIRFLOW_V_3_0_PLUS

    if not AIRFLOW_V_3_0_PLUS:
        os.environ["AIRFLOW__CORE__EXECUTOR"] = "SequentialExecutor"
    db.resetdb()


def _asset_events() -> list[dict[str, Any]]:
    from airflow.utils.session import create_session

    try:
        from airflow.models.asset import AssetEvent as Event
    except ImportError:  # Airflow 2
        from airflow.models.dataset import DatasetEvent as Event

    with create_session() as session:
        events = session.query(Event).all()
        return [
            {"uri": getattr(e, "uri", None) or (e.asset if hasattr(e, "asset") else e.dataset).uri, "extra": e.extra}
            for e in events
        ]


def _link(dag_id: str, dag_run: Any, task_id: str) -> str | None:
    from airflow_provider_carecycle._compat import AIRFLOW_V_3_0_PLUS
    from airflow_provider_carecycle.links import CareCycleCampaignLink

    ti = dag_run.get_task_instance(task_id)
    if AIRFLOW_V_3_0_PLUS:  # the API server's way: the serialized task reads the XCom under the link's key
        from airflow.models.serialized_dag import SerializedDagModel

        task = SerializedDagModel.get_dag(dag_id).get_task(task_id)
    else:  # the webserver's way: the operator's own link class
        from airflow.models import DagBag  # noqa: F401  (models must be importable)

        task = _DAGS[dag_id].get_task(task_id)
    return task.get_extra_links(ti, CareCycleCampaignLink.name)


_DAGS: dict[str, Any] = {}


def main(spec_path: str, result_path: str) -> None:
    from airflow_provider_carecycle._compat import AIRFLOW_V_3_0_PLUS
    from dev.dag_loader import dag_bundle_config, load_dag, task_states

    _setup_db()
    results = []
    for run in json.loads(Path(spec_path).read_text()):
        path = Path(run["dag_file"]).resolve()
        os.environ["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = dag_bundle_config(path.parent)
        dag = load_dag(path, run["dag_id"])
        _DAGS[dag.dag_id] = dag
        if not AIRFLOW_V_3_0_PLUS:
            # Airflow 2's dag.test() does not register the DAG's dataset aliases, which its DAG processor does for a
            # deployed DAG; an event added through an unregistered alias fails to flush
            dag.sync_to_db()
        key = "logical_date" if AIRFLOW_V_3_0_PLUS else "execution_date"
        dag_run = dag.test(**{key: datetime.fromisoformat(run["logical_date"])}, run_conf=run["run_conf"])
        results.append(
            {
                "dag_id": dag.dag_id,
                "states": task_states(dag_run),
                "links": {task_id: _link(dag.dag_id, dag_run, task_id) for task_id in run.get("link_tasks", [])},
            }
        )
    Path(result_path).write_text(json.dumps({"runs": results, "asset_events": _asset_events()}, default=str))


if __name__ == "__main__":
    main(*sys.argv[1:3])
