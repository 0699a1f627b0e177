"""Reading and writing record files on object storage, as streams.

Paths are ``ObjectStoragePath``-style URIs (``file://``, ``s3://``, ``gs://``, ...; a plain local path works too).
The format follows the name: ``.jsonl``/``.ndjson`` (JSON Lines), ``.json`` (one JSON array), ``.csv``, each
optionally ending ``.gz``. Readers yield one record at a time; writers write one at a time and only move the
finished file to its final name when the ``with`` block ends cleanly, so a failed or killed task never leaves a
truncated file where a downstream task would read it.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
import logging
import uuid
from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal
from typing import IO, Any

from airflow_provider_carecycle._compat import ObjectStoragePath

log = logging.getLogger(__name__)

FORMATS = ("jsonl", "json", "csv")
_SUFFIX_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv"}
_READ_CHUNK = 1 << 16


def to_path(uri: str | ObjectStoragePath) -> ObjectStoragePath:
    """An ``ObjectStoragePath`` for a URI or a plain local path.

    :param uri: ``s3://bucket/key``, ``file:///tmp/x.jsonl``, ``/tmp/x.jsonl``, or a path object.
    """
    if isinstance(uri, ObjectStoragePath):
        return uri
    text = str(uri)
    return ObjectStoragePath(text if "://" in text else f"file://{text}")


def detect_format(path: ObjectStoragePath | str, format: str | None = None) -> tuple[str, bool]:
    """``(format, gzipped)`` from an explicit format or from the file name.

    :param path: the file.
    :param format: ``jsonl``, ``json`` or ``csv`` to override the name.
    """
    name = to_path(path).name.lower()
    gzipped = name.endswith(".gz")
    if gzipped:
        name = name[:-3]
    if format is None:
        format = next((fmt for suffix, fmt in _SUFFIX_FORMATS.items() if name.endswith(suffix)), None)
        if format is None:
            raise ValueError(
                f"Cannot tell the format of {to_path(path).name!r}: name it .jsonl, .json or .csv "
                "(optionally .gz), or pass the format explicitly."
            )
    if format not in FORMATS:
        raise ValueError(f"Unknown format {format!r}; use one of {', '.join(FORMATS)}.")
    return format, gzipped


def json_default(value: Any) -> Any:
    """JSON encoding for the non-JSON values that databases and CSV readers produce."""
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _dumps(record: Any) -> str:
    return json.dumps(record, default=json_default, separators=(",", ":"), ensure_ascii=False)


def _open_text(path: ObjectStoragePath, mode: str, gzipped: bool) -> tuple[IO[str], list[IO[Any]]]:
    raw = path.open(mode + "b")
    handles: list[IO[Any]] = [raw]
    if gzipped:
        raw = gzip.GzipFile(fileobj=raw, mode=mode + "b")
        handles.insert(0, raw)
    text = io.TextIOWrapper(raw, encoding="utf-8", newline="" if mode == "w" else None)
    handles.insert(0, text)
    return text, handles


# -- reading --------------------------------------------------------------------------------------------------


def _iter_json_array(text: IO[str]) -> Iterator[Any]:
    """Yield the elements of one top-level JSON array, holding at most one element and one chunk in memory."""
    decoder = json.JSONDecoder()
    buffer, pos, started, done = "", 0, False, False
    while not done:
        chunk = text.read(_READ_CHUNK)
        buffer = buffer[pos:] + chunk
        pos = 0
        while True:
            while pos < len(buffer) and buffer[pos] in " \t\r\n,":
                pos += 1
            if pos >= len(buffer):
                break
            if not started:
                if buffer[pos] != "[":
                    raise ValueError("A .json source must hold one JSON array of records.")
                started, pos = True, pos + 1
                continue
            if buffer[pos] == "]":
                done = True
                break
            try:
                item, end = decoder.raw_decode(buffer, pos)
            except json.JSONDecodeError:
                if not chunk:
                    raise ValueError("The .json source ends in the middle of a record.") from None
                break  # need more text
            yield item
            pos = end
        if not chunk and not done:
            if started:
                raise ValueError("The .json source ends before its closing ']'.")
            return


def iter_records(uri: str | ObjectStoragePath, *, format: str | None = None) -> Iterator[dict[str, Any]]:
    """Yield the records of a JSON Lines, JSON array or CSV file, one at a time.

    Blank JSON Lines are skipped. A line or element that is not a JSON object raises ``ValueError`` naming its
    row number (1-based), never its content.

    :param uri: the file.
    :param format: ``jsonl``, ``json`` or ``csv``; default from the name.
    """
    path = to_path(uri)
    fmt, gzipped = detect_format(path, format)
    text, handles = _open_text(path, "r", gzipped)
    try:
        if fmt == "csv":
            yield from csv.DictReader(text)
            return
        rows: Iterable[Any]
        if fmt == "json":
            rows = _iter_json_array(text)
        else:
            rows = (json.loads(line) for line in text if line.strip())
        for number, row in enumerate(rows, start=1):
            if not isinstance(row, dict):
                raise ValueError(f"Row {number} of {path.name} is a {type(row).__name__}, not a JSON object.")
            yield row
    except json.JSONDecodeError as err:
        raise ValueError(f"{path.name} is not valid JSON near line {err.lineno}.") from None
    finally:
        for handle in handles:
            handle.close()


# -- writing --------------------------------------------------------------------------------------------------


class RecordWriter:
    """Write records to ``uri`` as a stream; the file appears under its name only when the block ends cleanly.

    .. code-block:: python

        with RecordWriter("s3://bucket/out.jsonl.gz") as writer:
            for row in rows:
                writer.write(row)

    :param uri: the final file.
    :param format: ``jsonl``, ``json`` or ``csv``; default from the name.
    :param fieldnames: CSV columns; default the keys of the first record (later keys are dropped with a warning).
        Nested values are written to CSV cells as JSON text.
    :param append: keep the rows already in the file (copied into the new file first), for time series.
    """

    def __init__(
        self,
        uri: str | ObjectStoragePath,
        *,
        format: str | None = None,
        fieldnames: Iterable[str] | None = None,
        append: bool = False,
    ) -> None:
        self.path = to_path(uri)
        self.format, self.gzipped = detect_format(self.path, format)
        self.fieldnames = list(fieldnames) if fieldnames is not None else None
        self.append = append
        self.count = 0
        self._tmp = self.path.parent / f".{self.path.name}.{uuid.uuid4().hex[:12]}.partial"
        self._text: IO[str] | None = None
        self._handles: list[IO[Any]] = []
        self._csv: csv.DictWriter | None = None
        self._dropped: set[str] = set()

    def __enter__(self) -> RecordWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._text, self._handles = _open_text(self._tmp, "w", self.gzipped)
        if self.format == "json":
            self._text.write("[")
        if self.append and self.path.exists():
            for record in iter_records(self.path, format=self.format):
                self.write(record)
        return self

    def write(self, record: Mapping[str, Any]) -> None:
        """Write one record."""
        assert self._text is not None, "use RecordWriter in a with block"
        if self.format == "csv":
            self._write_csv(record)
        elif self.format == "json":
            self._text.write(("," if self.count else "") + "\n" + _dumps(record))
        else:
            self._text.write(_dumps(record) + "\n")
        self.count += 1

    def write_all(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Write every record of an iterable."""
        for record in records:
            self.write(record)

    def _write_csv(self, record: Mapping[str, Any]) -> None:
        if self._csv is None:
            self.fieldnames = self.fieldnames or list(record)
            self._csv = csv.DictWriter(self._text, fieldnames=self.fieldnames, extrasaction="ignore")
            self._csv.writeheader()
        extra = set(record) - set(self.fieldnames or ()) - self._dropped
        if extra:
            self._dropped |= extra
            log.warning(
                "CSV %s has no column for %s; pass fieldnames/fields to keep them.", self.path.name, sorted(extra)
            )
        self._csv.writerow(
            {k: _dumps(v) if isinstance(v, (dict, list)) else v for k, v in record.items() if k in self.fieldnames}
        )

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None and self.format == "json":
                self._text.write("\n]\n")
        finally:
            for handle in self._handles:
                handle.close()
        if exc_type is None:
            self._tmp.rename(self.path)
        else:
            self._tmp.unlink(missing_ok=True)


def lookup_path(record: Mapping[Any, Any], path: str) -> Any:
    """The value at ``path`` in a record: a literal key first, else a dotted walk through nested mappings
    (``"address.zip"``); ``None`` when missing.

    :param record: the record.
    :param path: a key, or dotted keys into nested mappings.
    """
    if path in record:
        return record[path]
    current: Any = record
    for part in path.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return None
        current = current[part]
    return current
