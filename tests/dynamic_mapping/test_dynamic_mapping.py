"""Every operator and the sensor under ``.partial()`` / ``.expand()`` / ``.expand_kwargs()`` in a real DAG run.

Dynamic task mapping hands ``__init__`` values it never saw at parse time and renders the mapped values like any
templated argument, so each templated argument is mapped here in a real ``dag.test()`` against the emulators,
and the outcome is checked where it lands: the files written, the leads stored in careCycle, the snapshot rows,
the sensor's XCom. One DAG per group of operators keeps the run time down.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_carecycle.carecloud.hook import parse_carecloud_datetime
from airflow_provider_carecycle.carecloud.mapping import CARECLOUD_FIELD_MAPPING
from airflow_provider_carecycle.storage import iter_records
from carecycle_emulator.pytest_plugin import carecycle_connection_json as connection_json

pytestmark = pytest.mark.airflow_dag

OLDEST_FIRST = {"sortBy": "createdAt", "sortDirection": "asc"}
FAST = {"requests_per_minute": 6000}


def mapped_states(dag_run: Any) -> dict[tuple[str, int], str]:
    """``(task_id, map_index) -> state`` of a finished run."""
    return {
        (ti.task_id, ti.map_index): getattr(ti.state, "value", str(ti.state)) for ti in dag_run.get_task_instances()
    }


def xcom(dag_run: Any, task_id: str, map_index: int) -> Any:
    ti = dag_run.get_task_instance(task_id, map_index=map_index)
    return ti.xcom_pull(task_ids=task_id, map_indexes=map_index)


def ids(path: Path) -> list[str]:
    return [row["id"] for row in iter_records(path)]


HEADER = """
from datetime import datetime

from airflow import DAG

from airflow_provider_carecycle.operators.campaigns import CareCycleCampaignSnapshotOperator
from airflow_provider_carecycle.operators.customers import (
    CareCycleExtractCustomerCallsOperator,
    CareCycleExtractCustomersOperator,
)
from airflow_provider_carecycle.operators.leads import CareCycleUploadLeadsOperator
from airflow_provider_carecycle.sensors.campaigns import CareCycleCampaignStatsSensor
from airflow_provider_carecycle.transfers.carecloud import CareCloudCrmToCareCycleLeadsOperator
from airflow_provider_carecycle.transfers.sql import SqlToCareCycleLeadsOperator

OUT = {out!r}
FAST = {{"requests_per_minute": 6000}}
"""


# -- exports: customers, calls, campaign snapshots -------------------------------------------------------------

EXPORTS_DAG = (
    HEADER
    + """
with DAG(
    dag_id="mapped_exports", schedule=None, start_date=datetime(2026, 1, 1), params={{"status": "Active"}}
) as dag:
    customers = CareCycleExtractCustomersOperator.partial(
        task_id="customers",
        output_path=OUT + "/customers_{{{{ ti.map_index }}}}.jsonl",
        fields=["id", "status"],
        hook_params=FAST,
    ).expand(filters=[{{"statuses": ["Lead"]}}, {{"states": ["FL", "TX"], "start_date": "2026-01-01"}}])

    customers_kw = CareCycleExtractCustomersOperator.partial(task_id="customers_kw", hook_params=FAST).expand_kwargs(
        [
            {{"output_path": OUT + "/kw_a.csv", "filters": {{"statuses": ["{{{{ params.status }}}}"]}}}},
            {{"output_path": OUT + "/kw_b.jsonl", "extra_params": {{"states": {state!r}}}}},
        ]
    )

    calls = CareCycleExtractCustomerCallsOperator.partial(
        task_id="calls", output_path=OUT + "/calls_{{{{ ti.map_index }}}}.jsonl", fields=["id"], hook_params=FAST
    ).expand(customer_ids=[[{first_customer!r}], [{second_customer!r}]])

    calls_kw = CareCycleExtractCustomerCallsOperator.partial(
        task_id="calls_kw", fields=["id", "createdAt"], hook_params=FAST
    ).expand_kwargs(
        [
            {{"customer_ids_path": OUT + "/customers_0.jsonl", "output_path": OUT + "/calls_lead.jsonl"}},
            {{"customer_ids_path": OUT + "/kw_b.jsonl", "output_path": OUT + "/calls_since.jsonl", "since": {since!r}}},
        ]
    )
    [customers, customers_kw] >> calls_kw

    snapshots = CareCycleCampaignSnapshotOperator.partial(
        task_id="snapshots", output_path=OUT + "/campaigns_{{{{ ti.map_index }}}}.jsonl", hook_params=FAST
    ).expand(campaign_ids=[[{first_campaign!r}], [{second_campaign!r}]])

    snapshots_kw = CareCycleCampaignSnapshotOperator.partial(task_id="snapshots_kw", hook_params=FAST).expand_kwargs(
        [
            {{"statuses": ["active"], "output_path": OUT + "/active.csv"}},
            {{"search": {search!r}, "output_path": OUT + "/search.jsonl", "carecycle_conn_id": "carecycle_other"}},
        ]
    )
"""
)


def customer_calls(emu: Any, customer_id: str) -> list[dict[str, Any]]:
    return emu.store.customer_calls(customer_id, "createdAt", "desc", 10_000, 0)[1]


def test_exports_map_over_every_templated_argument(run_dag_file, carecycle_emulator, tmp_path, monkeypatch):
    emu = carecycle_emulator
    monkeypatch.setenv("AIRFLOW_CONN_CARECYCLE_OTHER", connection_json(emu))
    called = [c for c in emu.query_customers(OLDEST_FIRST) if c.get("totalCalls")]
    with_calls = [c["id"] for c in called]
    state = max(sorted({c["state"] for c in called}), key=lambda s: sum(c["state"] == s for c in called))
    in_state = [c["id"] for c in emu.query_customers({"states": state, **OLDEST_FIRST})]
    state_calls = sorted((call["createdAt"], call["id"]) for cid in in_state for call in customer_calls(emu, cid))
    assert len(state_calls) >= 2
    since = state_calls[len(state_calls) // 2][0]  # half of the NY customers' calls are at or after it
    campaigns = emu.list_campaigns()
    out = tmp_path / "out"
    source = EXPORTS_DAG.format(
        out=str(out),
        first_customer=with_calls[0],
        second_customer=with_calls[1],
        since=since,
        first_campaign=campaigns[0]["id"],
        second_campaign=campaigns[1]["id"],
        search=campaigns[2]["name"],
        state=state,
    )

    dag_run = run_dag_file(source)

    states = mapped_states(dag_run)
    assert len(states) == 12 and set(states.values()) == {"success"}, states
    # customers: one file per mapped filters mapping / extra_params, a templated value inside a mapped mapping
    query = emu.query_customers
    assert ids(out / "customers_0.jsonl") == [c["id"] for c in query({"statuses": "Lead", **OLDEST_FIRST})]
    expected = query({"states": "FL,TX", "startDate": "2026-01-01", **OLDEST_FIRST})
    assert ids(out / "customers_1.jsonl") == [c["id"] for c in expected]
    assert ids(out / "kw_a.csv") == [c["id"] for c in query({"statuses": "Active", **OLDEST_FIRST})]
    assert ids(out / "kw_b.jsonl") == in_state
    # calls: by mapped id lists, and by mapped id files (one with a mapped since)
    for index in (0, 1):
        assert ids(out / f"calls_{index}.jsonl") == [call["id"] for call in customer_calls(emu, with_calls[index])]
    lead_ids = ids(out / "customers_0.jsonl")
    expected_calls = {call["id"] for cid in lead_ids for call in customer_calls(emu, cid)}
    assert set(ids(out / "calls_lead.jsonl")) == expected_calls
    assert xcom(dag_run, "calls_kw", 0)["customers"] == len(lead_ids)
    assert sorted(ids(out / "calls_since.jsonl")) == sorted(call_id for at, call_id in state_calls if at >= since)
    assert 0 < len(ids(out / "calls_since.jsonl")) < len(state_calls)
    # snapshots: mapped campaign ids, statuses, search and connection
    assert ids(out / "campaigns_0.jsonl") == [campaigns[0]["id"]]
    assert ids(out / "campaigns_1.jsonl") == [campaigns[1]["id"]]
    assert set(xcom(dag_run, "snapshots", 1)) == {campaigns[1]["id"]}
    assert sorted(ids(out / "active.csv")) == sorted(c["id"] for c in campaigns if c["status"] == "active")
    assert campaigns[2]["id"] in ids(out / "search.jsonl")


# -- lead uploads: records or files, a SQL query, the CRM --------------------------------------------------------

LEADS_DAG = (
    HEADER
    + """
MAPPING = {{"externalId": "id", "phoneNumber": "phone", "postalCode": "zip"}}

with DAG(dag_id="mapped_leads", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
    by_records = CareCycleUploadLeadsOperator.partial(
        task_id="by_records", field_mapping=MAPPING, hook_params=FAST,
        rejected_path=OUT + "/records_rejected_{{{{ ti.map_index }}}}.jsonl",
    ).expand(records=[[{{"id": "rec-1", "phone": "212-555-0101", "zip": "10001"}}],
                      [{{"id": "rec-2", "phone": "212-555-0102", "zip": "10001"}}, {{"id": "rec-bad", "phone": "1"}}]])

    by_file = CareCycleUploadLeadsOperator.partial(
        task_id="by_file", hook_params=FAST, max_rejected_ratio=1.0
    ).expand_kwargs(
        [
            {{
                "source_path": OUT + "/leads.data",
                "source_format": "jsonl",
                "field_mapping": MAPPING,
                "defaults": {{"sourceId": "src_web"}},
                "rejected_path": OUT + "/file_rejected.jsonl",
                "checkpoint_path": OUT + "/file_checkpoint.json",
            }},
            {{
                "source_path": OUT + "/leads.csv",
                "field_mapping": {{"externalId": "ref", "phoneNumber": "mobile", "postalCode": "zip"}},
                "defaults": {{"timezone": "EST"}},
                "rejected_path": OUT + "/csv_rejected.jsonl",
            }},
        ]
    )

    by_sql = SqlToCareCycleLeadsOperator.partial(
        task_id="by_sql", sql_conn_id="warehouse", hook_params=FAST, field_mapping={{"phoneNumber": "phone"}},
    ).expand_kwargs(
        [
            {{"sql": "SELECT ext AS externalId, phone, zip AS postalCode FROM leads WHERE ext = :ext",
              "parameters": {{"ext": "sql-1"}}}},
            {{"sql": "SELECT ext AS externalId, phone, zip AS postalCode FROM leads WHERE ext = '{{{{ params.ext }}}}'",
              "params": {{"ext": "sql-2"}}}},
        ]
    )

    by_crm = CareCloudCrmToCareCycleLeadsOperator.partial(
        task_id="by_crm", hook_params=FAST, max_rejected_ratio=1.0, defaults={{"sourceId": "src_web"}},
        rejected_path=OUT + "/crm_rejected_{{{{ ti.map_index }}}}.jsonl",
    ).expand_kwargs(
        [
            {{"changed_since": {first_start!r}, "changed_before": {first_end!r}}},
            {{
                "changed_since": {second_start!r},
                "changed_before": {second_end!r},
                "field_mapping": {crm_mapping!r},
                "extra_params": {{}},
            }},
        ]
    )
"""
)


@pytest.fixture
def warehouse(tmp_path, monkeypatch):
    path = tmp_path / "warehouse.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE leads (ext TEXT, phone TEXT, zip TEXT)")
        db.executemany(
            "INSERT INTO leads VALUES (?, ?, ?)",
            [("sql-1", "(305) 555-0111", "33101"), ("sql-2", "(305) 555-0112", "33101"), ("sql-3", "305", "1")],
        )
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    return path


def test_lead_uploads_map_over_every_templated_argument(
    run_dag_file, carecycle_emulator, carecloud_emulator, warehouse, tmp_path
):
    out = tmp_path / "out"
    out.mkdir()
    (out / "leads.data").write_text(
        json.dumps({"id": "file-1", "phone": "212-555-0201", "zip": "10001"})
        + "\n"
        + json.dumps({"id": "file-bad", "phone": "12", "zip": "10001"})
        + "\n"
    )
    (out / "leads.csv").write_text("ref,mobile,zip\ncsv-1,212-555-0301,\n")
    crm = sorted(carecloud_emulator.customers(), key=lambda c: parse_carecloud_datetime(c["last_change"], timezone.utc))
    changed = [parse_carecloud_datetime(c["last_change"], timezone.utc) for c in crm]
    middle = len(crm) // 2
    windows = [(changed[0], changed[middle]), (changed[middle], changed[-1] + timedelta(seconds=1))]
    crm_mapping = {k: v for k, v in CARECLOUD_FIELD_MAPPING.items() if k not in ("firstName", "lastName")}
    source = LEADS_DAG.format(
        out=str(out),
        first_start=windows[0][0].isoformat(),
        first_end=windows[0][1].isoformat(),
        second_start=windows[1][0].isoformat(),
        second_end=windows[1][1].isoformat(),
        crm_mapping=crm_mapping,
    )

    dag_run = run_dag_file(source)

    states = mapped_states(dag_run)
    assert states == {
        ("by_records", 0): "success",
        ("by_records", 1): "failed",  # one of its two records was rejected; the strict default fails the task
        ("by_file", 0): "success",
        ("by_file", 1): "success",
        ("by_sql", 0): "success",
        ("by_sql", 1): "success",
        ("by_crm", 0): "success",
        ("by_crm", 1): "success",
    }
    stored = carecycle_emulator.get_customers_by_external_id()
    # records: each map index its own list; the rejected one in that index's file, by its row
    assert {"rec-1", "rec-2"} <= set(stored) and "rec-bad" not in stored
    assert (out / "records_rejected_0.jsonl").read_text() == ""
    assert [json.loads(line)["row"] for line in (out / "records_rejected_1.jsonl").read_text().splitlines()] == [2]
    from airflow.models.renderedtifields import RenderedTaskInstanceFields

    for index, count in ((0, 1), (1, 2)):  # a mapped task's records stay out of the rendered fields too (PHI)
        ti = dag_run.get_task_instance("by_records", map_index=index)
        rendered = RenderedTaskInstanceFields.get_templated_fields(ti)
        assert rendered["records"] == f"<{count} records, not shown: they may hold patient data>"
    # files: mapped source_path, source_format, field_mapping, defaults, rejected_path and checkpoint_path
    assert stored["file-1"][0]["currentSourceId"]  # the mapped default source (the API stores its UUID)
    assert not stored["csv-1"][0]["currentSourceId"]
    assert "file-bad" not in stored and "file-bad" in (out / "file_rejected.jsonl").read_text()
    assert (out / "file_checkpoint.json").is_file()
    assert stored["csv-1"][0]["timezone"] == "EST" and (out / "csv_rejected.jsonl").read_text() == ""
    # SQL: a mapped query with mapped parameters, and a mapped query with a template in it
    assert {"sql-1", "sql-2"} <= set(stored) and "sql-3" not in stored
    assert (xcom(dag_run, "by_sql", 0)["total"], xcom(dag_run, "by_sql", 1)["total"]) == (1, 1)
    # CRM: mapped windows (together every customer once) and a mapped field_mapping
    totals = [xcom(dag_run, "by_crm", index)["crm_rows"] for index in (0, 1)]
    assert totals == [middle, len(crm) - middle]
    second_window = {c["customer_id"] for c in crm[middle:]}
    uploaded_second = [rows[0] for ext, rows in stored.items() if ext in second_window]
    assert uploaded_second and all(not row["firstName"] and row["currentSourceId"] for row in uploaded_second)
    first_window = {c["customer_id"] for c in crm[:middle]}
    assert any(rows[0]["firstName"] for ext, rows in stored.items() if ext in first_window)  # the default mapping


# -- the sensor --------------------------------------------------------------------------------------------------

SENSOR_DAG = (
    HEADER
    + """
with DAG(dag_id="mapped_sensor", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
    CareCycleCampaignStatsSensor.partial(
        task_id="wait", threshold={{"total": 1}}, hook_params=FAST, poke_interval=0.1, timeout=60
    ).expand(campaign_id=[{first!r}, {second!r}])

    CareCycleCampaignStatsSensor.partial(
        task_id="wait_kw", threshold={{"total": 1}}, hook_params=FAST, poke_interval=0.1, timeout=60
    ).expand_kwargs(
        [
            {{"campaign_id": {first!r}, "carecycle_conn_id": "carecycle_other", "deferrable": True}},
            {{"campaign_id": "{{{{ params.campaign }}}}", "params": {{"campaign": {second!r}}}}},
        ]
    )
"""
)


def test_the_sensor_maps_over_its_campaign_and_connection(run_dag_file, carecycle_emulator, tmp_path, monkeypatch):
    emu = carecycle_emulator
    monkeypatch.setenv("AIRFLOW_CONN_CARECYCLE_OTHER", connection_json(emu))
    first, second = [c for c in emu.list_campaigns() if c["customerStats"]["total"] >= 1][:2]

    dag_run = run_dag_file(SENSOR_DAG.format(out=str(tmp_path), first=first["id"], second=second["id"]))

    assert set(mapped_states(dag_run).values()) == {"success"} and len(mapped_states(dag_run)) == 4
    assert [xcom(dag_run, "wait", i)["id"] for i in (0, 1)] == [first["id"], second["id"]]
    assert [xcom(dag_run, "wait_kw", i)["id"] for i in (0, 1)] == [first["id"], second["id"]]
