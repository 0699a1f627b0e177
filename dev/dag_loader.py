"""Load a DAG file and read a finished run, for ``make demo`` (:mod:`dev.demo`) and the tests' ``run_dag_file``.

Not part of the provider: it imports Airflow, which only the demo and the tests need.
"""

from __future__ import annotations

import importlib.util
import json
import uuid
from pathlib import Path
from typing import Any


def dag_bundle_config(folder: Path) -> str:
    """``[dag_processor] dag_bundle_config_list`` making ``folder`` the only DAG bundle (Airflow 3.3's
    ``dag.test()`` runs only DAGs that live in a bundle; Airflow 2 ignores the setting).

    :param folder: the folder holding the DAG files.
    """
    bundle = {
        "name": "dags-folder",
        "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
        "kwargs": {"path": str(folder), "refresh_interval": 0},
    }
    return json.dumps([bundle])


#: how often (seconds) the sensors of a DAG loaded by :func:`load_dag` check, instead of the DAG's minutes
FAST_POKE_INTERVAL_S = 0.5


def load_dag(path: Path, dag_id: str | None = None, *, poke_interval_s: float | None = FAST_POKE_INTERVAL_S) -> Any:
    """Import a DAG file (as a uniquely named module) and return its DAG, with task retries off, so a failure
    ends a demo or a test at once instead of after the DAG's retry delays, and its sensors checking every
    ``poke_interval_s`` seconds instead of the DAG's minutes (the DAG file itself keeps production values).

    :param path: the DAG file.
    :param dag_id: the DAG to return; may be left out when the file defines exactly one.
    :param poke_interval_s: the sensors' poke interval; ``None`` keeps the DAG's.
    :raises ValueError: when the file does not define that DAG (or defines several and none was named).
    """
    from airflow import DAG

    from airflow_provider_carecycle._compat import BaseSensorOperator

    spec = importlib.util.spec_from_file_location(f"dag_file_{uuid.uuid4().hex[:8]}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dags = {dag.dag_id: dag for dag in vars(module).values() if isinstance(dag, DAG)}
    if dag_id is None and len(dags) != 1:
        raise ValueError(f"{path} defines the DAGs {sorted(dags)}; name the one to run.")
    dag = dags.get(dag_id or next(iter(dags)))
    if dag is None:
        raise ValueError(f"{path} does not define the DAG {dag_id!r}.")
    for task in dag.tasks:
        task.retries = 0
        if poke_interval_s is not None and isinstance(task, BaseSensorOperator):
            task.poke_interval = poke_interval_s
    return dag


def task_states(dag_run: Any) -> dict[str, str]:
    """``task_id -> state`` (plain strings, e.g. ``"success"``) of a finished DAG run."""
    return {ti.task_id: getattr(ti.state, "value", str(ti.state)) for ti in dag_run.get_task_instances()}
