"""Pytest plugin: a throwaway Airflow metadata DB for tests that run ``dag.test()``.

Enable with ``pytest_plugins = ["tests.airflow_db"]`` (or ``-p tests.airflow_db``) and request the
session-scoped ``airflow_db`` fixture. ``tests/conftest.py`` has already pointed ``AIRFLOW_HOME`` and the SQLite
URL at a temporary directory before Airflow was imported; this creates the tables there once per session. It
works the same on Airflow 2.11 and 3.x (both create a fresh DB from the ORM models and stamp the migration head);
on Airflow 2 it also selects the SequentialExecutor, the only one Airflow 2 allows with SQLite.
"""

from __future__ import annotations

import importlib.util
import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from airflow import DAG


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """Create the metadata tables in the session's SQLite DB (once) and return its SQLAlchemy URL."""
    url = os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    if not url.startswith("sqlite:///") or "carecycle-airflow-home-" not in url:
        raise RuntimeError(f"Refusing to reset a metadata DB that is not the tests' throwaway SQLite DB: {url}")
    from airflow.utils import db

    from airflow_provider_carecycle._compat import AIRFLOW_V_3_0_PLUS

    if not AIRFLOW_V_3_0_PLUS:
        # Airflow 2 accepts SQLite only with the SequentialExecutor (its reschedule check loads the executor).
        os.environ["AIRFLOW__CORE__EXECUTOR"] = "SequentialExecutor"
    db.resetdb()
    return url


@pytest.fixture
def run_dag_file(airflow_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """Run a DAG file with ``dag.test()``: ``run_dag_file(path_or_source, dag_id=None, **test_kwargs) -> DagRun``.

    Airflow 3.3's ``dag.test()`` only runs DAGs that live in a DAG bundle, so the DAG's folder becomes the only
    bundle (a ``pathlib.Path`` to an existing file), or the source text is written to a file in a fresh one.
    The module is imported under a unique name; ``dag_id`` picks a DAG when the file defines several. Task
    retries are switched off, so a failure shows at once instead of after the DAG's retry delays.
    """

    def run(source: Path | str, dag_id: str | None = None, **test_kwargs: Any) -> Any:
        if isinstance(source, Path):
            path = source.resolve()
        else:
            folder = tmp_path / f"dags-{uuid.uuid4().hex[:8]}"
            folder.mkdir()
            path = folder / "dag_under_test.py"
            path.write_text(source)
        monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", _bundle_config(path.parent))
        spec = importlib.util.spec_from_file_location(f"dag_under_test_{uuid.uuid4().hex[:8]}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        dags = {dag.dag_id: dag for dag in vars(module).values() if isinstance(dag, DAG)}
        if dag_id is None and len(dags) != 1:
            raise ValueError(f"{path} defines DAGs {sorted(dags)}; pass dag_id= to pick one.")
        dag = dags[dag_id or next(iter(dags))]
        for task in dag.tasks:
            task.retries = 0
        return dag.test(**test_kwargs)

    return run


def _bundle_config(folder: Path) -> str:
    return json.dumps(
        [
            {
                "name": "dags-folder",
                "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {"path": str(folder), "refresh_interval": 0},
            }
        ]
    )


def task_states(dag_run: Any) -> dict[str, str]:
    """``task_id -> state`` (plain strings, e.g. ``"success"``) of a finished DAG run."""
    return {ti.task_id: getattr(ti.state, "value", str(ti.state)) for ti in dag_run.get_task_instances()}
