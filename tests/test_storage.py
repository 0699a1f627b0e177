from __future__ import annotations

import datetime as dt
import gzip
import json

import pytest

from airflow_provider_carecycle.storage import RecordWriter, detect_format, iter_records

ROWS = [
    {"id": "a", "n": 1, "nested": {"x": [1, 2]}, "when": dt.date(2026, 1, 2)},
    {"id": "b", "n": 2, "nested": None, "when": None},
]
JSONABLE = [json.loads(json.dumps(r, default=str)) for r in ROWS]


@pytest.mark.parametrize("name", ["out.jsonl", "out.jsonl.gz", "out.json", "out.json.gz", "out.ndjson"])
def test_json_formats_round_trip(tmp_path, name):
    target = tmp_path / "sub" / name
    with RecordWriter(str(target)) as writer:
        writer.write_all(ROWS)
    assert writer.count == 2
    assert list(iter_records(str(target))) == JSONABLE
    if name.endswith(".gz"):
        assert gzip.open(target).read()  # really gzip


@pytest.mark.parametrize("name", ["out.csv", "out.csv.gz"])
def test_csv_round_trip_flattens_nested_values_as_json(tmp_path, name):
    target = tmp_path / name
    with RecordWriter(f"file://{target}") as writer:
        writer.write_all(ROWS)
    rows = list(iter_records(str(target)))
    assert [r["id"] for r in rows] == ["a", "b"]
    assert json.loads(rows[0]["nested"]) == {"x": [1, 2]}
    assert rows[0]["when"] == "2026-01-02" and rows[1]["when"] == ""


def test_csv_fieldnames_project_and_warn_on_dropped(tmp_path, caplog):
    target = tmp_path / "out.csv"
    with RecordWriter(str(target), fieldnames=["id"]) as writer:
        writer.write_all(ROWS)
    assert target.read_text().splitlines() == ["id", "a", "b"]


def test_failed_write_leaves_nothing_behind(tmp_path):
    target = tmp_path / "out.jsonl"
    target.write_text('{"old": true}\n')
    with pytest.raises(RuntimeError), RecordWriter(str(target)) as writer:
        writer.write({"id": 1})
        raise RuntimeError("killed mid-way")
    assert target.read_text() == '{"old": true}\n'  # the previous complete file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]  # no partial file left


def test_append_keeps_earlier_rows(tmp_path):
    target = tmp_path / "series.csv"
    for n in (1, 2):
        with RecordWriter(str(target), append=True) as writer:
            writer.write({"run": n, "total": n * 10})
    assert [r["run"] for r in iter_records(str(target))] == ["1", "2"]


def test_json_array_is_streamed_across_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr("airflow_provider_carecycle.storage._READ_CHUNK", 7)
    target = tmp_path / "big.json"
    records = [{"i": i, "text": "x" * (i % 13)} for i in range(200)]
    target.write_text(json.dumps(records, indent=2))
    assert list(iter_records(str(target))) == records


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"a": 1}', "one JSON array"),
        ('[{"a": 1}, 2]', r"bad.json, line 1 \(element 2\): the record is a JSON number, not an object"),
        ('[{"a": 1}', "ends before the array's closing"),
        ('[{"a": ', "ends in the middle of a record"),
        ("[]", None),
        ("  [\n]\n ", None),
    ],
)
def test_bad_json_sources_name_the_row_not_the_content(tmp_path, content, message):
    target = tmp_path / "bad.json"
    target.write_text(content)
    if message is None:
        assert list(iter_records(str(target))) == []
        return
    with pytest.raises(ValueError, match=message):
        list(iter_records(str(target)))


def test_bad_jsonl_line_is_reported_without_content(tmp_path):
    target = tmp_path / "bad.jsonl"
    target.write_text('{"a": 1}\n{"name": "Jane Doe"\n')
    with pytest.raises(ValueError) as err:
        list(iter_records(str(target)))
    assert "Jane" not in str(err.value) and "bad.jsonl, line 2: not valid JSON" in str(err.value)


def test_format_detection():
    assert detect_format("s3://b/x.JSONL.GZ") == ("jsonl", True)
    assert detect_format("/tmp/x.data", "csv") == ("csv", False)
    with pytest.raises(ValueError, match="Cannot tell the format"):
        detect_format("/tmp/x.parquet")
