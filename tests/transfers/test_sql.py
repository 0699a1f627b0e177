"""SqlToCareCycleLeadsOperator: a real SQLite database, uploaded to the careCycle emulator."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from airflow_provider_carecycle.transfers.sql import SqlToCareCycleLeadsOperator, iter_rows


@pytest.fixture
def warehouse(tmp_path, monkeypatch):
    """A SQLite warehouse with 250 contacts (3 with bad phones) behind the Airflow connection ``warehouse``."""
    path = tmp_path / "warehouse.db"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE contacts (crm_id TEXT, mobile TEXT, zip TEXT, birth_date TEXT, income INTEGER, segment TEXT)"
    )
    rows = [
        (f"w-{i}", "bad" if i % 100 == 7 else f"(305) 555-{i:04d}", "33101", "1950-06-15", 40000 + i, "medicare")
        for i in range(250)
    ]
    rows.append(("other", "3055559999", "33101", None, None, "aca"))
    db.executemany("INSERT INTO contacts VALUES (?, ?, ?, ?, ?, ?)", rows)
    db.commit()
    db.close()
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    return path


MAPPING = {
    "externalId": "crm_id",
    "phoneNumber": "mobile",
    "postalCode": "zip",
    "dateOfBirth": "birth_date",
    "householdIncome": "income",
}


def test_query_rows_are_streamed_mapped_and_uploaded(carecycle_emulator, warehouse, tmp_path):
    op = SqlToCareCycleLeadsOperator(
        task_id="warehouse_to_carecycle",
        sql_conn_id="warehouse",
        sql="SELECT crm_id, mobile, zip, birth_date, income FROM contacts WHERE segment = :segment ORDER BY crm_id",
        parameters={"segment": "medicare"},
        field_mapping=MAPPING,
        rejected_path=str(tmp_path / "rejected.jsonl"),
        max_rejected_ratio=0.05,
        fetch_size=40,
        batch_size=100,
    )
    result = op.execute({})

    assert result == {**result, "total": 250, "uploaded": 247, "rejected": 3, "batches": 3}
    stored = carecycle_emulator.get_customers_by_external_id()
    assert "other" not in stored
    (customer,) = stored["w-12"]
    assert (customer["phoneNumber"], customer["dateOfBirth"]) == ("+13055550012", "1950-06-15")
    rejected = [json.loads(line) for line in Path(tmp_path / "rejected.jsonl").read_text().splitlines()]
    assert sorted(r["record"]["crm_id"] for r in rejected) == ["w-107", "w-207", "w-7"]
    assert {r["field"] for r in rejected} == {"phoneNumber"}


def test_unmapped_columns_are_rejected_unless_dropped(carecycle_emulator, warehouse, tmp_path):
    kwargs = {
        "task_id": "t",
        "sql_conn_id": "warehouse",
        "sql": "SELECT crm_id, mobile, zip, segment FROM contacts WHERE crm_id = 'w-1'",
        "field_mapping": {"externalId": "crm_id", "phoneNumber": "mobile", "postalCode": "zip"},
        "rejected_path": str(tmp_path / "rejected.jsonl"),
        "max_rejected_ratio": 1.0,
    }
    assert SqlToCareCycleLeadsOperator(**kwargs).execute({})["rejected"] == 1
    assert SqlToCareCycleLeadsOperator(**kwargs, drop_unknown_fields=True).execute({})["uploaded"] == 1


def test_a_non_sql_connection_is_refused(carecycle_emulator, tmp_path):
    op = SqlToCareCycleLeadsOperator(task_id="t", sql_conn_id="carecycle_default", sql="SELECT 1")
    with pytest.raises(ValueError, match="not a SQL"):
        op.execute({})


def test_a_statement_without_rows_is_refused():
    class Cursor:
        description = None

    with pytest.raises(ValueError, match="no result set"):
        list(iter_rows(Cursor(), 10))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sql": "SELECT 1", "sql_conn_id": ""}, "sql_conn_id must name"),
        ({"sql": "SELECT 1", "sql_conn_id": "db", "fetch_size": 0}, "fetch_size must be a positive"),
        ({"sql": "SELECT 1", "sql_conn_id": "db", "batch_size": 500}, "batch_size must be an integer"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SqlToCareCycleLeadsOperator(task_id="t", **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sql": " "}, "sql must render to a non-empty query"),
        ({"sql": "{{ params.empty }}"}, "sql must render to a non-empty query"),
        ({"sql": "SELECT 1", "parameters": "{{ params.empty }}"}, "parameters must render to a mapping"),
    ],
)
def test_templated_arguments_are_checked_once_rendered_before_the_query(
    kwargs, message, warehouse, carecycle_emulator, tmp_path
):
    op = SqlToCareCycleLeadsOperator(task_id="t", sql_conn_id="warehouse", **kwargs)  # no error: may be templates
    op.render_template_fields({"params": {"empty": ""}})
    with pytest.raises(ValueError, match=message):
        op.execute({})
    assert not carecycle_emulator.request_log()


def test_templated_fields():
    assert {"sql", "parameters", "field_mapping", "defaults", "rejected_path", "checkpoint_path"} <= set(
        SqlToCareCycleLeadsOperator.template_fields
    )
    assert ".sql" in SqlToCareCycleLeadsOperator.template_ext
