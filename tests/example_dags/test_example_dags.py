"""The example DAGs: they parse without touching the network, and each runs end to end in real Airflow.

Every run goes through ``dag.test()`` against the careCycle and CareCloud CRM emulators, and checks real outcomes
(leads present in careCycle by ``externalId``, the rejected file, export files matching the emulator), not only
task states.
"""

from __future__ import annotations

import importlib.util
import json
import sqlite3
import uuid
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from airflow_provider_carecycle._compat import AIRFLOW_V_3_0_PLUS
from airflow_provider_carecycle.carecloud.hook import parse_carecloud_datetime
from airflow_provider_carecycle.storage import iter_records
from dev.dag_loader import task_states

EXAMPLE_DAGS = Path(__file__).resolve().parents[2] / "example_dags"
CRM_FEED = EXAMPLE_DAGS / "carecycle_crm_lead_feed.py"
WAREHOUSE_FEED = EXAMPLE_DAGS / "carecycle_warehouse_lead_feed.py"
CUSTOMER_EXPORT = EXAMPLE_DAGS / "carecycle_customer_export.py"
DAG_IDS = {
    "carecycle_crm_lead_feed",
    "carecycle_warehouse_lead_feed",
    "carecycle_customer_export",
    "carecycle_customer_diff",
}
#: example DAGs without careCycle tasks (scheduled on the export's asset)
DOWNSTREAM_DAG_IDS = {"carecycle_customer_export_consumer"}

#: the data interval of the runs in these tests: a manual run's is the scheduled day before its logical date
DAY = datetime(2026, 3, 1, tzinfo=timezone.utc)
RUN_DATE = {("logical_date" if AIRFLOW_V_3_0_PLUS else "execution_date"): DAY + timedelta(days=1)}


def manual_run(day: datetime, mode: str) -> dict:
    """``dag.test()`` arguments for a manual run working on ``day``.

    ``with_logical_date``: the run's logical date is the next midnight, its data interval ``day``.
    ``without_logical_date``: how ``airflow dags trigger`` (no ``--logical-date``) and the REST API with
    ``"logical_date": null`` start a run on Airflow 3: no logical date, no data interval, only ``run_after``
    (here the next morning); the DAGs then work on the day before ``run_after``.
    """
    if mode == "with_logical_date":
        return {("logical_date" if AIRFLOW_V_3_0_PLUS else "execution_date"): day + timedelta(days=1)}
    return {"logical_date": None, "run_after": day + timedelta(days=1, hours=5, minutes=17)}


RUN_MODES = [
    "with_logical_date",
    pytest.param(
        "without_logical_date",
        marks=pytest.mark.skipif(not AIRFLOW_V_3_0_PLUS, reason="Airflow 2 runs always have a logical date"),
    ),
]


def check_run_interval(dag_run, mode: str, day: datetime) -> None:
    if mode == "with_logical_date":
        assert (dag_run.data_interval_start, dag_run.data_interval_end) == (day, day + timedelta(days=1))
    else:
        assert dag_run.logical_date is None and dag_run.data_interval_start is None


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# -- parsing ---------------------------------------------------------------------------------------------------


def test_every_example_dag_parses_without_errors_or_network(
    carecycle_emulator, carecloud_emulator, monkeypatch, airflow_db
):
    # (airflow_db: Airflow 2 resolves a DAG's schedule on a DatasetAlias in the metadata DB while parsing)
    from airflow.models import DagBag

    # connections that would fail loudly if anything tried to use them while parsing
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_DEFAULT", json.dumps({"conn_type": "sqlite", "host": "/nonexistent"}))
    requests_before = (len(carecycle_emulator.request_log()), len(carecloud_emulator.request_log()))

    bag = DagBag(dag_folder=str(EXAMPLE_DAGS))  # examples off: AIRFLOW__CORE__LOAD_EXAMPLES=False (conftest)

    assert bag.import_errors == {}
    assert set(bag.dag_ids) == DAG_IDS | DOWNSTREAM_DAG_IDS
    assert (len(carecycle_emulator.request_log()), len(carecloud_emulator.request_log())) == requests_before
    for dag_id in DAG_IDS:
        dag = bag.dags[dag_id]
        assert dag.tags and "example" in dag.tags
        assert dag.default_args.get("retries", 0) >= 1, dag_id
        carecycle_tasks = [t for t in dag.tasks if t.task_type.startswith(("CareCycle", "SqlToCareCycle", "CareCloud"))]
        assert carecycle_tasks and all(t.pool == "carecycle_api" for t in carecycle_tasks), dag_id


@pytest.mark.parametrize("path", sorted(EXAMPLE_DAGS.glob("*.py")), ids=lambda path: path.name)
def test_the_example_dags_import_with_no_warning(path, airflow_db):
    """Users copy these files: on every line they import with no deprecation (or other) warning of their own, e.g.
    ``Param`` from ``airflow.sdk`` on 3.0 and 3.1, where ``CronDataIntervalTimetable`` is not there yet (issue 19)."""
    spec = importlib.util.spec_from_file_location(f"example_dag_{uuid.uuid4().hex[:8]}", path)
    module = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        spec.loader.exec_module(module)
    assert not [f"{w.category.__name__}: {w.message}" for w in caught if Path(w.filename) == path]


def test_the_warehouse_table_param_lets_only_a_table_name_into_the_sql():
    from airflow.models import DagBag

    dag = DagBag(dag_folder=str(WAREHOUSE_FEED)).dags["carecycle_warehouse_lead_feed"]
    table = dag.params.get_param("lead_table")
    assert table.resolve("crm.marketing_leads") == "crm.marketing_leads"
    for injection in ("marketing_leads; DROP TABLE patients", "x WHERE 1=1 --", "(SELECT * FROM patients)"):
        with pytest.raises(Exception, match="does not match"):
            table.resolve(injection)


# -- the CRM lead feed -----------------------------------------------------------------------------------------


@pytest.fixture
def crm_feed_setup(carecycle_emulator, carecloud_emulator, monkeypatch):
    """A fresh campaign that takes new leads, a fast dialer and sensor, and CRM changes inside ``DAY``."""
    # the seeded CRM customers changed in the 30 hours before 23:00 on DAY: most fall in DAY's interval, some before
    carecloud_emulator.reset(days=30 / 24, anchor=DAY.replace(tzinfo=None) + timedelta(hours=23))
    campaign = carecycle_emulator.add_campaign(name="CRM feed test", takes_new_leads=True)
    carecycle_emulator.configure(dialer_speed=20)
    return campaign


@pytest.mark.airflow_dag
@pytest.mark.parametrize("mode", RUN_MODES)
def test_crm_lead_feed_uploads_or_rejects_every_changed_crm_customer(
    run_dag_file, crm_feed_setup, carecycle_emulator, carecloud_emulator, tmp_path, mode
):
    campaign = crm_feed_setup
    start, end = DAY, DAY + timedelta(days=1)
    expected = [
        c
        for c in carecloud_emulator.customers()
        if start <= parse_carecloud_datetime(c["last_change"], timezone.utc) < end
    ]
    assert 0 < len(expected) < len(carecloud_emulator.customers())

    dag_run = run_dag_file(
        CRM_FEED,
        **manual_run(DAY, mode),
        run_conf={"output_root": tmp_path.as_uri(), "campaign_id": campaign["id"]},
    )

    check_run_interval(dag_run, mode, DAY)
    assert task_states(dag_run) == {
        "snapshot_before": "success",
        "crm_to_leads": "success",
        "do_not_call_to_crm": "success",
        "snapshot_after": "success",
        "wait_for_first_calls": "success",
    }
    # every CRM customer changed in the interval was either uploaded (by externalId) or rejected with a reason
    uploaded = carecycle_emulator.get_customers_by_external_id()
    rejected = {row["record"]["externalId"]: row for row in jsonl(tmp_path / "rejected" / "crm_leads_2026-03-01.jsonl")}
    expected_ids = {c["customer_id"] for c in expected}
    for customer_id in expected_ids:
        assert (customer_id in uploaded) != (customer_id in rejected), customer_id
    assert set(rejected) <= expected_ids
    assert rejected, "the seed has non-US phones and missing zips by design"
    assert all(row["reason"] and row["field"] for row in rejected.values())
    summary = dag_run.get_task_instance("crm_to_leads").xcom_pull(task_ids="crm_to_leads")
    assert summary["crm_rows"] == summary["total"] == len(expected)
    assert summary["uploaded"] + summary["rejected"] + summary["duplicates"] == len(expected)
    assert summary["rejected"] == len(rejected)
    assert {c for c in expected_ids if c in uploaded} == expected_ids - set(rejected)
    # the before/after snapshots: one dated file, the new leads counted in the campaign after the upload
    stats = jsonl(tmp_path / "campaign_stats" / "2026-03-01.jsonl")
    assert [row["id"] for row in stats] == [campaign["id"], campaign["id"]]
    assert stats[0]["total"] == 0 and stats[1]["total"] == summary["uploaded"]
    # the sensor waited for, and saw, the campaign's first completed call
    final = dag_run.get_task_instance("wait_for_first_calls").xcom_pull(task_ids="wait_for_first_calls")
    assert final["id"] == campaign["id"] and final["status_completed"] >= 1


# -- the warehouse lead feed -----------------------------------------------------------------------------------

WAREHOUSE_ROWS = [
    # lead_id, first_name, last_name, phone, email, birth_date, zip, state, updated_at
    ("W-1", "Ann", "Lee", "(212) 555-0101", "ann@example.com", "1958-04-02", "10001", "NY", "2026-03-01 08:00:00"),
    ("W-2", "Bob", "Ray", "305.555.0102", None, "04/05/1959", None, "FL", "2026-03-01 09:30:00"),
    ("W-3", "Cy", "Oak", "+420 601 123 456", None, "1960-01-01", "60200", None, "2026-03-01 10:00:00"),
    ("W-4", "Di", "Elm", "713-555-0104", None, "1961-02-03", "77001", "TX", "2026-03-01 23:59:59"),
    ("W-5", "Ed", "Ash", "602-555-0105", None, "1962-03-04", "85001", "AZ", "2026-02-28 23:59:59"),  # day before
    ("W-6", "Flo", "Fir", "312-555-0106", None, "1963-04-05", "60601", "IL", "2026-03-02 00:00:00"),  # day after
]


@pytest.fixture
def warehouse(tmp_path, monkeypatch):
    """A SQLite "warehouse" with a ``marketing_leads`` table, behind the ``warehouse_default`` connection."""
    path = tmp_path / "warehouse.db"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE marketing_leads (lead_id TEXT, first_name TEXT, last_name TEXT, phone TEXT, email TEXT,"
            " birth_date TEXT, zip TEXT, state TEXT, updated_at TEXT)"
        )
        db.executemany("INSERT INTO marketing_leads VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", WAREHOUSE_ROWS)
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_DEFAULT", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    return path


@pytest.mark.airflow_dag
def test_warehouse_lead_feed_uploads_the_days_rows_and_fails_on_a_rejected_one(
    run_dag_file, warehouse, carecycle_emulator, tmp_path
):
    out = tmp_path / "out"
    dag_run = run_dag_file(WAREHOUSE_FEED, **RUN_DATE, run_conf={"output_root": out.as_uri()})

    # W-3 has a Czech phone: the strict failure policy fails the task, after uploading every valid row
    assert task_states(dag_run) == {"warehouse_to_leads": "failed"}
    uploaded = carecycle_emulator.get_customers_by_external_id()
    assert {"W-1", "W-2", "W-4"} <= set(uploaded)
    assert not {"W-3", "W-5", "W-6"} & set(uploaded)  # rejected, or outside the run's day
    assert uploaded["W-2"][0]["phoneNumber"].endswith("3055550102")
    assert uploaded["W-2"][0]["timezone"] == "EST"  # the default filled the missing zip's place
    rejected = jsonl(out / "rejected" / "warehouse_leads_2026-03-01.jsonl")
    assert [(row["record"]["externalId"], row["field"]) for row in rejected] == [("W-3", "phoneNumber")]


@pytest.mark.airflow_dag
@pytest.mark.parametrize("mode", RUN_MODES)
def test_warehouse_lead_feed_succeeds_when_every_row_is_valid(
    run_dag_file, warehouse, carecycle_emulator, tmp_path, mode
):
    with sqlite3.connect(warehouse) as db:
        db.execute("DELETE FROM marketing_leads WHERE lead_id = 'W-3'")
    out = tmp_path / "out"
    dag_run = run_dag_file(WAREHOUSE_FEED, **manual_run(DAY, mode), run_conf={"output_root": out.as_uri()})

    check_run_interval(dag_run, mode, DAY)
    assert task_states(dag_run) == {"warehouse_to_leads": "success"}
    summary = dag_run.get_task_instance("warehouse_to_leads").xcom_pull(task_ids="warehouse_to_leads")
    assert (summary["total"], summary["uploaded"], summary["rejected"]) == (3, 3, 0)
    assert {"W-1", "W-2", "W-4"} <= set(carecycle_emulator.get_customers_by_external_id())
    assert (out / "rejected" / "warehouse_leads_2026-03-01.jsonl").read_text() == ""


# -- the customer export ---------------------------------------------------------------------------------------


def busiest_creation_day(emulator, not_before: datetime) -> datetime:
    """The day on which the most seeded customers with calls were created (the seed moves with today's date)."""
    days: dict[str, int] = {}
    for customer in emulator.query_customers({}):
        if customer.get("totalCalls") and customer["createdAt"][:10] >= not_before.date().isoformat():
            days[customer["createdAt"][:10]] = days.get(customer["createdAt"][:10], 0) + 1
    day = max(sorted(days), key=days.get)
    return datetime.fromisoformat(day).replace(tzinfo=timezone.utc)


def calls_placed(emulator, day: datetime) -> set[str]:
    """The ids of the calls the emulator holds placed on ``day`` (test numbers left out, as the API lists them)."""
    low, high = (f"{d:%Y-%m-%d}T00:00:00.000Z" for d in (day, day + timedelta(days=1)))
    rows = emulator.store.db.execute(
        "SELECT c.id FROM calls c JOIN customers k ON k.id = c.customer_id "
        "WHERE c.created_at >= ? AND c.created_at < ? AND k.test_customer = 0",
        (low, high),
    )
    return {row[0] for row in rows}


def touched_on(emulator, day: datetime) -> set[str]:
    """The ids of the customers created or last called on ``day``."""
    text = day.date().isoformat()
    return {
        c["id"]
        for c in emulator.query_customers({})
        if c["createdAt"][:10] == text or (c["lastCallDate"] or "")[:10] == text
    }


def diff_path(dag_run) -> str:
    """The file the weekly diff run wrote (its name is the end of its week)."""
    return dag_run.get_task_instance("customers_diff").xcom_pull(task_ids="customers_diff")["path"]


@pytest.mark.airflow_dag
@pytest.mark.parametrize("mode", RUN_MODES)
def test_customer_export_writes_every_call_and_the_touched_customers_of_three_days_and_a_weekly_diff(
    run_dag_file, carecycle_emulator, tmp_path, mode
):
    emu = carecycle_emulator
    emu.reset(customers=150)
    first = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=3)
    days = [first + timedelta(days=n) for n in range(3 if mode == "with_logical_date" else 1)]
    conf = {"output_root": tmp_path.as_uri()}
    before = run_dag_file(CUSTOMER_EXPORT, dag_id="carecycle_customer_diff", **manual_run(days[0], mode), run_conf=conf)
    assert task_states(before) == {"customers_diff": "success"}
    total_calls = {c["id"]: c["totalCalls"] for c in emu.query_customers({})}
    assert {r["id"] for r in iter_records(diff_path(before))} == set(total_calls)  # the first diff: all new

    held = []
    for day in days:  # the dialer calls on each day, and the day's run follows
        assert sum(emu.tick_dialer(1, at=day + timedelta(hours=h)) for h in (9, 13, 17)) > 0
        expected_calls, expected_customers = calls_placed(emu, day), touched_on(emu, day)
        dag_run = run_dag_file(
            CUSTOMER_EXPORT, dag_id="carecycle_customer_export", **manual_run(day, mode), run_conf=conf
        )
        check_run_interval(dag_run, mode, day)
        assert task_states(dag_run) == dict.fromkeys(["export_calls", "export_customers", "campaign_stats"], "success")
        calls = jsonl(tmp_path / "calls" / f"{day.date()}.jsonl")
        assert [c["id"] for c in calls if c["id"] in expected_calls] == [c["id"] for c in calls]  # no other day's
        assert len(calls) == len(expected_calls) > 0 and all("transcript" not in c and c["customerId"] for c in calls)
        customers = jsonl(tmp_path / "customers" / f"{day.date()}.jsonl")
        assert sorted(c["id"] for c in customers) == sorted(expected_customers)
        assert all(c["extractedAt"] for c in customers)
        held.append((len(calls), len(customers)))
    stats = list(iter_records(tmp_path / "campaign_stats" / f"{days[0]:%Y-%m}.csv"))
    active = [c["id"] for c in emu.list_campaigns() if c["status"] == "active"]
    assert {row["id"] for row in stats} == set(active)

    after = run_dag_file(CUSTOMER_EXPORT, dag_id="carecycle_customer_diff", **manual_run(days[0], mode), run_conf=conf)
    assert task_states(after) == {"customers_diff": "success"}
    changes = list(iter_records(diff_path(after)))
    called = {c["id"] for c in emu.query_customers({}) if c["totalCalls"] != total_calls[c["id"]]}
    assert {c["id"] for c in changes} == called and {c["changeType"] for c in changes} == {"changed"}
    print(f"three-day run: (calls, customers touched) per day {held}; weekly diff: {len(changes)} changed")


def test_the_crm_feed_keeps_its_production_poke_interval_and_the_harness_shortens_it():
    from airflow.models import DagBag

    from dev.dag_loader import FAST_POKE_INTERVAL_S, load_dag

    assert "environ" not in CRM_FEED.read_text()  # users copy this file: no test knobs in it
    parsed = DagBag(dag_folder=str(CRM_FEED)).dags["carecycle_crm_lead_feed"]
    assert parsed.get_task("wait_for_first_calls").poke_interval == 300
    loaded = load_dag(CRM_FEED)
    assert loaded.get_task("wait_for_first_calls").poke_interval == FAST_POKE_INTERVAL_S
    assert load_dag(CRM_FEED, poke_interval_s=None).get_task("wait_for_first_calls").poke_interval == 300
