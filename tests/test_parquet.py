"""Parquet exports (the ``parquet`` extra): typed columns from one schema per entity, row groups, the same atomic
write as the other formats, read back with pyarrow; against the careCycle emulator."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import stat
import sys

import pytest

pa = pytest.importorskip("pyarrow", reason="the parquet extra (pyarrow) is not installed on this line")
pq = pytest.importorskip("pyarrow.parquet", reason="the parquet extra (pyarrow) is not installed on this line")

from airflow_provider_carecycle import parquet  # noqa: E402
from airflow_provider_carecycle.operators.customers import (  # noqa: E402
    CareCycleExtractCustomerCallsOperator,
    CareCycleExtractCustomersOperator,
)
from airflow_provider_carecycle.schemas import CALL_SCHEMA, CUSTOMER_SCHEMA, export_schema  # noqa: E402
from airflow_provider_carecycle.storage import RecordWriter, iter_records  # noqa: E402

FAST = {"requests_per_minute": 6000}
ARROW = {
    "string": pa.string(),
    "json": pa.string(),
    "text": pa.string(),
    "int64": pa.int64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("ms", tz="UTC"),
    "date": pa.date32(),
}


def moment(text):
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_whole_customers_round_trip_through_pyarrow_with_the_documented_schema(
    carecycle_emulator, tmp_path, captured_logs
):
    op = CareCycleExtractCustomersOperator(task_id="c", output_path=str(tmp_path / "c.parquet"), hook_params=FAST)
    summary = op.execute({})
    assert summary["format"] == "parquet"
    table = pq.read_table(tmp_path / "c.parquet")
    assert [(f.name, f.type) for f in table.schema] == [(name, ARROW[kind]) for name, kind in CUSTOMER_SCHEMA]
    assert stat.S_IMODE(os.stat(tmp_path / "c.parquet").st_mode) == 0o600
    expected = carecycle_emulator.query_customers({"sortBy": "createdAt", "sortDirection": "asc"})
    rows = table.to_pylist()
    assert summary["count"] == len(rows) == len(expected) > 0
    for row, customer in zip(rows, expected, strict=True):
        assert row["id"] == customer["id"] and row["totalCalls"] == customer["totalCalls"]
        assert row["createdAt"] == moment(customer["createdAt"])
        assert row["lastCallDate"] == (customer["lastCallDate"] and moment(customer["lastCallDate"]))
        assert row["testCustomer"] is customer["testCustomer"]
        assert json.loads(row["campaigns"]) == customer["campaigns"]
        assert row["dateOfBirth"] == (customer["dateOfBirth"] and dt.date.fromisoformat(customer["dateOfBirth"][:10]))
    # keys the emulator echoes beyond the vendor's documented fields are named (never their values), not written
    assert "has no column for ['phoneNumber', 'pulseNodeId']" in captured_logs()
    assert list(iter_records(tmp_path / "c.parquet"))[0]["id"] == rows[0]["id"]  # the package reads it back too


def test_calls_with_fields_are_typed_in_the_order_asked_in_row_groups(carecycle_emulator, tmp_path, monkeypatch):
    monkeypatch.setattr(parquet, "ROW_GROUP_ROWS", 7)
    ids = [c["id"] for c in carecycle_emulator.query_customers({"hasPriorAttempts": "true"})][:10]
    fields = ["createdAt", "id", "durationMs", "testFlag", "disposition"]
    op = CareCycleExtractCustomerCallsOperator(
        task_id="calls", customer_ids=ids, output_path=str(tmp_path / "calls.parquet"), fields=fields, hook_params=FAST
    )
    summary = op.execute({})
    file = pq.ParquetFile(tmp_path / "calls.parquet")
    types = dict(CALL_SCHEMA)
    assert [(f.name, f.type) for f in file.schema_arrow] == [
        (name, ARROW[types[name]]) for name in ["customerId", *fields]
    ]
    assert file.metadata.num_rows == summary["count"] > 7
    assert file.num_row_groups == math.ceil(summary["count"] / 7)
    assert all(isinstance(r["durationMs"], int) for r in file.read().to_pylist())


def test_a_diff_export_in_parquet_types_changetype_and_extractedat(carecycle_emulator, tmp_path):
    op = CareCycleExtractCustomersOperator(
        task_id="c",
        output_path=str(tmp_path / "diff.parquet"),
        changed="diff",
        state_path=str(tmp_path / "state.jsonl.gz"),
        fields=["id", "status", "source.name", "lastCallDate"],
        hook_params=FAST,
    )
    op.execute({})
    schema = pq.read_schema(tmp_path / "diff.parquet")
    assert [(f.name, f.type) for f in schema] == [
        ("id", pa.string()),
        ("status", pa.string()),
        ("source.name", pa.string()),
        ("lastCallDate", pa.timestamp("ms", tz="UTC")),
        ("changeType", pa.string()),
        ("extractedAt", pa.timestamp("ms", tz="UTC")),
    ]


def test_a_value_of_the_wrong_type_fails_naming_row_and_column_and_leaves_no_file(tmp_path):
    schema = export_schema("calls", ["id", "durationMs"])
    with pytest.raises(ValueError, match=r"row 2: the value of column 'durationMs' is not a int64 \(str\)") as err:
        with RecordWriter(tmp_path / "x.parquet", schema=schema) as writer:
            writer.write({"id": "a", "durationMs": 5})
            writer.write({"id": "b", "durationMs": "secret 555-0100"})
    assert "555" not in str(err.value) and not list(tmp_path.iterdir())


def test_an_unknown_field_is_a_text_column_and_nested_values_are_json(tmp_path):
    schema = export_schema("customers", ["id", "newField"])
    assert schema == [("id", "string"), ("newField", "text")]
    with RecordWriter(tmp_path / "x.parquet", schema=schema) as writer:
        writer.write({"id": "a", "newField": {"k": [1]}})
        writer.write({"id": "b", "newField": "plain"})
    assert pq.read_table(tmp_path / "x.parquet").to_pylist() == [
        {"id": "a", "newField": '{"k":[1]}'},
        {"id": "b", "newField": "plain"},
    ]


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("x.parquet.gz", {"schema": [("id", "string")]}, "drop the .gz"),
        ("x.parquet", {}, "needs a schema"),
        ("x.parquet", {"schema": [("id", "string")], "append": True}, "cannot be appended to"),
    ],
)
def test_parquet_writer_misuse_fails_clearly(tmp_path, name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        RecordWriter(tmp_path / name, **kwargs)


def test_without_pyarrow_the_error_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(ImportError, match=r"airflow-provider-carecycle\[parquet\]"):
        with RecordWriter(tmp_path / "x.parquet", schema=[("id", "string")]) as writer:
            writer.write({"id": "a"})
    assert not list(tmp_path.iterdir())


def test_a_broken_parquet_file_is_a_clear_error(tmp_path):
    (tmp_path / "x.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(ValueError, match="x.parquet: not a Parquet file"):
        list(iter_records(tmp_path / "x.parquet"))
