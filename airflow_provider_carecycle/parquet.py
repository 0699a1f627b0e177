"""Parquet rows, written in row groups and read back: the typed side of :class:`~airflow_provider_carecycle.storage.
RecordWriter` and :func:`~airflow_provider_carecycle.storage.iter_records`.

pyarrow is an optional extra (``pip install 'airflow-provider-carecycle[parquet]'``), imported when a Parquet file is
first written or read, never at DAG-parse time. The columns and their types come from one
:mod:`~airflow_provider_carecycle.schemas` schema per entity. Rows are kept as Python values only until a row group
(:data:`ROW_GROUP_ROWS`) is full, then converted and written, so memory holds one row group whatever the export's
size. A value that does not fit its column's type raises one ``ValueError`` naming the row and the column, never the
value.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import IO, Any

from airflow_provider_carecycle.records import json_default
from airflow_provider_carecycle.values import parse_iso_datetime

#: rows per row group: what memory holds at most while a Parquet file is written
ROW_GROUP_ROWS = 10_000
#: the page codec: every warehouse reads it, and it compresses JSON-ish text well
COMPRESSION = "zstd"
_INSTALL = (
    "Parquet needs pyarrow: install the provider's parquet extra (pip install 'airflow-provider-carecycle[parquet]')."
)


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise ImportError(_INSTALL) from None
    return pyarrow, pyarrow.parquet


def arrow_schema(schema: Sequence[tuple[str, str]]) -> Any:
    """The Arrow schema of a :mod:`~airflow_provider_carecycle.schemas` schema (every column nullable)."""
    pa, _ = _pyarrow()
    types = {
        "string": pa.string(),
        "text": pa.string(),
        "json": pa.string(),
        "int64": pa.int64(),
        "bool": pa.bool_(),
        "timestamp": pa.timestamp("ms", tz="UTC"),
        "date": pa.date32(),
    }
    return pa.schema([pa.field(name, types[kind]) for name, kind in schema])


def _text(value: Any) -> str:
    return json.dumps(value, default=json_default, separators=(",", ":"), ensure_ascii=False)


def _timestamp(value: Any) -> dt.datetime:
    moment = value if isinstance(value, dt.datetime) else parse_iso_datetime(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def _date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value).strip()[:10])


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise TypeError("not a whole number")
    return int(value)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError("not true or false")
    return value


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("not text")
    return value


_CONVERT = {
    "string": _string,
    "text": lambda value: value if isinstance(value, str) else _text(value),
    "json": _text,
    "int64": _int,
    "bool": _bool,
    "timestamp": _timestamp,
    "date": _date,
}


class ParquetRows:
    """Rows into one Parquet file, a row group at a time.

    :param sink: the binary file to write (the writer's unnamed or ``.partial`` file).
    :param schema: the columns and their types (:func:`~airflow_provider_carecycle.schemas.export_schema`).
    :param name: the file's name, for messages.
    :param row_group_rows: rows per row group (default :data:`ROW_GROUP_ROWS`).
    """

    def __init__(
        self, sink: IO[bytes], schema: Sequence[tuple[str, str]], *, name: str, row_group_rows: int | None = None
    ) -> None:
        _, pq = _pyarrow()
        self.schema = list(schema)
        self.name = name
        self.row_group_rows = row_group_rows or ROW_GROUP_ROWS
        self._arrow = arrow_schema(self.schema)
        self._names = frozenset(name for name, _ in self.schema)
        self._writer = pq.ParquetWriter(sink, self._arrow, compression=COMPRESSION)
        self._columns: list[list[Any]] = [[] for _ in self.schema]
        self._converters = [_CONVERT[kind] for _, kind in self.schema]
        self.rows = 0
        self.extra_keys: set[str] = set()

    def write(self, record: Mapping[str, Any]) -> None:
        """Add one record: its values for the schema's columns (a missing one is null); other keys are noted in
        :attr:`extra_keys` and left out."""
        self.rows += 1
        if not self._names.issuperset(record):
            self.extra_keys.update(key for key in record if key not in self._names)
        for (column, _), values, convert in zip(self.schema, self._columns, self._converters, strict=True):
            value = record.get(column)
            if value is not None:
                try:
                    value = convert(value)
                except (TypeError, ValueError):
                    kind = dict(self.schema)[column]
                    raise ValueError(
                        f"{self.name}, row {self.rows}: the value of column {column!r} is not a {kind} "
                        f"({type(value).__name__}); the Parquet schema is in docs/operators/extract-customers.md."
                    ) from None
            values.append(value)
        if len(self._columns[0]) >= self.row_group_rows:
            self._flush()

    def _flush(self) -> None:
        if not self._columns or not self._columns[0]:
            return
        pa, _ = _pyarrow()
        arrays = [pa.array(values, type=field.type) for values, field in zip(self._columns, self._arrow, strict=True)]
        self._writer.write_table(pa.Table.from_arrays(arrays, schema=self._arrow))
        self._columns = [[] for _ in self.schema]

    def close(self) -> None:
        """Write the last row group and the footer."""
        self._flush()
        self._writer.close()

    def abort(self) -> None:
        """Stop without a footer (the file is discarded)."""
        self._columns = [[] for _ in self.schema]
        try:
            self._writer.close()
        except Exception:  # the file is thrown away; its first error is the one that counts
            pass


def iter_parquet(source: IO[bytes], name: str) -> Iterator[dict[str, Any]]:
    """The rows of a Parquet file, a row group at a time, as dicts (timestamps as aware datetimes).

    :raises ValueError: for a file that is not Parquet, naming it.
    """
    pa, pq = _pyarrow()
    try:
        parquet = pq.ParquetFile(source)
    except pa.ArrowInvalid:
        raise ValueError(f"{name}: not a Parquet file (or a truncated one); write it again in full.") from None
    for group in range(parquet.num_row_groups):
        yield from parquet.read_row_group(group).to_pylist()
