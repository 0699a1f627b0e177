"""OpenLineage: dataset naming per the spec, inputs/outputs per operator, and no hard dependency on OpenLineage.

The emitted events of real runs (the CRM feed, the customer export) are checked in
``tests/test_stack_in_airflow.py``.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_carecycle.lineage import carecloud_namespace, carecycle_namespace, file_dataset_name
from airflow_provider_carecycle.operators.campaigns import CampaignSnapshot, CareCycleCampaignSnapshotOperator
from airflow_provider_carecycle.operators.customers import CallsExport, CareCycleExtractCustomerCallsOperator
from airflow_provider_carecycle.operators.leads import CareCycleUploadLeadsOperator
from airflow_provider_carecycle.sensors.campaigns import CareCycleCampaignStatsSensor
from airflow_provider_carecycle.sync.summary import UploadSummary
from airflow_provider_carecycle.transfers.sql import SqlToCareCycleLeadsOperator

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("s3://analytics/carecycle/customers.jsonl", ("s3://analytics", "carecycle/customers.jsonl")),
        ("gs://bucket/a/b.csv", ("gs://bucket", "a/b.csv")),
        ("file:///data/out.jsonl", ("file", "/data/out.jsonl")),
        ("/data/out.jsonl", ("file", "/data/out.jsonl")),
    ],
)
def test_files_are_named_as_the_spec_says_for_their_storage(path, expected):
    assert file_dataset_name(path) == expected


def test_the_apis_are_namespaced_by_host():
    assert carecycle_namespace("https://API.carecycle.ai") == "carecycle://api.carecycle.ai"
    assert carecloud_namespace("https://demo.crmcarecloud.com/webservice/rest-api/enterprise-interface/v1.0") == (
        "carecloud://demo.crmcarecloud.com"
    )


def _names(datasets):
    return [(d.namespace, d.name) for d in datasets]


def test_an_upload_from_a_file_reads_the_file_and_writes_leads_and_the_rejected_file(carecycle_connection):
    carecycle_connection(host="https://api.carecycle.ai")
    op = CareCycleUploadLeadsOperator(
        task_id="upload", source_path="s3://in/leads.csv", rejected_path="s3://out/rejected.jsonl"
    )
    op.outcome = UploadSummary(total=10, uploaded=7, rejected=3)

    start = op.get_openlineage_facets_on_start()
    complete = op.get_openlineage_facets_on_complete(None)

    assert _names(start.inputs) == [("s3://in", "leads.csv")]
    assert _names(start.outputs) == [("carecycle://api.carecycle.ai", "leads"), ("s3://out", "rejected.jsonl")]
    assert not start.outputs[0].outputFacets  # nothing counted before the run
    assert [d.outputFacets["outputStatistics"].rowCount for d in complete.outputs] == [7, 3]
    assert complete.inputs[0].inputFacets["inputStatistics"].rowCount == 10


def test_a_sql_upload_reads_the_tables_of_its_query(carecycle_connection, tmp_path, monkeypatch):
    carecycle_connection(host="https://api.carecycle.ai")
    db = tmp_path / "warehouse.db"
    sqlite3.connect(db).close()
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    op = SqlToCareCycleLeadsOperator(
        task_id="sql", sql_conn_id="warehouse", sql="SELECT * FROM crm.marketing_leads WHERE updated_at >= '2026-03-01'"
    )

    lineage = op.get_openlineage_facets_on_start()

    assert _names(lineage.inputs) == [(f"sqlite://{db}", "crm.marketing_leads")]


CAMPAIGN = "3f0c1d2e-4b5a-4c6d-8e7f-9a0b1c2d3e4f"


def _rows(datasets, facets, statistics):
    return [getattr(d, facets)[statistics].rowCount if statistics in getattr(d, facets) else None for d in datasets]


def calls_export(missing_customers: int) -> CallsExport:
    """A calls export's outcome: 40 calls of 5 customers."""
    return CallsExport(
        path="s3://out/calls.jsonl",
        count=40,
        format="jsonl",
        pages=4,
        requests=9,
        rate_limited=0,
        elapsed_s=1.0,
        customers=5,
        missing_customers=missing_customers,
    )


def test_a_placed_calls_export_reads_careCycles_customers_and_calls(carecycle_connection):
    carecycle_connection(host="https://api.carecycle.ai")
    op = CareCycleExtractCustomerCallsOperator(
        task_id="calls", mode="placed", since="2026-03-01", output_path="s3://out/calls.jsonl"
    )
    op.outcome = calls_export(missing_customers=0)
    complete = op.get_openlineage_facets_on_complete(None)
    namespace = "carecycle://api.carecycle.ai"
    assert _names(complete.inputs) == [(namespace, "customers"), (namespace, "customers/calls")]
    assert _rows(complete.inputs, "inputFacets", "inputStatistics") == [5, 40]


def test_a_calls_export_reads_the_customers_file_and_the_calls_and_writes_its_file(carecycle_connection):
    carecycle_connection(host="https://api.carecycle.ai")
    op = CareCycleExtractCustomerCallsOperator(
        task_id="calls", customer_ids_path="s3://in/customers.jsonl", output_path="s3://out/calls.jsonl"
    )

    start = op.get_openlineage_facets_on_start()
    op.outcome = calls_export(missing_customers=1)
    complete = op.get_openlineage_facets_on_complete(None)

    assert _names(start.inputs) == [("s3://in", "customers.jsonl"), ("carecycle://api.carecycle.ai", "customers/calls")]
    assert _names(start.outputs) == [("s3://out", "calls.jsonl")]
    assert _rows(start.inputs, "inputFacets", "inputStatistics") == [None, None]
    assert _rows(complete.inputs, "inputFacets", "inputStatistics") == [5, 40]
    assert _rows(complete.outputs, "outputFacets", "outputStatistics") == [40]


def test_a_snapshot_reads_its_campaigns_and_writes_the_rows_of_this_run(carecycle_connection):
    carecycle_connection(host="https://api.carecycle.ai")
    by_id = CareCycleCampaignSnapshotOperator(task_id="s", output_path="/data/s.jsonl", campaign_ids=[CAMPAIGN])
    listed = CareCycleCampaignSnapshotOperator(task_id="l", output_path="/data/l.jsonl", statuses=["active"])
    by_id.outcome = CampaignSnapshot(path="file:///data/s.jsonl", count=1, campaigns=[{"id": CAMPAIGN}])

    complete = by_id.get_openlineage_facets_on_complete(None)

    assert _names(complete.inputs) == [("carecycle://api.carecycle.ai", f"campaigns/{CAMPAIGN}")]
    assert _names(complete.outputs) == [("file", "/data/s.jsonl")]
    assert _rows(complete.outputs, "outputFacets", "outputStatistics") == [1]
    assert _names(listed.get_openlineage_facets_on_start().inputs) == [("carecycle://api.carecycle.ai", "campaigns")]


def test_the_sensor_reads_the_campaign_it_watches(carecycle_connection):
    carecycle_connection(host="https://api.carecycle.ai")
    sensor = CareCycleCampaignStatsSensor(task_id="wait", campaign_id=CAMPAIGN, threshold={"total": 1})

    for lineage in (sensor.get_openlineage_facets_on_start(), sensor.get_openlineage_facets_on_complete(None)):
        assert _names(lineage.inputs) == [("carecycle://api.carecycle.ai", f"campaigns/{CAMPAIGN}")]
        assert lineage.outputs == []


def test_lineage_that_cannot_be_built_is_logged_by_type_and_never_fails_the_task(caplog):
    op = CareCycleUploadLeadsOperator(task_id="no_connection", records=[], carecycle_conn_id="not_defined")

    assert op.get_openlineage_facets_on_complete(None) is None
    assert "No OpenLineage for task no_connection: AirflowNotFoundException." in caplog.text


def test_a_dry_run_writes_no_leads():
    op = CareCycleUploadLeadsOperator(task_id="dry", records=[], dry_run=True)
    assert op.get_openlineage_facets_on_start().outputs == []


def test_the_provider_works_without_openlineage_installed(tmp_path):
    # the provider's modules import, and an operator answers "no lineage" (logged), with no OpenLineage client
    code = """
import sys
sys.modules["openlineage"] = None  # the OpenLineage client: nothing OpenLineage can be imported
import importlib, pkgutil, airflow_provider_carecycle
for module in pkgutil.walk_packages(airflow_provider_carecycle.__path__, "airflow_provider_carecycle."):
    importlib.import_module(module.name)
from airflow_provider_carecycle.operators.leads import CareCycleUploadLeadsOperator
op = CareCycleUploadLeadsOperator(task_id="t", records=[], dry_run=True)
assert op.get_openlineage_facets_on_complete(None) is None
print("ok")
"""
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.stdout.strip().endswith("ok"), run.stderr[-3000:]
