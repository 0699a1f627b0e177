"""The smoke suite: what ``make test`` checks on the Airflow lines that do not get the full suite.

Each check is the full suite's own test where one exists (imported below and collected here again, so it runs
with the ``smoke`` marker), plus what only matters across lines: every module imports, every operator builds in a
DAG that survives Airflow's serialization, and the example CRM lead feed runs end to end with its sensor deferred.
"""

from __future__ import annotations

import importlib
import inspect
import itertools
import pkgutil
from datetime import datetime, timezone

import pytest

import airflow_provider_carecycle
from airflow_provider_carecycle._compat import BaseOperator
from airflow_provider_carecycle.get_provider_info import get_provider_info
from dev.demo import start_dialer_on_first_poke
from tests.example_dags import test_example_dags as example_dags
from tests.example_dags.test_example_dags import (  # noqa: F401
    test_every_example_dag_parses_without_errors_or_network,
    test_the_example_dags_import_with_no_warning,
)
from tests.hooks.test_carecycle import (  # noqa: F401
    test_customer_calls_and_campaigns,
    test_upload_leads_returns_the_answer,
)
from tests.sensors.test_campaigns import (  # noqa: F401
    task_log,
    test_deferrable_pokes_once_then_defers_with_an_end_time,
    test_poke_is_not_done_below_the_threshold,
    test_poke_returns_the_stats_once_the_threshold_holds,
)
from tests.test_get_provider_info import (  # noqa: F401
    test_connection_form_metadata_agrees_with_the_hook,
    test_entry_point_and_single_version_source,
    test_every_declared_module_imports,
)
from tests.test_provider_registration import test_airflow_providers_list_shows_the_provider  # noqa: F401
from tests.triggers.test_campaigns import test_serialize_round_trips_through_json  # noqa: F401

pytestmark = pytest.mark.smoke


def test_every_provider_module_imports():
    names = [m.name for m in pkgutil.walk_packages(airflow_provider_carecycle.__path__, "airflow_provider_carecycle.")]
    info = get_provider_info()
    declared = {
        m
        for section in ("hooks", "operators", "sensors", "triggers")
        for e in info[section]
        for m in e["python-modules"]
    }
    assert declared | {"airflow_provider_carecycle._compat"} <= set(names)
    for name in names:
        importlib.import_module(name)


#: one way to build each operator, sensor and transfer (templated values are not rendered: nothing runs)
BUILD_KWARGS = {
    "CareCycleUploadLeadsOperator": {"source_path": "file:///tmp/leads/{{ ds }}.jsonl"},
    "CareCycleExtractCustomersOperator": {"output_path": "file:///tmp/customers/{{ ds }}.jsonl"},
    "CareCycleExtractCustomerCallsOperator": {
        "output_path": "file:///tmp/calls/{{ ds }}.jsonl",
        "customer_ids_path": "file:///tmp/customers/{{ ds }}.jsonl",
    },
    "CareCycleCampaignSnapshotOperator": {"output_path": "file:///tmp/stats/{{ ds }}.jsonl"},
    "CareCycleCampaignStatsSensor": {
        "campaign_id": "{{ params.campaign_id }}",
        "threshold": {"completed": 1},
        "deferrable": True,
    },
    "SqlToCareCycleLeadsOperator": {"sql": "SELECT * FROM leads", "sql_conn_id": "warehouse_default"},
    "CareCloudCrmToCareCycleLeadsOperator": {},
    "CareCycleDoNotCallToCareCloudOperator": {"state_path": "file:///tmp/consent/state.json"},
}


def provider_operator_classes() -> dict[str, type]:
    """Every public operator, sensor and transfer class in the modules ``get_provider_info()`` declares."""
    info = get_provider_info()
    modules = [m for section in ("operators", "sensors") for entry in info[section] for m in entry["python-modules"]]
    modules += [entry["python-module"] for entry in info["transfers"]]
    classes = {}
    for module_name in modules:
        for name, cls in inspect.getmembers(importlib.import_module(module_name), inspect.isclass):
            public = not name.startswith("_") and "Base" not in name
            if public and cls.__module__ == module_name and issubclass(cls, BaseOperator):
                classes[name] = cls
    return classes


def dag_serialization():
    """Airflow's DAG serializer: ``DagSerialization`` from 3.2, ``SerializedDAG`` before."""
    from airflow.serialization import serialized_objects

    return getattr(serialized_objects, "DagSerialization", None) or serialized_objects.SerializedDAG


def test_every_operator_sensor_and_transfer_builds_in_a_dag_that_serializes():
    from airflow import DAG

    classes = provider_operator_classes()
    assert set(classes) == set(BUILD_KWARGS), "add each new operator to BUILD_KWARGS"
    with DAG("carecycle_smoke", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)) as dag:
        tasks = [cls(task_id=name, **BUILD_KWARGS[name]) for name, cls in sorted(classes.items())]
    for upstream, downstream in itertools.pairwise(tasks):
        upstream >> downstream

    serializer = dag_serialization()
    again = serializer.from_dict(serializer.to_dict(dag))

    assert sorted(again.task_ids) == sorted(classes)
    for name, cls in classes.items():
        task = again.get_task(name)
        assert task.task_type == cls.__name__
        assert tuple(task.template_fields) == tuple(cls.template_fields)


@pytest.mark.airflow_dag
def test_crm_lead_feed_example_dag_runs_with_its_sensor_deferred(
    run_dag_file, crm_feed_setup, carecycle_emulator, carecloud_emulator, tmp_path, capfd, caplog
):
    campaign = crm_feed_setup
    # no calls before the sensor has checked once: it must defer and wait in the trigger for the first one
    carecycle_emulator.configure(dialer_speed=0)
    start_dialer_on_first_poke(carecycle_emulator, campaign["id"])

    # the full suite's run of the example DAG, with every outcome check it makes
    example_dags.test_crm_lead_feed_uploads_or_rejects_every_changed_crm_customer(
        run_dag_file, crm_feed_setup, carecycle_emulator, carecloud_emulator, tmp_path, mode="with_logical_date"
    )

    # the sensor resumed in execute_complete with the trigger's event: a sensor that did not defer never logs this
    assert f"careCycle campaign {campaign['id']} met the threshold (status=" in task_log(capfd, caplog)
