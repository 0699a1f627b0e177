"""Reading and writing record files on object storage, as streams.

Paths are ``ObjectStoragePath``-style URIs (``file://``, ``s3://``, ``gs://``, ...; a plain local path works too).
The format follows the name: ``.jsonl``/``.ndjson`` (JSON Lines), ``.json`` (one JSON array), ``.csv``, each
optionally ending ``.gz``, or ``.parquet`` (typed columns from a schema, written in row groups by
:mod:`~airflow_provider_carecycle.parquet`; the ``parquet`` extra). Readers yield one record at a time; writers
write one at a time and only move the finished file to its final name (or, appending to a local file, add its bytes
to the end) when the ``with`` block ends cleanly, so a failed or killed task never leaves a truncated file where a
downstream task would read it.

Why one module of this size: every format's reader and writer shares the path handling, the private-file and
atomic-rename rules and the error wording (file and line); split by format, each would repeat them.
"""

from __future__ import annotations

import csv
import fcntl
import gzip
import io
import itertools
import json
import logging
import os
import re
import stat
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import IO, Any, TypeAlias

from fsspec.implementations.local import LocalFileSystem

from airflow_provider_carecycle._compat import ObjectStoragePath
from airflow_provider_carecycle.records import EXTRA_VALUES_KEY, MalformedRow, json_default
from airflow_provider_carecycle.records import lookup_path as lookup_path  # re-exported: operators import it from here
from airflow_provider_carecycle.scratch import anonymous_file, link_into_place, partial_name

log = logging.getLogger(__name__)

#: the text formats
FORMATS = ("jsonl", "json", "csv")
#: every format: the text ones and Parquet (its columns typed from a schema; the ``parquet`` extra)
ALL_FORMATS = (*FORMATS, "parquet")
_SUFFIX_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
_READ_CHUNK = 1 << 16
#: CSV injection (OWASP): where a spreadsheet may start a cell inside a text cell (after a list separator: ``,``, the
#: ``;`` of de/fr/es/it/pt-BR locales, tab, or a line break), blanks and a double quote it may skip, and the
#: characters that then start a formula (``=``, ``+``, ``-``, ``@``, their full-width forms, tab, CR, NUL)
_CELL_SEPARATORS = ",;\t\r\n"
_FORMULA_TRIGGERS = "=+\\-@\t\r\x00\uff1d\uff0b\uff0d\uff20"
_FORMULA_START = re.compile(f'(?:\\A|(?<=[{_CELL_SEPARATORS}]))[ \u00a0\u3000"]*[{_FORMULA_TRIGGERS}]')
#: a cell (or the part a spreadsheet may split off) that is only a number is read as one, never as a formula
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[ ]*")
#: in JSON text, a number may end where its array or object closes
_JSON_NUMBER_END = re.compile(r"[\]} ]*")
_LINE_BREAK = re.compile("[\r\n]")


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
    :param format: ``jsonl``, ``json``, ``csv`` or ``parquet`` to override the name.
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
                "(optionally .gz), or .parquet, or pass the format explicitly."
            )
    if format not in ALL_FORMATS:
        raise ValueError(f"Unknown format {format!r}; use one of {', '.join(ALL_FORMATS)}.")
    if format == "parquet" and gzipped:
        raise ValueError(
            f"{to_path(path).name!r}: a Parquet file compresses its own pages; drop the .gz from the name."
        )
    return format, gzipped


def _dumps(record: Any) -> str:
    return json.dumps(record, default=json_default, separators=(",", ":"), ensure_ascii=False)


#: an open file object of :func:`_open_text`'s stack (closed outermost first)
_Handle: TypeAlias = "IO[Any] | gzip.GzipFile"


def _open_text(path: ObjectStoragePath, mode: str, gzipped: bool) -> tuple[IO[str], list[_Handle]]:
    if mode == "w" and _is_local(path):
        _create_private(path)
    return _text_stack(path.open(mode + "b"), mode, gzipped)


def _text_stack(raw: Any, mode: str, gzipped: bool) -> tuple[IO[str], list[_Handle]]:
    """Text (and gzip) on top of a binary file; the handles to close, outermost first."""
    handles: list[_Handle] = [raw]
    if gzipped:
        raw = gzip.GzipFile(fileobj=raw, mode=mode + "b")
        handles.insert(0, raw)
    if mode == "w":
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
    else:  # a byte order mark is dropped; bad UTF-8 becomes lone surrogates, reported with its line by _Lines
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape")
    handles.insert(0, text)
    return text, handles


def _is_local(path: ObjectStoragePath) -> bool:
    """Whether ``path`` is on the local file system (``file://`` or a plain path), where files have modes."""
    return isinstance(getattr(path, "fs", None), LocalFileSystem) and os.name == "posix"


def _create_private(path: ObjectStoragePath) -> None:
    """Create the (new, uniquely named) local file with mode 0600 before anything is written to it."""
    os.close(os.open(path.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


# -- reading --------------------------------------------------------------------------------------------------

_BAD_UTF8 = re.compile("[\udc80-\udcff]")
_GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)


class _Lines:
    """The text lines of a source, numbered from 1 (blank lines count); a line of bad UTF-8 is a ``ValueError``."""

    def __init__(self, text: IO[str], name: str) -> None:
        self._text = text
        self.name = name
        self.number = 0

    def __iter__(self) -> Iterator[str]:
        for line in self._text:
            self.number += 1
            if _BAD_UTF8.search(line):
                raise ValueError(f"{self.name}, line {self.number}: not valid UTF-8 text.")
            yield line


def _read_chunk(text: IO[str]) -> str:
    return text.read(_READ_CHUNK)


_DECODER = json.JSONDecoder()
#: how close to the end of the text a decode error must be to mean "this element goes on in the next chunk"
_INCOMPLETE_MARGIN = 16


class _JsonArray:
    """The elements of one top-level JSON array, read in chunks: ``(line, element)`` pairs.

    Memory holds one element and its read-ahead. An element that does not fit in the text read so far is retried
    only once the unread text has at least doubled, so a large element costs a few decode attempts, and the whole
    file is scanned a bounded number of times: linear in the input, however the elements are sized.
    """

    def __init__(self, text: IO[str], name: str) -> None:
        self.text = text
        self.name = name
        self.buffer = ""
        self.pos = 0
        self.eof = False
        self.line = 1  # the line of buffer[counted]
        self.counted = 0

    def _line_at(self, pos: int) -> int:
        self.line += self.buffer.count("\n", self.counted, pos)
        self.counted = pos
        return self.line

    def _fill(self, wanted: int) -> None:
        """Read until at least ``wanted`` characters are unread (or the text ends); drop what was consumed."""
        self._line_at(self.pos)
        chunks = [self.buffer[self.pos :]]
        have = len(chunks[0])
        while have < wanted and not self.eof:
            chunk = _read_chunk(self.text)
            self.eof = not chunk
            chunks.append(chunk)
            have += len(chunk)
        self.buffer, self.counted, self.pos = "".join(chunks), 0, 0
        if bad := _BAD_UTF8.search(self.buffer, len(chunks[0])):
            raise self._fail(bad.start(), "not valid UTF-8 text.")

    def _peek(self) -> str:
        """The next non-blank character ('' at the end of the text), without consuming it."""
        while True:
            match = _BLANK.match(self.buffer, self.pos)
            self.pos = match.end() if match else self.pos
            if self.pos < len(self.buffer) or self.eof:
                return self.buffer[self.pos : self.pos + 1]
            self._fill(1)

    def _fail(self, pos: int, what: str) -> ValueError:
        return ValueError(f"{self.name}, line {self._line_at(pos)}: {what}")

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        if self._peek() != "[":
            raise ValueError(f"{self.name}: a .json source must hold one JSON array of records.")
        self.pos += 1
        if self._peek() == "]":
            self.pos += 1
        else:
            while True:
                yield self._element()
                after = self._peek()
                if after == "]":
                    self.pos += 1
                    break
                if after != ",":
                    what = "the text ends before the array's closing ']'" if not after else "expected ',' or ']'"
                    raise self._fail(self.pos, f"{what} after an element.")
                self.pos += 1
                self._peek()
        if self._peek():
            raise self._fail(self.pos, "there is more text after the closing ']' of the array.")

    def _element(self) -> tuple[int, Any]:
        while True:
            start = self.pos
            try:
                element, end = _DECODER.raw_decode(self.buffer, start)
            except RecursionError:
                raise self._fail(start, "a record is nested too deeply.") from None
            except json.JSONDecodeError as err:
                at_end = err.pos >= len(self.buffer) - (0 if self.eof else _INCOMPLETE_MARGIN)
                if not (at_end or err.msg.startswith("Unterminated string")):
                    raise self._fail(err.pos, f"not valid JSON ({_json_problem(err)}).") from None
                if self.eof:
                    raise self._fail(start, "the text ends in the middle of a record.") from None
                self._fill(2 * (len(self.buffer) - start) + 1)
                continue
            if isinstance(element, (int, float)) and end >= len(self.buffer) - _INCOMPLETE_MARGIN and not self.eof:
                self._fill(2 * (len(self.buffer) - start) + 1)  # a number may go on in the next chunk
                continue
            self.pos = end
            return self._line_at(start), element


_BLANK = re.compile(r"[ \t\r\n]*")
_JSON_KINDS = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}


def _json_problem(err: json.JSONDecodeError) -> str:
    """The decoder's complaint without any quoted content (``Invalid \\escape: 'x'`` -> ``Invalid \\escape``)."""
    return err.msg.split(":", 1)[0]


def _iter_jsonl(lines: _Lines) -> Iterator[tuple[int, Any]]:
    for line in lines:
        if not line.strip():
            continue
        try:
            yield lines.number, json.loads(line)
        except RecursionError:
            raise ValueError(f"{lines.name}, line {lines.number}: a record is nested too deeply.") from None
        except json.JSONDecodeError as err:
            raise ValueError(
                f"{lines.name}, line {lines.number}: not valid JSON ({_json_problem(err)}, column {err.colno})."
            ) from None


def _iter_csv(lines: _Lines) -> Iterator[dict[str, Any]]:
    reader = csv.reader(lines)
    try:
        header = next(reader, None)
        if header is None:
            return
        seen: dict[str, int] = {}
        for column, name in enumerate(header, start=1):
            if name in seen:
                raise ValueError(
                    f"{lines.name}, line 1: columns {seen[name]} and {column} of the header have the same name; "
                    "rename one so that no values are lost."
                )
            seen[name] = column
        width = len(header)
        for values in reader:
            if not values:
                continue  # a blank line
            if len(values) > width:
                problem = f"the CSV row has {len(values)} values, the header has {width}"
                yield MalformedRow(
                    [*zip(header, values[:width], strict=True), (EXTRA_VALUES_KEY, values[width:])], problem
                )
            else:
                yield dict(itertools.zip_longest(header, values))
    except csv.Error as err:
        if "field limit" in str(err):
            what = f"a field is longer than the CSV field size limit ({csv.field_size_limit()} characters)"
        else:
            what = f"not valid CSV ({str(err).split(' - ', 1)[0]})"
        raise ValueError(f"{lines.name}, line {lines.number}: {what}.") from None


def iter_records(uri: str | ObjectStoragePath, *, format: str | None = None) -> Iterator[dict[str, Any]]:
    """Yield the records of a JSON Lines, JSON array or CSV file, one at a time.

    A UTF-8 byte order mark is accepted. Blank JSON Lines and blank CSV lines are skipped. A problem with the
    file (bad JSON or CSV, bad UTF-8, a truncated gzip, a record nested too deeply, a line or element that is not
    a JSON object, a CSV header naming a column twice) raises one ``ValueError`` naming the file and its line
    (blank lines count), never the content. A CSV row with more values than the header is yielded as a
    :class:`MalformedRow` (every value kept) for the lead validator to reject; a shorter row has ``None`` for
    the missing columns.

    :param uri: the file.
    :param format: ``jsonl``, ``json`` or ``csv``; default from the name.
    """
    path = to_path(uri)
    fmt, gzipped = detect_format(path, format)
    if fmt == "parquet":
        from airflow_provider_carecycle.parquet import iter_parquet  # pyarrow only when Parquet is read

        with path.open("rb") as source:
            yield from iter_parquet(source, path.name)
        return
    text, handles = _open_text(path, "r", gzipped)
    lines = _Lines(text, path.name)
    array = _JsonArray(text, path.name) if fmt == "json" else None
    try:
        if fmt == "csv":
            yield from _iter_csv(lines)
            return
        rows = array if array is not None else _iter_jsonl(lines)
        for number, (line, row) in enumerate(rows, start=1):
            if not isinstance(row, dict):
                where = f"line {line} (element {number})" if array is not None else f"line {line}"
                kind = _JSON_KINDS.get(type(row), type(row).__name__)
                raise ValueError(f"{path.name}, {where}: the record is a JSON {kind}, not an object.")
            yield row
    except _GZIP_ERRORS:
        read = array.line if array is not None else lines.number
        where = f"it breaks off after line {read}" if read > 1 else "it is broken from the start"
        raise ValueError(
            f"{path.name}: not a complete gzip file ({where}, truncated or corrupt); write it again in full."
        ) from None
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
    :param format: ``jsonl``, ``json``, ``csv`` or ``parquet``; default from the name.
    :param schema: Parquet only, and required there: the columns and their types
        (:func:`~airflow_provider_carecycle.schemas.export_schema`); keys of a record outside it are dropped with a
        warning naming them.
    :param fieldnames: CSV columns; default the keys of the first record (later keys are dropped with a warning),
        or, when appending, the existing file's header. Nested values are written to CSV cells as JSON text.
    :param append: keep the rows already in the file and add the new ones after them, for time series. JSON Lines
        and CSV only (a ``.json`` array cannot grow without being rewritten whole, so it is refused). See
        *Appending* below for what it costs.
    :param csv_formula_escape: in CSV output, neutralise every text cell (header included) that a spreadsheet could
        run as a formula (the OWASP CSV-injection rule; see :func:`neutralise_formulas`), so it shows as text. A cell
        that is just a number (``-5``, ``+12125550142``) is left alone: a spreadsheet reads it as a number, never a
        formula. JSON output is never changed.

    On the local file system (``file://`` or a plain path) the file is created with mode 0600: it may hold patient
    data. While it is written it has **no name** (Linux: an ``O_TMPFILE`` file in the target's folder, see
    :mod:`~airflow_provider_carecycle.scratch`), so a worker killed by ``kill -9`` leaves nothing behind: the kernel
    reclaims it. It gets its name when the block ends cleanly (a new name in one ``linkat``; an existing file is
    replaced through a hidden ``.<name>.<random>.partial`` link and a rename). Where that is not possible (not Linux,
    a file system without ``O_TMPFILE``) and on object storage, the rows go to that hidden ``.partial`` file instead,
    created 0600 and renamed into place; a failure deletes it, a ``kill -9`` cannot.

    **Appending.** On the local file system the new rows are written to the unnamed (or ``.partial``) file first;
    when the block ends cleanly its bytes are appended to the file (under an exclusive ``flock``) and the file is set
    to mode 0600.
    If that copy fails, the file is truncated back to its old size, so it never holds part of a block's rows. Only
    the new rows are written and, for CSV, only the header line is read, so appending N blocks costs O(N) in total.
    A gzip file gets one more gzip member (a valid gzip file that every reader decompresses whole); a CSV file gets
    no second header. The old behaviour, copying the file's rows into a new file, remains for: object stores
    (``s3://``, ``gs://``, ...: they cannot append to an object), a CSV file whose header differs from
    ``fieldnames`` (the file gets the new header), and a local name that is not a regular file (e.g. a symlink,
    which is replaced by a file). That copy reads and writes the whole file each time.
    """

    def __init__(
        self,
        uri: str | ObjectStoragePath,
        *,
        format: str | None = None,
        fieldnames: Iterable[str] | None = None,
        append: bool = False,
        csv_formula_escape: bool = True,
        schema: Sequence[tuple[str, str]] | None = None,
    ) -> None:
        self.path = to_path(uri)
        self.format, self.gzipped = detect_format(self.path, format)
        if self.format == "parquet" and (append or schema is None):
            what = "cannot be appended to" if append else "needs a schema (its columns' types)"
            raise ValueError(f"{self.path.name!r}: a Parquet file {what}; the extract operators write Parquet.")
        self.schema = list(schema) if schema is not None else None
        self._parquet: Any = None
        if append and self.format == "json":
            raise ValueError(
                f"Cannot append to {self.path.name!r}: a .json file is one JSON array, which only grows by being "
                "rewritten whole. Write JSON Lines (.jsonl) or CSV to append."
            )
        self.fieldnames = list(fieldnames) if fieldnames is not None else None
        self.append = append
        self.csv_formula_escape = csv_formula_escape
        #: the records written by this block (rows already in an appended file are not counted)
        self.count = 0
        self._tmp = self.path.parent / partial_name(self.path.name)
        #: the unnamed file the rows go to (``O_TMPFILE``), kept open after the writers close, to link or read it
        self._anonymous: int | None = None
        self._text: IO[str] | None = None
        self._handles: list[_Handle] = []
        self._csv: csv.DictWriter | None = None
        self._header_written = False
        self._append_in_place = False
        self._dropped: set[str] = set()

    def __enter__(self) -> RecordWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        copy_old = self.append and self.path.exists()
        if copy_old and not _is_local(self.path):
            log.info("Appending to %s rewrites it whole: its file system cannot append.", self.path.name)
        elif copy_old and _is_nonempty_regular_file(self.path.path):
            copy_old = not self._can_append_in_place()
            self._append_in_place = not copy_old
        if self.format == "parquet":
            self._open_parquet()
            return self
        self._text, self._handles = self._open_rows()
        if self.format == "json":
            self._text.write("[")
        if copy_old:
            for record in iter_records(self.path, format=self.format):
                self.write(record)
            self.count = 0
        return self

    def _open_rows(self) -> tuple[IO[str], list[_Handle]]:
        """Where the rows go until the block ends: an unnamed file in the target's folder, else the ``.partial``."""
        fd = anonymous_file(os.path.dirname(self.path.path)) if _is_local(self.path) else None
        if fd is None:
            return _open_text(self._tmp, "w", self.gzipped)
        self._anonymous = os.dup(fd)
        return _text_stack(os.fdopen(fd, "w+b"), "w", self.gzipped)

    def _open_parquet(self) -> None:
        """The Parquet rows over the binary file the rows go to (unnamed, else the ``.partial``)."""
        from airflow_provider_carecycle.parquet import ParquetRows  # pyarrow only when Parquet is written

        assert self.schema is not None
        fd = anonymous_file(os.path.dirname(self.path.path)) if _is_local(self.path) else None
        if fd is None:
            if _is_local(self._tmp):
                _create_private(self._tmp)
            raw: Any = self._tmp.open("wb")
        else:
            self._anonymous = os.dup(fd)
            raw = os.fdopen(fd, "w+b")
        self._handles = [raw]
        self._text = raw
        try:
            self._parquet = ParquetRows(raw, self.schema, name=self.path.name)
        except BaseException:
            raw.close()
            if self._anonymous is not None:
                os.close(self._anonymous)
                self._anonymous = None
            elif _is_local(self._tmp):
                self._tmp.unlink(missing_ok=True)
            raise

    def _can_append_in_place(self) -> bool:
        """Whether the new rows can go after the file's bytes: always for JSON Lines; for CSV when the header
        matches (``fieldnames`` unset takes the file's header). Reads the header line only."""
        if self.format != "csv":
            return True
        text, handles = _open_text(self.path, "r", self.gzipped)
        try:
            header = next(csv.reader(_Lines(text, self.path.name)), None)
        except (*_GZIP_ERRORS, csv.Error, ValueError):
            header = None  # a broken file: the copy reads it and reports what is wrong, naming the line
        finally:
            for handle in handles:
                handle.close()
        if header is None:
            return False
        if self.fieldnames is None:
            self.fieldnames = header
        elif [self._cell(name) for name in self.fieldnames] != header:
            log.info("The columns of %s change: rewriting it whole with the new header.", self.path.name)
            return False
        self._header_written = True
        return True

    def write(self, record: Mapping[str, Any]) -> None:
        """Write one record."""
        assert self._text is not None, "use RecordWriter in a with block"
        if self._parquet is not None:
            self._parquet.write(record)
            self.count += 1
            return
        if self.format != "csv":
            self.write_json_text(_dumps(record))
            return
        self._write_csv(record)
        self.count += 1

    def write_json_text(self, text: str) -> None:
        """Write one record that is already JSON text (one object on one line), as it is: no parsing, no second
        serialisation (the lead upload's rejected file, whose records are kept as the text they were read as).

        :param text: the record as compact JSON text without a line break.
        :raises ValueError: for a CSV file (a CSV row is built from the record's fields).
        """
        assert self._text is not None, "use RecordWriter in a with block"
        if self.format in ("csv", "parquet"):
            raise ValueError(f"Cannot write JSON text to the {self.format} file {self.path.name!r}: write records.")
        if self.format == "json":
            self._text.write(("," if self.count else "") + "\n" + text)
        else:
            self._text.write(text + "\n")
        self.count += 1

    def write_all(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Write every record of an iterable."""
        for record in records:
            self.write(record)

    def _write_csv(self, record: Mapping[str, Any]) -> None:
        fieldnames = self.fieldnames = self.fieldnames or list(record)
        if self._csv is None:
            assert self._text is not None, "use RecordWriter in a with block"
            self._csv = csv.DictWriter(self._text, fieldnames=fieldnames, extrasaction="ignore")
            if not self._header_written:
                self._csv.writerow({name: self._cell(name) for name in fieldnames})
        extra = set(record) - set(fieldnames) - self._dropped
        if extra:
            self._dropped |= extra
            log.warning(
                "CSV %s has no column for %s; pass fieldnames/fields to keep them.", self.path.name, sorted(extra)
            )
        self._csv.writerow({k: self._cell(v) for k, v in record.items() if k in fieldnames})

    def _cell(self, value: Any) -> Any:
        """A CSV cell: nested values as JSON text; text that a spreadsheet could run as a formula, neutralised."""
        if isinstance(value, (dict, list)):
            text = _dumps(value)
            return neutralise_formulas(text, json_text=True) if self.csv_formula_escape else text
        if self.csv_formula_escape and isinstance(value, str):
            return neutralise_formulas(value)
        return value

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if self._parquet is not None:
                self._close_parquet(failed=exc_type is not None)
            elif exc_type is None and self.format == "json" and self._text is not None:
                self._text.write("\n]\n")
        finally:
            for handle in self._handles:
                handle.close()
        anonymous, self._anonymous = self._anonymous, None
        try:
            if exc_type is not None:
                if anonymous is None:
                    self._tmp.unlink(missing_ok=True)
            elif self._append_in_place:
                try:
                    source = self._tmp.path if anonymous is None else anonymous
                    _append_bytes(source, self.path.path, newline_first=not self.gzipped)
                finally:
                    if anonymous is None:
                        self._tmp.unlink(missing_ok=True)
            elif anonymous is not None:
                link_into_place(anonymous, self.path.path)
            else:
                self._tmp.rename(self.path)
        finally:
            if anonymous is not None:
                os.close(anonymous)  # an unnamed file that was not linked is gone now

    def _close_parquet(self, *, failed: bool) -> None:
        rows, self._parquet = self._parquet, None
        if failed:
            rows.abort()
            return
        rows.close()
        if rows.extra_keys:
            log.warning(
                "Parquet %s has no column for %s; pass fields to keep them.", self.path.name, sorted(rows.extra_keys)
            )


def neutralise_formulas(text: str, *, json_text: bool = False) -> str:
    """``text`` as a CSV cell that no spreadsheet runs as a formula, whatever list separator it splits the file on.

    A *part* of the cell is where a spreadsheet may start a cell: the cell's start, and the place right after each
    ``,``, ``;`` (the list separator of de/fr/es/it/pt-BR locales), tab, CR or LF in it. A part is dangerous when,
    after any spaces (also no-break and full-width spaces) and double quotes, it starts with ``=``, ``+``, ``-``,
    ``@``, one of their full-width forms ``＝ ＋ － ＠``, a tab, a CR or a NUL, unless what a spreadsheet would read
    as that cell is only a number (``-5``, ``+1.5``, ``+12125550142``, ``-2e3``): up to the next same separator
    for a part after ``,``, ``;`` or tab, the rest of the text for the cell's start and after a line break. Each
    dangerous part gets a single quote in front (a spreadsheet shows a cell starting with ``'`` as text and hides
    the quote): ``=1+1`` becomes ``'=1+1``, `` =1+1`` becomes ``' =1+1``, ``Smith;=HYPERLINK(...)`` becomes
    ``Smith;'=HYPERLINK(...)``. Text without a dangerous part is returned unchanged.

    :param text: the cell's text.
    :param json_text: ``text`` is JSON (a nested value): a dangerous character is replaced by its JSON escape
        (``=`` by ``\\u003d``) instead, so the cell stays valid JSON that decodes to the same value; a number may end
        in the brackets that close its array or object.
    """
    found = [match for match in _FORMULA_START.finditer(text) if not _is_number_part(text, match, json_text)]
    if not found:
        return text
    pieces: list[str] = []
    done = 0
    for match in found:
        if json_text:
            trigger = match.end() - 1
            pieces += [text[done:trigger], f"\\u{ord(text[trigger]):04x}"]
            done = trigger + 1
        else:
            pieces += [text[done : match.start()], "'"]
            done = match.start()
    pieces.append(text[done:])
    return "".join(pieces)


def _is_number_part(text: str, part: re.Match[str], json_text: bool) -> bool:
    """Whether a spreadsheet would read the cell ``part`` starts as only a number (see :func:`neutralise_formulas`).

    :param part: a match of :data:`_FORMULA_START`: from the part's start to its first character.
    """
    start = part.end() - 1
    end = len(text)
    separator = text[part.start() - 1] if part.start() else ""
    if separator and separator in ",;\t":  # that separator splits it off; a line break ends every cell
        nearest = [i for i in (text.find(separator, start + 1), _line_break(text, start + 1)) if i >= 0]
        end = min(nearest, default=end)
    number = _PLAIN_NUMBER.match(text, start, end)
    if number is None:
        return False
    rest = number.end()
    if json_text:
        rest = _JSON_NUMBER_END.match(text, rest, end).end()  # type: ignore[union-attr]
    return rest == end


def _line_break(text: str, start: int) -> int:
    found = _LINE_BREAK.search(text, start)
    return found.start() if found else -1


def _is_nonempty_regular_file(local_path: str) -> bool:
    try:
        info = os.lstat(local_path)
    except FileNotFoundError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_size > 0


def _append_bytes(source: str | int, target: str, *, newline_first: bool) -> None:
    """Append the bytes of local file ``source`` to local file ``target``, all or nothing; ``target`` ends 0600.

    :param source: the finished ``.partial`` file, or the descriptor of the finished unnamed file.
    :param target: the file to grow (not followed if it became a symlink meanwhile).
    :param newline_first: end an unterminated last line of ``target`` first (plain text only, not gzip).
    """
    fd = os.open(target, os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another RecordWriter appending at the same time waits
        os.fchmod(fd, 0o600)
        size = os.fstat(fd).st_size
        try:
            if newline_first and size and os.pread(fd, 1, size - 1) not in (b"\n", b"\r"):
                _write_fully(fd, b"\n")
            with open(source, "rb") if isinstance(source, str) else os.fdopen(os.dup(source), "rb") as new_rows:
                new_rows.seek(0)
                while chunk := new_rows.read(_READ_CHUNK):
                    _write_fully(fd, chunk)
        except BaseException:
            os.ftruncate(fd, size)  # never leave part of the new rows behind
            raise
    finally:
        os.close(fd)  # also releases the lock


def _write_fully(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
