from __future__ import annotations

import datetime as dt
import errno
import gzip
import json
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from airflow_provider_carecycle import storage
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
    assert detect_format("/tmp/x.parquet") == ("parquet", False)
    with pytest.raises(ValueError, match="Cannot tell the format"):
        detect_format("/tmp/x.xlsx")


# -- appending ------------------------------------------------------------------------------------------------


def _snapshot(run: int, rows: int = 3) -> list[dict[str, object]]:
    return [{"run": run, "i": i, "pad": f"{run:04d}-{i:04d}-" + uuid.uuid4().hex} for i in range(rows)]


def _append(target, run: int, rows: int = 3, **kwargs) -> RecordWriter:
    with RecordWriter(str(target), append=True, **kwargs) as writer:
        writer.write_all(_snapshot(run, rows))
    return writer


@pytest.mark.parametrize("name", ["series.jsonl", "series.jsonl.gz", "series.csv", "series.csv.gz"])
def test_appending_several_snapshots_keeps_every_row_in_order(tmp_path, name):
    target = tmp_path / name
    for run in range(5):
        assert _append(target, run).count == 3  # the rows this block wrote
    rows = list(iter_records(str(target)))
    assert [(str(r["run"]), str(r["i"])) for r in rows] == [(str(run), str(i)) for run in range(5) for i in range(3)]
    if name.endswith(".gz"):  # one gzip member per append: still one valid gzip stream for any reader
        assert gzip.decompress(target.read_bytes()).decode().count("\n") == (16 if ".csv" in name else 15)
    if ".csv" in name:
        text = gzip.decompress(target.read_bytes()).decode() if name.endswith(".gz") else target.read_text()
        assert text.count("run,i,pad") == 1  # no second header
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no .partial file left


def test_appending_to_csv_without_fieldnames_takes_the_file_header(tmp_path):
    target = tmp_path / "series.csv"
    target.write_bytes(b"run,total\r\n1,10\r\n")
    with RecordWriter(str(target), append=True) as writer:
        writer.write({"total": 20, "run": 2})  # other key order: the file's columns win
    assert target.read_bytes() == b"run,total\r\n1,10\r\n2,20\r\n"


def test_appending_with_new_csv_columns_rewrites_the_file_with_the_new_header(tmp_path):
    target = tmp_path / "series.csv"
    target.write_bytes(b"run,total\r\n1,10\r\n")
    with RecordWriter(str(target), append=True, fieldnames=["run", "total", "status_new"]) as writer:
        writer.write({"run": 2, "total": 20, "status_new": 1})
    assert target.read_bytes() == b"run,total,status_new\r\n1,10,\r\n2,20,1\r\n"


def test_appending_ends_an_unterminated_last_line_first(tmp_path):
    target = tmp_path / "series.jsonl"
    target.write_text('{"run": 1}')  # hand-written, no final newline
    _append(target, 2, rows=1)
    assert [r["run"] for r in iter_records(str(target))] == [1, 2]


def test_appending_to_a_json_array_is_refused_naming_the_file(tmp_path):
    target = tmp_path / "series.json"
    target.write_text('[{"run": 1}]')
    with pytest.raises(ValueError, match=r"Cannot append to 'series.json'.*\.jsonl"):
        RecordWriter(str(target), append=True)
    assert target.read_text() == '[{"run": 1}]'


def test_a_failed_block_appends_nothing(tmp_path):
    target = tmp_path / "series.csv"
    _append(target, 1)
    before = target.read_bytes()
    with pytest.raises(RuntimeError), RecordWriter(str(target), append=True) as writer:
        writer.write_all(_snapshot(2))
        raise RuntimeError("killed mid-way")
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["series.csv"]


@pytest.mark.parametrize("name", ["series.jsonl", "series.csv.gz"])
def test_a_copy_that_fails_half_way_is_truncated_back(tmp_path, monkeypatch, name):
    """The disk fills up while the new rows are appended: the file is as it was, not half a snapshot longer."""
    target = tmp_path / name
    _append(target, 1)
    before = target.read_bytes()
    real_write = storage._write_fully

    def disk_full(fd: int, data: bytes) -> None:
        real_write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage, "_write_fully", disk_full)
    with pytest.raises(OSError, match="No space left"):
        _append(target, 2, rows=50)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_a_task_killed_mid_block_leaves_the_previous_snapshots_intact(tmp_path):
    target = tmp_path / "series.jsonl"
    _append(target, 1)
    before = target.read_bytes()
    script = (
        "import os, signal, sys\n"
        "from airflow_provider_carecycle.storage import RecordWriter\n"
        "with RecordWriter(sys.argv[1], append=True) as writer:\n"
        "    writer.write_all({'run': 2, 'i': i} for i in range(1000))\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(target)], capture_output=True, timeout=120, check=False)
    assert done.returncode == -signal.SIGKILL
    assert target.read_bytes() == before


def test_appending_through_a_symlink_does_not_write_to_its_target(tmp_path):
    elsewhere = tmp_path / "elsewhere.jsonl"
    elsewhere.write_text('{"run": 0}\n')
    target = tmp_path / "series.jsonl"
    target.symlink_to(elsewhere)
    _append(target, 1, rows=1)
    assert elsewhere.read_text() == '{"run": 0}\n'
    assert not target.is_symlink() and [r["run"] for r in iter_records(str(target))] == [0, 1]


def test_without_a_local_append_the_file_is_rewritten_whole(tmp_path, monkeypatch):
    """Object stores (s3://, gs://) cannot append: the documented fallback copies the old rows into a new file."""
    monkeypatch.setattr(storage, "_is_local", lambda path: False)
    target = tmp_path / "series.csv.gz"
    for run in range(3):
        assert _append(target, run).count == 3
    assert [r["run"] for r in iter_records(str(target))] == [str(run) for run in range(3) for _ in range(3)]
    assert gzip.decompress(target.read_bytes()).decode().count("run,i,pad") == 1


def _io_bytes() -> int:
    """Bytes this process has passed through read() and write() system calls so far (Linux)."""
    counters = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return int(counters["rchar"]) + int(counters["wchar"])


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux /proc/self/io")
@pytest.mark.parametrize("name", ["series.jsonl", "series.csv", "series.csv.gz"])
def test_each_append_costs_the_same_however_long_the_file_is(tmp_path, name):
    """N appends cost O(N) in total: the bytes read and written by one append do not grow with the file.

    (Copying the file on every append made the 20th append cost about 20 times the 1st.)
    """
    target = tmp_path / name
    costs = []
    for run in range(20):
        before = _io_bytes()
        _append(target, run, rows=300)
        costs.append(_io_bytes() - before)
    steady = costs[2:]  # the first appends also import and create things
    assert max(steady) < 1.5 * min(steady), costs
    assert len(list(iter_records(str(target)))) == 20 * 300
