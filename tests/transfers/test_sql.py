"""SqlToCareCycleLeadsOperator: a real SQLite database, uploaded to the careCycle emulator."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import requests

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


#: the consent-column pattern of docs/operators/sql-to-carecycle.md: the flag is set, or left out (NULL), never false
CONSENT_SQL = """
SELECT
    crm_id AS "externalId",
    mobile AS "phoneNumber",
    zip    AS "postalCode",
    CASE WHEN marketing_consent = 'withdrawn' OR deleted = 1 THEN 1 END AS "doNotCall",
    CASE WHEN sms_consent = 'withdrawn' OR deleted = 1 THEN 1 END       AS "doNotSMS"
FROM consented_contacts
ORDER BY crm_id
"""


def test_a_consent_column_sets_the_flags_and_never_clears_one(carecycle_emulator, tmp_path, monkeypatch):
    path = tmp_path / "consent.db"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE consented_contacts (crm_id TEXT, mobile TEXT, zip TEXT, marketing_consent TEXT, "
        "sms_consent TEXT, deleted INTEGER)"
    )
    db.executemany(
        "INSERT INTO consented_contacts VALUES (?, ?, ?, ?, ?, ?)",
        [
            ("c-given", "3055550101", "33101", "given", "given", 0),
            ("c-withdrawn", "3055550102", "33101", "withdrawn", "given", 0),
            ("c-sms", "3055550103", "33101", "given", "withdrawn", 0),
            ("c-deleted", "3055550104", "33101", "given", None, 1),
            ("c-heard", "3055550105", "33101", "given", "given", 0),
        ],
    )
    db.commit()
    db.close()
    monkeypatch.setenv("AIRFLOW_CONN_CONSENT_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    # careCycle already holds c-heard as do-not-call (said on a call): a warehouse "given" must not clear it
    heard = {"phoneNumber": "3055550105", "postalCode": "33101", "externalId": "c-heard", "doNotCall": True}
    answer = requests.post(
        f"{carecycle_emulator.url}/v2/leads/upload",
        headers={"x-api-key": "cc_test_key"},
        json={"records": [heard]},
        timeout=10,
    )
    assert answer.ok
    result = SqlToCareCycleLeadsOperator(
        task_id="warehouse_to_carecycle", sql_conn_id="consent_warehouse", sql=CONSENT_SQL
    ).execute({})
    assert result["uploaded"] == 5 and result["rejected"] == 0
    held = {k: v[0] for k, v in carecycle_emulator.get_customers_by_external_id().items()}
    flags = {k: (c["doNotCall"], c["doNotSMS"]) for k, c in held.items() if k.startswith("c-")}
    assert flags == {
        "c-given": (False, False),
        "c-withdrawn": (True, False),
        "c-sms": (False, True),
        "c-deleted": (True, True),
        "c-heard": (True, False),
    }
