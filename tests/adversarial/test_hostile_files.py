"""Hostile input and output files: every problem is a clear error naming the file and row, and nothing is lost.

Each test here was written against a failure reproduced on main (issue 10, "Fail closed", part 3). Uploads run
through ``CareCycleUploadLeadsOperator`` against the emulator; the readers and writer are exercised directly.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_carecycle import storage
from airflow_provider_carecycle.leads.validation import LeadValidator
from airflow_provider_carecycle.operators.customers import CareCycleExtractCustomersOperator
from airflow_provider_carecycle.operators.leads import CareCycleUploadLeadsOperator
from airflow_provider_carecycle.storage import RecordWriter, iter_records

BOM = "\ufeff"
SECRET = "Zelda Quixote"  # a value that must never show in an error


def write(path: Path, text: str | bytes) -> str:
    data = text.encode("utf-8") if isinstance(text, str) else text
    if path.name.endswith(".gz"):
        data = gzip.compress(data)
    path.write_bytes(data)
    return str(path)


def lead(i: int, **extra: Any) -> dict[str, Any]:
    return {"externalId": f"h-{i}", "phoneNumber": f"212555{i:04d}", "postalCode": "10001", **extra}


def upload(tmp_path: Path, source: str, **kwargs: Any) -> dict[str, Any]:
    op = CareCycleUploadLeadsOperator(
        task_id="upload", source_path=source, rejected_path=str(tmp_path / "rejected.jsonl"), **kwargs
    )
    return op.execute({})


def rejected(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (tmp_path / "rejected.jsonl").read_text().splitlines()]


def read_error(path: str) -> ValueError:
    with pytest.raises(ValueError) as info:
        list(iter_records(path))
    return info.value


# -- 1. a UTF-8 byte order mark ---------------------------------------------------------------------------------

BOM_SOURCES = {
    "jsonl": "".join(json.dumps(lead(i)) + "\n" for i in range(3)),
    "json": json.dumps([lead(i) for i in range(3)]),
    "csv": "externalId,phoneNumber,postalCode\r\n" + "".join(f"h-{i},212555{i:04d},10001\r\n" for i in range(3)),
}


@pytest.mark.parametrize("fmt", sorted(BOM_SOURCES))
@pytest.mark.parametrize("gz", ["", ".gz"])
def test_a_byte_order_mark_is_accepted_in_every_format(tmp_path, fmt, gz):
    path = write(tmp_path / f"leads.{fmt}{gz}", BOM + BOM_SOURCES[fmt])
    rows = list(iter_records(path))
    assert [str(r["externalId"]) for r in rows] == ["h-0", "h-1", "h-2"]
    assert all(not key.startswith(BOM) for row in rows for key in row)


def test_excel_csv_utf8_keeps_its_first_column_when_unknown_fields_are_dropped(carecycle_emulator, tmp_path):
    source = write(tmp_path / "excel.csv", BOM + BOM_SOURCES["csv"])
    result = upload(tmp_path, source, drop_unknown_fields=True)
    assert result["total"] == result["uploaded"] == 3
    stored = carecycle_emulator.get_customers_by_external_id()
    assert all(len(stored[f"h-{i}"]) == 1 for i in range(3))


# -- 2. malformed files: one ValueError naming the file and the row, never the content ----------------------------


def test_a_malformed_jsonl_line_names_its_file_line_counting_blank_lines(tmp_path):
    path = write(tmp_path / "leads.jsonl", '{"a": 1}\n\n\n{"name": "' + SECRET + '"\n{"a": 2}\n')
    error = read_error(path)
    assert "leads.jsonl" in str(error) and "line 4" in str(error)
    assert "Zelda" not in str(error)


def test_a_jsonl_line_that_is_not_an_object_names_its_file_line(tmp_path):
    path = write(tmp_path / "leads.jsonl", '{"a": 1}\n\n["' + SECRET + '"]\n')
    error = read_error(path)
    assert "line 3" in str(error) and "leads.jsonl" in str(error) and "Zelda" not in str(error)


BAD_UTF8 = SECRET.encode() + b"\xff\xfe"


@pytest.mark.parametrize(
    ("name", "data", "where"),
    [
        ("leads.jsonl", b'{"a": 1}\n\n{"name": "' + BAD_UTF8 + b'"}\n', "line 3"),
        ("leads.jsonl.gz", b'{"a": 1}\n{"name": "' + BAD_UTF8 + b'"}\n', "line 2"),
        ("leads.csv", b"name,zip\r\nok,10001\r\n" + BAD_UTF8 + b",10001\r\n", "line 3"),
        ("leads.json", b'[{"a": 1},\n{"name": "' + BAD_UTF8 + b'"}]', "line 2"),
    ],
)
def test_invalid_utf8_names_the_file_and_line(tmp_path, name, data, where):
    error = read_error(write(tmp_path / name, data))
    assert not isinstance(error, UnicodeError)
    assert name in str(error) and where in str(error) and "UTF-8" in str(error)
    assert "Zelda" not in str(error)


@pytest.mark.parametrize("name", ["leads.jsonl.gz", "leads.csv.gz", "leads.json.gz"])
def test_a_truncated_gzip_is_a_clear_error(tmp_path, name):
    records = [lead(i, firstName=SECRET) for i in range(2000)]
    if ".csv" in name:
        text = "externalId,firstName\n" + "".join(f"{r['externalId']},{SECRET}\n" for r in records)
    elif ".jsonl" in name:
        text = "".join(json.dumps(r) + "\n" for r in records)
    else:
        text = json.dumps(records)
    whole = gzip.compress(text.encode())
    path = tmp_path / name
    path.write_bytes(whole[: len(whole) // 2])
    error = read_error(str(path))
    assert not isinstance(error, (EOFError, OSError))
    assert name in str(error) and "gzip" in str(error) and "Zelda" not in str(error)


def test_a_file_that_is_not_gzip_at_all_is_a_clear_error(tmp_path):
    path = tmp_path / "leads.jsonl.gz"
    path.write_text('{"name": "' + SECRET + '"}\n')
    error = read_error(str(path))
    assert "leads.jsonl.gz" in str(error) and "gzip" in str(error) and "Zelda" not in str(error)


def test_a_csv_field_over_the_field_size_limit_names_the_file_and_line(tmp_path):
    huge = SECRET * (csv.field_size_limit() // len(SECRET) + 10)
    path = write(tmp_path / "leads.csv", f"name,zip\r\nok,10001\r\n{huge},10001\r\n")
    error = read_error(path)
    assert not isinstance(error, csv.Error)
    assert "leads.csv" in str(error) and "line 3" in str(error) and "field size limit" in str(error)
    assert "Zelda" not in str(error)


@pytest.mark.parametrize(
    ("name", "text", "where"),
    [
        ("deep.jsonl", '{"a": 1}\n' + '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}\n", "line 2"),
        ("deep.json", '[{"a": 1},\n{"a": ' + "[" * 100_000 + "]" * 100_000 + "}]", "line 2"),
    ],
)
def test_deeply_nested_json_is_a_clear_error(tmp_path, name, text, where):
    error = read_error(write(tmp_path / name, text))
    assert not isinstance(error, RecursionError)
    assert name in str(error) and where in str(error) and "nested too deeply" in str(error)


def test_the_operator_fails_on_a_broken_file_with_the_files_name_and_line(carecycle_emulator, tmp_path):
    source = write(tmp_path / "feed.jsonl", json.dumps(lead(1)) + "\n\n" + '{"firstName": "' + SECRET + '"\n')
    with pytest.raises(ValueError, match=r"feed\.jsonl.*line 3") as info:
        upload(tmp_path, source)
    assert "Zelda" not in str(info.value)


# -- 3. CSV rows with more values than the header: rejected with a reason, nothing lost ----------------------------


@pytest.mark.parametrize("drop_unknown_fields", [False, True])
def test_a_csv_row_with_extra_values_is_rejected_and_the_rest_go_through(
    carecycle_emulator, tmp_path, drop_unknown_fields
):
    source = write(
        tmp_path / "leads.csv",
        "externalId,phoneNumber,postalCode\r\n"
        "h-1,2125550001,10001\r\n"
        f"h-2,2125550002,10001,{SECRET},extra\r\n"
        "h-3,2125550003,10001\r\n",
    )
    result = upload(tmp_path, source, max_rejected_ratio=0.5, drop_unknown_fields=drop_unknown_fields)

    assert result["total"] == 3 and result["uploaded"] == 2 and result["rejected"] == 1
    (entry,) = rejected(tmp_path)
    assert entry["row"] == 2 and entry["stage"] == "validation"
    assert "5 values" in entry["reason"] and "header has 3" in entry["reason"]
    assert "Zelda" not in entry["reason"]
    assert entry["record"]["externalId"] == "h-2"
    assert SECRET in json.dumps(entry["record"]) and "extra" in json.dumps(entry["record"])  # nothing lost
    stored = carecycle_emulator.get_customers_by_external_id()
    assert "h-1" in stored and "h-3" in stored and "h-2" not in stored


def test_a_row_with_extra_values_read_directly_keeps_them_and_says_why(tmp_path):
    path = write(tmp_path / "x.csv", "a,b\r\n1,2,3\r\n")
    (row,) = iter_records(path)
    assert isinstance(row, storage.MalformedRow)
    assert row["a"] == "1" and row["b"] == "2" and row[storage.EXTRA_VALUES_KEY] == ["3"]
    assert row.problem == "the CSV row has 3 values, the header has 2"
    assert None not in row


def test_a_forged_marker_key_in_json_is_not_a_malformed_row(tmp_path):
    path = write(tmp_path / "x.jsonl", json.dumps({storage.EXTRA_VALUES_KEY: [SECRET], **lead(1)}) + "\n")
    (row,) = iter_records(path)
    assert not isinstance(row, storage.MalformedRow)
    result = LeadValidator().validate(row)
    assert [r.code for r in result.rejections] == ["unknown_field"]


@pytest.mark.parametrize("content", ["", "externalId,phoneNumber,postalCode\r\n", BOM])
def test_an_empty_or_header_only_csv_is_a_green_run_of_nothing(carecycle_emulator, tmp_path, content):
    result = upload(tmp_path, write(tmp_path / "leads.csv", content))
    assert result["total"] == result["rejected"] == result["uploaded"] == 0


def test_every_csv_data_row_is_counted_short_rows_too(carecycle_emulator, tmp_path):
    source = write(
        tmp_path / "leads.csv",
        "externalId,phoneNumber,postalCode\r\nh-1,2125550001,10001\r\nh-2,2125550002\r\nh-3,2125550003,10001,x\r\n",
    )
    result = upload(tmp_path, source, max_rejected_ratio=1.0)
    assert result["total"] == 3 and result["uploaded"] == 1 and result["rejected"] == 2
    assert {entry["row"] for entry in rejected(tmp_path)} == {2, 3}


def test_a_csv_header_with_a_repeated_column_is_an_error_not_a_silent_loss(tmp_path):
    path = write(tmp_path / "dup.csv", "phone,zip,phone\r\n1,2,3\r\n")
    error = read_error(path)
    assert "dup.csv" in str(error) and "columns 1 and 3" in str(error)


# -- 4. the .json array reader is linear in its input ----------------------------------------------------------


class CountingDecoder(json.JSONDecoder):
    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0
        self.scanned = 0

    def raw_decode(self, s: str, idx: int = 0) -> tuple[Any, int]:
        self.attempts += 1
        self.scanned += len(s) - idx
        return super().raw_decode(s, idx)


def test_one_element_spanning_many_chunks_is_decoded_a_few_times_not_once_per_chunk(tmp_path, monkeypatch):
    decoder = CountingDecoder()
    monkeypatch.setattr(storage, "_READ_CHUNK", 64)
    monkeypatch.setattr(storage, "_DECODER", decoder)
    element = {"externalId": "big", "notes": ["x" * 1000 for _ in range(200)]}  # ~200 KB: ~3,200 chunks
    text = json.dumps([{"a": 1}, element, {"b": 2}])
    path = write(tmp_path / "big.json", text)

    assert list(iter_records(path)) == [{"a": 1}, element, {"b": 2}]
    assert decoder.attempts <= 40  # doubling: about log2(3,200) attempts, not one per chunk
    assert decoder.scanned <= 4 * len(text)  # every character is scanned a bounded number of times


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[{"a": 1} {"b": 2}]', "expected ',' or ']'"),
        ('[{"a": 1},, {"b": 2}]', "line 1"),
        ('[{"a": 1}] [{"b": 2}]', "after the closing"),
        ('[{"a": 1}, {"b": x}]', "not valid JSON"),
        ('[{"a": 1},\n\n{"name": "' + SECRET + '"', "line 3"),
    ],
)
def test_a_malformed_json_array_is_an_error_naming_the_line(tmp_path, text, message):
    error = read_error(write(tmp_path / "bad.json", text))
    assert message in str(error) and "bad.json" in str(error) and "Zelda" not in str(error)


def test_an_early_syntax_error_is_reported_without_reading_the_rest(tmp_path, monkeypatch):
    reads: list[int] = []
    original = storage._read_chunk

    def counting(text: Any) -> str:
        reads.append(1)
        return original(text)

    monkeypatch.setattr(storage, "_READ_CHUNK", 64)
    monkeypatch.setattr(storage, "_read_chunk", counting)
    path = write(tmp_path / "bad.json", '[{"a": x},' + ",".join(json.dumps(lead(i)) for i in range(5000)) + "]")
    assert "not valid JSON" in str(read_error(path))
    assert len(reads) <= 3


# -- 5. names with NUL or bidi controls --------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["firstName", "lastName"])
@pytest.mark.parametrize(
    ("char", "rule"),
    [
        ("\x00", "control character U+0000"),
        ("\u202e", "bidirectional control character U+202E"),
        ("\u202a", "bidirectional control character U+202A"),
        ("\u2066", "bidirectional control character U+2066"),
        ("\u2069", "bidirectional control character U+2069"),
        ("\u200f", "bidirectional control character U+200F"),
        ("\u200e", "bidirectional control character U+200E"),
        ("\x1b", "control character U+001B"),
    ],
)
def test_names_with_nul_or_bidi_controls_are_rejected_without_the_value(field, char, rule):
    result = LeadValidator().validate(lead(1, **{field: f"Zel{char}da"}))
    (rejection,) = result.rejections
    assert rejection.field == field and rejection.code == "invalid_format"
    assert rule in rejection.reason and "Zel" not in rejection.reason


@pytest.mark.parametrize("field", ["city", "address", "medicaidNumber"])
def test_a_nul_is_rejected_in_any_text_field(field):
    result = LeadValidator().validate(lead(1, **{field: "a\x00b@example.com"}))
    assert [(r.field, r.code) for r in result.rejections] == [(field, "invalid_format")]


def test_a_nul_in_an_optional_email_never_reaches_carecycle():
    """An invalid optional field does not cost the call (``invalid_optional="drop"``, the default): the e-mail with
    the NUL is dropped, not sent; with ``invalid_optional="reject"`` the lead is rejected as before."""
    dropped = LeadValidator().validate(lead(1, email="a\x00b@example.com"))
    assert dropped.ok and dropped.lead is not None and "email" not in dropped.lead
    assert [(r.field, r.code) for r in dropped.dropped] == [("email", "invalid_format")]
    rejected = LeadValidator(invalid_optional="reject").validate(lead(1, email="a\x00b@example.com"))
    assert [(r.field, r.code) for r in rejected.rejections] == [("email", "invalid_format")]


def test_names_in_other_scripts_are_still_accepted():
    result = LeadValidator().validate(lead(1, firstName="דוד", lastName="Zoë O'Brien-Núñez"))
    assert result.ok, result.rejections


def test_a_hostile_name_is_rejected_through_the_operator(carecycle_emulator, tmp_path):
    source = write(
        tmp_path / "leads.jsonl", "".join(json.dumps(r) + "\n" for r in [lead(1), lead(2, lastName="\u202eevil")])
    )
    result = upload(tmp_path, source, max_rejected_ratio=0.5)
    assert result["uploaded"] == 1 and result["rejected"] == 1
    (entry,) = rejected(tmp_path)
    assert entry["field"] == "lastName" and "U+202E" in entry["reason"] and "evil" not in entry["reason"]


# -- 6. CSV exports neutralise formulas -------------------------------------------------------------------------

FORMULAS = ["=1+1", "+SUM(A1)", "-2+3", "@cmd", "\tx", "\rx", '=HYPERLINK("http://evil")']


def test_csv_cells_that_start_a_formula_are_escaped_by_default(tmp_path):
    target = tmp_path / "out.csv"
    with RecordWriter(str(target)) as writer:
        for value in FORMULAS:
            writer.write({"=name": value, "n": -5, "phone": "+12125550142", "ok": "Zelda"})
    with open(target, newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["'=name", "n", "phone", "ok"]
    assert [row[0] for row in rows[1:]] == ["'" + value for value in FORMULAS]
    assert {tuple(row[1:]) for row in rows[1:]} == {("-5", "+12125550142", "Zelda")}  # plain numbers stay


def test_csv_formula_escaping_can_be_turned_off_and_never_touches_json(tmp_path):
    with RecordWriter(str(tmp_path / "raw.csv"), csv_formula_escape=False) as writer:
        writer.write({"name": "=1+1"})
    with RecordWriter(str(tmp_path / "out.jsonl")) as writer:
        writer.write({"name": "=1+1"})
    assert (tmp_path / "raw.csv").read_text().splitlines() == ["name", "=1+1"]
    assert list(iter_records(str(tmp_path / "out.jsonl"))) == [{"name": "=1+1"}]


@pytest.mark.parametrize(
    ("escape", "cell"), [(True, '\'=HYPERLINK("http://evil")'), (False, '=HYPERLINK("http://evil")')]
)
def test_the_customer_export_escapes_formulas_unless_told_not_to(carecycle_emulator, tmp_path, escape, cell):
    source = write(tmp_path / "leads.jsonl", json.dumps(lead(1, firstName='=HYPERLINK("http://evil")')) + "\n")
    assert upload(tmp_path, source)["uploaded"] == 1
    kwargs = {} if escape else {"csv_formula_escape": False}
    op = CareCycleExtractCustomersOperator(
        task_id="export",
        output_path=str(tmp_path / "customers.csv"),
        fields=["externalId", "firstName"],
        hook_params={"requests_per_minute": 6000},
        **kwargs,
    )
    op.execute({})
    with open(tmp_path / "customers.csv", newline="") as handle:
        rows = {row["externalId"]: row for row in csv.DictReader(handle)}
    assert rows["h-1"]["firstName"] == cell


# -- 7. files holding PHI are private ----------------------------------------------------------------------------


def mode(path: Path | str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("prefix", ["", "file://"])
@pytest.mark.parametrize("name", ["out.jsonl", "out.csv.gz", "out.json"])
@pytest.mark.parametrize("unnamed", [True, False], ids=["unnamed-while-written", "partial-file-fallback"])
def test_written_files_and_their_partial_files_are_private(tmp_path, prefix, name, unnamed, monkeypatch):
    if not unnamed:  # no O_TMPFILE (not Linux, or a file system without it): a hidden .partial file instead
        monkeypatch.setattr(storage, "anonymous_file", lambda folder: None)
    old = os.umask(0o022)
    try:
        with RecordWriter(f"{prefix}{tmp_path / name}") as writer:
            writer.write(lead(1))
            named = list(tmp_path.iterdir())
            if unnamed:
                assert named == []  # nothing under any name while it is written
            else:
                assert len(named) == 1 and named[0].name.endswith(".partial") and mode(named[0]) == 0o600
    finally:
        os.umask(old)
    assert mode(tmp_path / name) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_an_earlier_world_readable_file_is_replaced_by_a_private_one(tmp_path):
    target = tmp_path / "series.csv"
    target.write_text("run\n1\n")
    target.chmod(0o644)
    with RecordWriter(str(target), append=True) as writer:
        writer.write({"run": 2})
    assert mode(target) == 0o600 and [r["run"] for r in iter_records(str(target))] == ["1", "2"]


def test_the_rejected_file_and_the_export_are_private(carecycle_emulator, tmp_path):
    source = write(tmp_path / "leads.jsonl", json.dumps(lead(1, phoneNumber="nope")) + "\n")
    upload(tmp_path, source, max_rejected_ratio=1.0)
    assert mode(tmp_path / "rejected.jsonl") == 0o600
    CareCycleExtractCustomersOperator(
        task_id="export", output_path=str(tmp_path / "c.jsonl"), hook_params={"requests_per_minute": 6000}
    ).execute({})
    assert mode(tmp_path / "c.jsonl") == 0o600
