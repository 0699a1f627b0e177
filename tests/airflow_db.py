"""Pytest plugin: a throwaway Airflow metadata DB for tests that run ``dag.test()``.

Enable with ``pytest_plugins = ["tests.airflow_db"]`` (or ``-p tests.airflow_db``) and request the
session-scoped ``airflow_db`` fixture. ``tests/conftest.py`` has already pointed ``AIRFLOW_HOME`` and the SQLite
URL at a temporary directory before Airflow was imported; this creates the tables there once per session. It
works the same on Airflow 2.11 and 3.x (both create a fresh DB from the ORM models and stamp the migration head);
on Airflow 2 it also selects the SequentialExecutor, the only one Airflow 2 allows with SQLite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from dev.dag_loader import dag_bundle_config, load_dag

ROOT = Path(__file__).resolve().parents[1]


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
    ``dag_id`` picks a DAG when the file defines several; task retries are off (see
    :func:`dev.dag_loader.load_dag`).
    """

    def run(source: Path | str, dag_id: str | None = None, **test_kwargs: Any) -> Any:
        if isinstance(source, Path):
            path = source.resolve()
        else:
            folder = tmp_path / f"dags-{uuid.uuid4().hex[:8]}"
            folder.mkdir()
            path = folder / "dag_under_test.py"
            path.write_text(source)
        monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", dag_bundle_config(path.parent))
        dag = load_dag(path, dag_id)
        return dag.test(**test_kwargs)

    return run


@pytest.fixture
def run_dag_file_in_production_mode(airflow_db: str, tmp_path: Path) -> Callable[..., tuple[dict[str, Any], str]]:
    """Run DAG source with ``dag.test()`` in a fresh process with ``[core] unit_test_mode`` off, as Airflow runs in
    production (:mod:`tests.dag_runner`): ``run(source, logical_date=None) -> (tasks, the run's output)``, ``tasks``
    being ``{task_id: {"state": ..., "xcom": <return value>}}``.

    The process shares this session's metadata DB and environment (the emulators' connections included).
    """

    def run(source: str, logical_date: datetime | None = None) -> tuple[dict[str, Any], str]:
        folder = tmp_path / f"dags-{uuid.uuid4().hex[:8]}"
        folder.mkdir()
        path = folder / "dag_under_test.py"
        path.write_text(source)
        command = [sys.executable, "-m", "tests.dag_runner", str(path)]
        if logical_date is not None:
            command.append(logical_date.isoformat())
        env = {**os.environ, "AIRFLOW__CORE__UNIT_TEST_MODE": "False"}
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        output = done.stdout + done.stderr
        last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
        assert done.returncode == 0 and last.startswith("task states: "), output[-5000:]
        return json.loads(last.removeprefix("task states: ")), output

    return run
