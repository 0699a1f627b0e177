"""Customer and call extraction: stream careCycle customers, and their calls, to object storage.

Both operators page through the API at the hook's rate limit and write each page to a
:class:`~airflow_provider_carecycle.storage.RecordWriter` as it arrives (the next pages are fetched meanwhile, at
most :data:`PREFETCH_PAGES` ahead), so memory holds a few pages whatever the export's size, and the file appears at
``output_path`` only once it is complete. Each returns its outcome (:class:`CustomersExport`, :class:`CallsExport`),
whose ``as_dict()`` is the XCom summary (``path``, ``count``, ``pages``, ``requests``, ``elapsed_s``, ...), never the
rows, unless ``return_records=True`` on a projected, small export; each names its own OpenLineage datasets.

In order: the argument and row helpers, the prefetching pager, the outcome types, the shared export
(:class:`_CareCycleExtractOperator`), then the two operators.

.. seealso:: ``docs/operators/extract-customers.md``

Why one module of this size: the customer and the call export share one base (paging with prefetch, the writer, the
outcome, the failure policy) and differ only in their source; apart they would import each other.
"""

from __future__ import annotations

import datetime as dt
import itertools
import queue
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from airflow_provider_carecycle import lineage, metrics
from airflow_provider_carecycle._compat import AirflowFailException, Context
from airflow_provider_carecycle.customer_changes import (
    CHANGE_TYPE,
    CHANGED_MODES,
    EXTRACTED_AT,
    CustomerDiff,
    TouchedWindow,
    extraction_time,
)
from airflow_provider_carecycle.exceptions import (
    CareCycleMalformedAnswerError,
    CareCycleNotFoundError,
    TaskKilledError,
)
from airflow_provider_carecycle.hooks.carecycle import CareCycleHook, Page
from airflow_provider_carecycle.hooks.customer_filters import customer_query_params
from airflow_provider_carecycle.ids import is_uuid
from airflow_provider_carecycle.operators.base import (
    RENAMED_ARGUMENTS,
    CareCycleBaseOperator,
    refuse_renamed_arguments,
    rendered_arguments,
    rendered_path,
)
from airflow_provider_carecycle.outcome import FileOutcome, Outcome, record_outcome
from airflow_provider_carecycle.progress import Progress
from airflow_provider_carecycle.schemas import export_schema
from airflow_provider_carecycle.storage import (
    ALL_FORMATS,
    RecordWriter,
    detect_format,
    iter_records,
    lookup_path,
    to_path,
)
from airflow_provider_carecycle.values import page_size, parse_iso_datetime
from airflow_provider_carecycle.vocabulary import CALL_SORT_FIELDS, MAX_PER_PAGE, SORT_DIRECTIONS

#: the most rows ``return_records=True`` may put in XCom
MAX_RETURN_RECORDS = 1000
#: pages fetched ahead while the current one is written (memory holds at most this many pages plus two)
PREFETCH_PAGES = 2
#: the customer order used when the user gives none: oldest first, so customers created during the export land
#: on pages not yet read instead of shifting the pages still to come
DEFAULT_CUSTOMER_SORT = {"sort_by": "createdAt", "sort_direction": "asc"}
#: how the calls export picks its customers: the ones given (``customer_ids``/``customer_ids_path``), or the ones
#: careCycle lists as called on or after ``since`` (``placed``: the calls placed in ``[since, until)``)
CALL_MODES = ("customers", "placed")
#: how often (seconds) an export waiting for its next page looks for a stop (``on_kill``)
_STOP_POLL_S = 0.1
_T = TypeVar("_T")


# -- argument checks ------------------------------------------------------------------------------------------


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}.")


def _check_fields(fields: Sequence[str] | None) -> list[str] | None:
    if fields is None:
        return None
    if isinstance(fields, str) or not all(isinstance(f, str) and f.strip() for f in fields) or not fields:
        raise ValueError(f"fields must be a non-empty list of field names or dotted paths, got {fields!r}.")
    return list(dict.fromkeys(f.strip() for f in fields))


def _parse_timestamp(value: Any) -> dt.datetime | None:
    """A timezone-aware datetime from a datetime, a date (midnight UTC) or ISO text (``Z`` allowed); else None."""
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, dt.date):
        parsed = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str) and value.strip():
        try:
            parsed = parse_iso_datetime(value)
        except ValueError:
            return None
    else:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def _parse_bound(name: str, value: Any) -> dt.datetime | None:
    """``since``/``until`` as an aware datetime (naive means UTC); None when not given or rendered empty."""
    if value is None or value == "":
        return None
    parsed = _parse_timestamp(value)
    if parsed is None:
        raise ValueError(f"{name} must be a date, a datetime or ISO-8601 text, got {value!r}.")
    return parsed


def _output_format(path: Any, format: str | None) -> str:
    """The explicit format, else the one the name says, else JSON Lines."""
    if format:
        return format
    try:
        return detect_format(to_path(path))[0]
    except ValueError:
        return "jsonl"


# -- row helpers ----------------------------------------------------------------------------------------------


def _project(item: Mapping[str, Any], columns: Sequence[str]) -> dict[str, Any]:
    """``{column: value}`` for each column (a key or a dotted path into nested objects); missing ones are None."""
    return {column: lookup_path(item, column) for column in columns}


class _Window:
    """The calls created in ``[since, until)``, read newest first: what to keep, and where to stop paging.

    :param since: keep calls created at or after this; the first older call ends the customer's calls.
    :param until: skip calls created at or after this (newer ones come first).
    """

    def __init__(self, since: dt.datetime | None, until: dt.datetime | None) -> None:
        self.since = since
        self.until = until
        self._previous: dt.datetime | None = None

    def start_customer(self) -> None:
        self._previous = None

    def cut(self, customer_id: str, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
        """The rows of one page (newest first) inside the window, and whether an older row came (stop paging).

        :raises CareCycleMalformedAnswerError: for a call without a readable ``createdAt`` or out of the newest-first
            order: either would put a call in the wrong day's file, or in none.
        """
        kept: list[dict[str, Any]] = []
        for row in rows:
            created = _parse_timestamp(row.get("createdAt"))
            if created is None or (self._previous is not None and created > self._previous):
                what = "has no readable createdAt" if created is None else "is newer than the call before it"
                raise CareCycleMalformedAnswerError(
                    f"careCycle's calls of customer {customer_id}: call {row.get('id')} {what}, so the "
                    "calls are not newest first and cannot be cut at since/until.",
                    status=200,
                )
            self._previous = created
            if self.since is not None and created < self.since:
                return kept, True
            if self.until is None or created < self.until:
                kept.append(row)
        return kept, False


def _customer_id(value: Any, position: int) -> str:
    if isinstance(value, Mapping):
        value = value.get("id")
    text = str(value).strip() if value is not None else ""
    if not is_uuid(text):
        raise ValueError(f"Customer id #{position} is not a careCycle customer UUID.")
    return text


def _prefetched(
    items: Iterable[_T], depth: int = PREFETCH_PAGES, *, killed: threading.Event | None = None
) -> Iterator[_T]:
    """Yield ``items`` in order while a background thread produces up to ``depth`` of them ahead.

    The next page is then fetched while the current one is written, instead of after it. An error raised by the
    producer is raised here, in the consumer; when the consumer stops early, the producer stops at its next item.

    :param killed: when it is set, the consumer stops waiting and raises :class:`TaskKilledError`.
    """
    channel: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple[bool, Any]) -> bool:
        while not stop.is_set():
            try:
                channel.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((False, item)):
                    return
        except BaseException as err:  # handed to the consumer, which raises it
            put((True, err))
        else:
            put((True, None))

    thread = threading.Thread(target=produce, name="carecycle-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            try:
                last, value = channel.get(timeout=_STOP_POLL_S)
            except queue.Empty:
                _raise_if_killed(killed)
                continue
            if last:
                if value is not None:
                    raise value
                return
            yield value
    finally:
        stop.set()


def _raise_if_killed(killed: threading.Event | None) -> None:
    if killed is not None and killed.is_set():
        raise TaskKilledError("Export stopped (the task was killed); its temporary file was removed.")


@dataclass(frozen=True, kw_only=True)
class ExportOutcome(FileOutcome):
    """What an export wrote and what it took: its XCom summary (counts and the path, never rows, unless
    ``return_records``).

    :param path: the file written, as its ``ObjectStoragePath`` URI.
    :param count: the rows written.
    :param format: ``jsonl``, ``csv``, ``json`` or ``parquet``.
    :param pages: the pages read.
    :param requests: the requests the hook sent for them (retries included).
    :param rate_limited: the 429 answers among them.
    :param elapsed_s: seconds the export took.
    :param records: the (projected) rows, with ``return_records=True``; else ``None``.
    """

    format: str
    pages: int
    requests: int
    rate_limited: int
    elapsed_s: float
    records: list[dict[str, Any]] | None = None

    def as_dict(self) -> dict[str, Any]:
        """The XCom summary: ``path``, ``format``, ``count``, ``pages``, ``requests``, ``rate_limited``,
        ``elapsed_s`` (and ``records`` when returned)."""
        summary: dict[str, Any] = {
            "path": self.path,
            "format": self.format,
            "count": self.count,
            "pages": self.pages,
            "requests": self.requests,
            "rate_limited": self.rate_limited,
            "elapsed_s": self.elapsed_s,
        }
        if self.records is not None:
            summary["records"] = self.records
        return summary

    def asset_extra(self) -> dict[str, int]:
        """The rows and pages."""
        return {"count": self.count, "pages": self.pages}


@dataclass(frozen=True, kw_only=True)
class CustomersExport(ExportOutcome):
    """The outcome of :class:`CareCycleExtractCustomersOperator`: an export's, plus what ``changed`` found.

    :param changed: ``touched``, ``diff`` or ``None`` (every matching customer).
    :param changes: with ``touched``: ``created`` and ``called`` (called, not created, in the interval); with
        ``diff``: ``new``, ``changed``, ``unchanged`` (not written) and ``disappeared`` (written as ids).
    """

    kind: ClassVar[str] = "customers"
    metric: ClassVar[str | None] = metrics.CUSTOMERS_EXPORTED

    changed: str | None = None
    changes: Mapping[str, int] | None = None

    def as_dict(self) -> dict[str, Any]:
        """The export's summary, plus ``changed`` and its counts when ``changed`` was given."""
        summary = super().as_dict()
        if self.changed is not None:
            summary["changed"] = self.changed
            summary.update(self.changes or {})
        return summary

    def asset_extra(self) -> dict[str, int]:
        """The rows and pages, plus the ``changed`` counts."""
        return {**super().asset_extra(), **(self.changes or {})}


@dataclass(frozen=True, kw_only=True)
class CallsExport(ExportOutcome):
    """The outcome of :class:`CareCycleExtractCustomerCallsOperator`: an export's, plus the customers read.

    :param customers: the customer ids read.
    :param missing_customers: those careCycle no longer has (404), skipped.
    """

    kind: ClassVar[str] = "calls"
    metric: ClassVar[str | None] = metrics.CALLS_EXPORTED

    customers: int
    missing_customers: int

    def as_dict(self) -> dict[str, Any]:
        """The export's summary plus ``customers`` and ``missing_customers``."""
        return {**super().as_dict(), "customers": self.customers, "missing_customers": self.missing_customers}

    def asset_extra(self) -> dict[str, int]:
        """The rows, pages, customers read and customers missing."""
        return {**super().asset_extra(), "customers": self.customers, "missing_customers": self.missing_customers}


@dataclass
class _CallCounts:
    """What the calls export saw, beyond the rows."""

    customers: int = 0
    missing: int = 0
    stopped_early: int = 0


# -- the shared export ----------------------------------------------------------------------------------------


class _CareCycleExtractOperator(CareCycleBaseOperator):
    """What both extract operators share: the output file, projection, page size and the streaming export.

    :param output_path: where to write (``ObjectStoragePath``-style URI or a local path); templated.
    :param format: ``jsonl``, ``csv``, ``json`` or ``parquet``; default from the name's suffix, else ``jsonl``. A
        name ending ``.gz`` is gzipped. ``parquet`` (the ``parquet`` extra) types the columns from the entity's
        schema (:mod:`~airflow_provider_carecycle.schemas`) and writes them in row groups.
    :param fields: export only these fields (keys or dotted paths such as ``source.name``), as flat columns in
        this order; default: whole records. Exporting less means less PHI at rest.
    :param per_page: page size, 1-100.
    :param return_records: also return the (projected) rows in the XCom summary, under ``records``. Needs
        ``fields`` and fails beyond :data:`MAX_RETURN_RECORDS` rows.
    :param csv_formula_escape: in CSV output, neutralise every text cell that a spreadsheet could run as a formula,
        whatever list separator it splits the file on (``,``, ``;``, tab; see
        :func:`~airflow_provider_carecycle.storage.neutralise_formulas`); plain numbers are left alone. Default on;
        turn it off only when the file never reaches a spreadsheet and must hold the values byte for byte.

    Each summary key is also pushed as its own XCom (``multiple_outputs`` defaults to ``True``), so a downstream
    task can take ``export.output["path"]``.

    When the task is killed (``on_kill``), the export stops at its next row or page wait, removes its temporary
    ``.partial`` file (``output_path`` is left as it was) and fails with :class:`TaskKilledError`.
    """

    def __init__(
        self,
        *,
        output_path: str,
        format: str | None = None,
        fields: Sequence[str] | None = None,
        per_page: int = MAX_PER_PAGE,
        return_records: bool = False,
        csv_formula_escape: bool = True,
        **kwargs: Any,
    ) -> None:
        refuse_renamed_arguments(type(self).__name__, kwargs, RENAMED_ARGUMENTS)
        kwargs.setdefault("multiple_outputs", True)
        super().__init__(**kwargs)
        if format is not None:
            _check_choice("format", format, ALL_FORMATS)
        page_size("per_page", per_page, MAX_PER_PAGE)
        self.output_path = output_path
        self.format = format
        self.fields = _check_fields(fields)
        self.per_page = per_page
        self.return_records = bool(return_records)
        self.csv_formula_escape = bool(csv_formula_escape)
        if self.return_records and not self.fields:
            raise ValueError(
                "return_records=True puts rows in XCom: pass fields=[...] to choose the (non-PHI) fields to return."
            )

    def on_kill(self) -> None:
        """Stop the running export. Runs in Airflow's SIGTERM handler: it only sets a flag; the export's own thread
        removes the temporary file as it stops."""
        killed = self.__dict__.get("_killed")
        if killed is None:
            killed = threading.Event()
            self._killed: threading.Event | None = killed
        killed.set()

    def _write_row(self, writer: RecordWriter, row: Mapping[str, Any], records: list[dict[str, Any]] | None) -> None:
        writer.write(row)
        if records is not None:
            self._check_return_cap(writer.count)
            records.append(dict(row))

    def _check_return_cap(self, rows: int) -> None:
        if self.return_records and rows > MAX_RETURN_RECORDS:
            raise AirflowFailException(
                f"return_records=True is for small exports (at most {MAX_RETURN_RECORDS:,} rows), and this one has "
                f"{rows:,}. Set return_records=False and read the file at the returned path instead."
            )

    def _export(
        self,
        pages: Iterable[Page],
        *,
        unit: str,
        leading: Sequence[str] = (),
        trailing: Sequence[str] = (),
        row: Callable[[Mapping[str, Any], dict[str, Any]], dict[str, Any] | None] | None = None,
        closing: Callable[[], Iterable[dict[str, Any]]] | None = None,
    ) -> dict[str, Any]:
        """Write every row of ``pages`` to ``output_path`` as one stream; return the :class:`ExportOutcome` fields.

        :param pages: the pages to write; a page's ``items_total`` (if any) becomes the progress total.
        :param unit: what a row is (``customers``, ``calls``): for log lines, and the Parquet schema
            (:mod:`~airflow_provider_carecycle.schemas`).
        :param leading: columns that always come first (e.g. ``customerId``), projection or not.
        :param trailing: columns that always come last (e.g. ``extractedAt``), set by ``row``.
        :param row: given the API's item and its (projected) row, the row to write, or ``None`` to skip it.
        :param closing: rows to write after the last page's (e.g. the ids that disappeared).
        """
        output_path = rendered_path("output_path", self.output_path)
        hook: CareCycleHook = self.hook
        stats = hook.stats
        requests_before, limited_before = stats.requests, stats.rate_limited
        columns = list(dict.fromkeys([*leading, *self.fields, *trailing])) if self.fields else None
        fmt = _output_format(output_path, self.format)
        schema = export_schema(unit, columns, trailing) if fmt == "parquet" else None
        progress = Progress(self.log, unit)
        records: list[dict[str, Any]] | None = [] if self.return_records else None
        page_count = 0
        killed = self.__dict__.get("_killed")
        if killed is None:
            self._killed = killed = threading.Event()
        try:
            with RecordWriter(
                output_path,
                format=fmt,
                fieldnames=columns,
                csv_formula_escape=self.csv_formula_escape,
                schema=schema,
            ) as writer:
                for page in _prefetched(pages, killed=killed):
                    _raise_if_killed(killed)
                    page_count += 1
                    if progress.total is None and page.items_total is not None:
                        progress.total = page.items_total
                        self._check_return_cap(page.items_total)
                    for item in page.items:
                        _raise_if_killed(killed)
                        projected = _project(item, columns) if columns else item
                        written = projected if row is None else row(item, dict(projected))
                        if written is not None:
                            self._write_row(writer, written, records)
                    progress.add(len(page.items))
                for last in closing() if closing is not None else ():
                    self._write_row(writer, last, records)
        finally:
            self._killed = None  # a kill after the export is a no-op
        path = str(writer.path)
        self.log.info("%s", progress.line())
        self.log.info(
            "Wrote %d %s to %s (%s) from %d pages, %d requests, in %.1f s.",
            writer.count,
            unit,
            path,
            fmt,
            page_count,
            stats.requests - requests_before,
            progress.elapsed_s,
        )
        return {
            "path": path,
            "format": fmt,
            "count": writer.count,
            "pages": page_count,
            "requests": stats.requests - requests_before,
            "rate_limited": stats.rate_limited - limited_before,
            "elapsed_s": round(progress.elapsed_s, 3),
            "records": records,
        }


# -- customers ------------------------------------------------------------------------------------------------


class CareCycleExtractCustomersOperator(_CareCycleExtractOperator):
    """Export the careCycle customers matching the filters to one file on object storage, as a stream.

    The customer filters of :meth:`CareCycleHook.iter_customers` are given as one mapping, ``filters``, keyed by
    their snake_case names (``statuses``, ``campaign_ids``, ``states``, ``date_field``, ``start_date``,
    ``end_date``, ... ; the table is ``hooks.customer_filters.CUSTOMER_FILTERS``). The mapping is templated (each
    value may be a Jinja string) and can be mapped with ``.expand(filters=[...])``; it is checked once rendered,
    before the first request. Unless ``sort_by``/``sort_direction`` are given, customers come oldest first
    (``createdAt`` ascending), so customers created during the export do not shift the pages still to be read.

    .. code-block:: python

        CareCycleExtractCustomersOperator(
            task_id="export_customers",
            output_path="gs://analytics/carecycle/customers/{{ ds }}.jsonl.gz",
            filters={
                "statuses": ["Lead", "Active"],
                "date_field": "createdAt",
                "start_date": "{{ data_interval_start | ds }}",
                "end_date": "{{ data_interval_start | ds }}",
            },
            fields=["id", "status", "state", "campaigns", "lastCallDisposition", "totalCalls"],
        )

    ``changed`` exports only the customers that changed (:mod:`~airflow_provider_carecycle.customer_changes`), each
    row with ``extractedAt`` (when the export started, UTC) as its last column, so daily files build a history table:

    * ``changed="touched"``: the customers created or called in ``[since, until)`` (two listings merged by id, each
      customer once). Cheap; misses edits made by hand in careCycle's web app, and a customer called in the interval
      and again after it (run it on time rather than as a late backfill).
    * ``changed="diff"``: every matching customer, compared with the previous run through ``state_path`` (per id a
      keyed hash of the exported fields, no value in clear): the file holds the new and changed customers
      (``changeType`` ``new``/``changed``) and a row per id that disappeared (``changeType`` ``deleted``, other
      columns empty). Complete; costs a full listing.

    :param output_path: where to write; templated. See :class:`_CareCycleExtractOperator` for ``format``,
        ``fields``, ``per_page`` and ``return_records``.
    :param filters: the customer filters, by snake_case name; templated.
    :param extra_params: raw ``GET /v2/customers`` query parameters, passed through unchanged (they win over the
        filters); templated.
    :param changed: ``None`` (every matching customer), ``touched`` or ``diff``.
    :param since: ``touched``: the interval's start (date, datetime or ISO text; naive means UTC); templated.
    :param until: ``touched``: the interval's end; templated.
    :param state_path: ``diff``: the state file (e.g. ``s3://bucket/state/customers.jsonl.gz``); templated.
    :return: ``{"path", "format", "count", "pages", "requests", "rate_limited", "elapsed_s"}`` (plus ``records``
        with ``return_records=True``; plus ``changed`` and its counts, see :class:`CustomersExport`).
    """

    template_fields: Sequence[str] = ("output_path", "filters", "extra_params", "since", "until", "state_path")
    template_fields_renderers = {"filters": "json", "extra_params": "json"}

    def __init__(
        self,
        *,
        output_path: str,
        filters: Mapping[str, Any] | None = None,
        extra_params: Mapping[str, Any] | None = None,
        format: str | None = None,
        fields: Sequence[str] | None = None,
        per_page: int = MAX_PER_PAGE,
        return_records: bool = False,
        changed: str | None = None,
        since: str | dt.date | None = None,
        until: str | dt.date | None = None,
        state_path: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            output_path=output_path,
            format=format,
            fields=fields,
            per_page=per_page,
            return_records=return_records,
            **kwargs,
        )
        if changed is not None:
            _check_choice("changed", changed, CHANGED_MODES)
        if changed == "touched" and (since is None or until is None):
            raise ValueError("changed='touched' needs since and until (the interval, e.g. the data interval's).")
        if changed != "touched" and (since is not None or until is not None):
            raise ValueError("since and until choose the interval of changed='touched'; use filters otherwise.")
        if (changed == "diff") != (state_path is not None):
            raise ValueError(
                "changed='diff' needs state_path (where the previous export's hashes are kept), and only it."
            )
        self.filters = filters
        self.extra_params = extra_params
        self.changed = changed
        self.since = since
        self.until = until
        self.state_path = state_path

    def _rendered_filters(self) -> tuple[dict[str, Any], Mapping[str, Any] | None]:
        """The rendered ``filters`` (oldest first unless they give an order) and ``extra_params``.

        :raises ValueError: for either one rendering to something that is not a mapping.
        """
        for name, value in (("filters", self.filters), ("extra_params", self.extra_params)):
            if value is not None and not isinstance(value, Mapping):
                raise ValueError(f"{name} must render to a mapping of name -> value, got {type(value).__name__}.")
        return {**DEFAULT_CUSTOMER_SORT, **(self.filters or {})}, self.extra_params

    def query_params(self) -> dict[str, str]:
        """The rendered ``filters`` and ``extra_params`` as the ``GET /v2/customers`` query parameters the export
        sends, checked (the hook's :func:`~airflow_provider_carecycle.hooks.customer_filters.customer_query_params`).

        :raises ValueError: for a mapping that is not one, an unknown filter or an invalid value.
        """
        filters, extra_params = self._rendered_filters()
        return customer_query_params(filters, extra_params)

    def customer_pages(self) -> Iterator[Page]:
        """The customer pages to export, from :meth:`CareCycleHook.customer_pages`: the rendered filters are checked
        now, before any request, and the pages fetched as they are read.

        :raises ValueError: for a mapping that is not one, an unknown filter or an invalid value.
        """
        filters, extra_params = self._rendered_filters()
        return self.hook.customer_pages(filters, extra_params=extra_params, per_page=self.per_page)

    def execute(self, context: Context) -> dict[str, Any]:
        with rendered_arguments():
            rendered_path("output_path", self.output_path)
            if self.changed == "touched":
                return self._finish(context, *self._export_touched())
            if self.changed == "diff":
                return self._finish(context, *self._export_diff())
            pages = self.customer_pages()
        return self._finish(context, self._export(pages, unit="customers"), None)

    def _export_touched(self) -> tuple[dict[str, Any], dict[str, int]]:
        """The customers created or called in ``[since, until)``, each once, with ``extractedAt``."""
        since, until = _parse_bound("since", self.since), _parse_bound("until", self.until)
        if since is None or until is None or until <= since:
            raise ValueError("changed='touched' needs since and until, until later than since.")
        window = TouchedWindow(since, until)
        filters, extra_params = self._rendered_filters()
        listings = [
            self.hook.customer_pages(listing, extra_params=extra_params, per_page=self.per_page)
            for listing in window.listings(filters)
        ]  # both checked now, before any request
        stamp = extraction_time()

        def row(item: Mapping[str, Any], written: dict[str, Any]) -> dict[str, Any] | None:
            return {**written, EXTRACTED_AT: stamp} if window.keep(item) else None

        pages = itertools.chain.from_iterable(listings)
        written = self._export(pages, unit="customers", trailing=(EXTRACTED_AT,), row=row)
        return written, {"created": window.created, "called": window.called}

    def _export_diff(self) -> tuple[dict[str, Any], dict[str, int]]:
        """The new and changed customers since the previous run's state, and the ids that disappeared."""
        state_path = rendered_path("state_path", self.state_path)
        pages = self.customer_pages()
        columns = list(dict.fromkeys(["id", *self.fields])) if self.fields else None
        diff = CustomerDiff(state_path, self.hook.destination_id, columns).load()
        stamp = extraction_time()

        def row(item: Mapping[str, Any], written: dict[str, Any]) -> dict[str, Any] | None:
            change = diff.change(_customer_id(item, 0), written)
            return None if change is None else {**written, CHANGE_TYPE: change, EXTRACTED_AT: stamp}

        def closing() -> Iterator[dict[str, Any]]:
            blank = dict.fromkeys(columns or ["id"])
            for customer_id in diff.disappeared():
                yield {**blank, "id": customer_id, CHANGE_TYPE: "deleted", EXTRACTED_AT: stamp}

        written = self._export(
            pages, unit="customers", leading=("id",), trailing=(CHANGE_TYPE, EXTRACTED_AT), row=row, closing=closing
        )
        diff.save()  # only once the file is in place: a failure before exports the same changes again
        counts = diff.counts
        return written, {
            "new": counts.new,
            "changed": counts.changed,
            "unchanged": counts.unchanged,
            "disappeared": counts.disappeared,
        }

    def _finish(self, context: Context, written: dict[str, Any], changes: dict[str, int] | None) -> dict[str, Any]:
        outcome = CustomersExport(**written, changed=self.changed, changes=changes)
        self.outcome = outcome
        record_outcome(self, context, outcome)  # metrics and the asset event
        return outcome.as_dict()

    def openlineage_datasets(self, outcome: Outcome | None) -> lineage.Datasets:
        """careCycle's ``customers`` read and the file written, with the rows exported."""
        rows = outcome.count if isinstance(outcome, CustomersExport) else None
        namespace = lineage.carecycle_namespace(self.hook.base_url)
        return [lineage.input_dataset(namespace, lineage.CUSTOMERS, rows)], [
            lineage.file_output(self.output_path, rows)
        ]


# -- calls ----------------------------------------------------------------------------------------------------


class CareCycleExtractCustomerCallsOperator(_CareCycleExtractOperator):
    """Export the calls of many customers to one file on object storage, as a stream, with ``customerId`` on each row.

    Two modes pick the customers:

    * ``mode="customers"`` (the default): ``customer_ids`` (a list of UUIDs, or an XComArg giving one) or the ``id``
      column of ``customer_ids_path`` (a file written by :class:`CareCycleExtractCustomersOperator`, e.g.
      ``export.output["path"]``).
    * ``mode="placed"``: the calls placed in ``[since, until)``, whoever they went to. The operator lists the
      customers whose last call is on or after ``since``'s day (``lastCallStartDate``, oldest customer first), pages
      each one's calls newest first, skips those created at or after ``until``, keeps the rest and stops at the first
      call older than ``since``. Calls never change once placed, so consecutive runs over consecutive intervals
      write every call exactly once, and a rerun or backfill writes the same rows as the first run (a call deleted in
      careCycle's web app since is the exception: it is gone from the rerun's file). Test customers are left out, as
      the customer list leaves them out.

    Each customer's calls are paged through in turn. A customer that no longer exists (404, e.g. deleted between
    the listing and its calls) is logged by id, counted as ``missing_customers`` and skipped; every other error
    follows the hook's retry rules.

    :param output_path: where to write; templated. See :class:`_CareCycleExtractOperator` for ``format``,
        ``fields``, ``per_page`` and ``return_records``.
    :param mode: ``customers`` or ``placed`` (see above).
    :param customer_ids: the customers' UUIDs (or customer objects with an ``id``); templated.
    :param customer_ids_path: a customers export to read the ids from, streamed; templated.
    :param sort_by: ``createdAt``, ``disposition`` or ``duration``.
    :param sort_direction: ``asc`` or ``desc``.
    :param since: keep only calls created at or after this (date, datetime or ISO text; naive means UTC), and stop
        paging a customer's calls at the first older one. Needs the default ``createdAt`` descending order; required
        with ``mode="placed"``; templated (``"{{ data_interval_start }}"``).
    :param until: keep only calls created before this (same forms; the newer calls are read and skipped). Needs the
        same order; templated (``"{{ data_interval_end }}"``).
    :return: the summary of :class:`CareCycleExtractCustomersOperator` plus ``customers`` (ids read) and
        ``missing_customers``.
    """

    template_fields: Sequence[str] = ("output_path", "customer_ids", "customer_ids_path", "since", "until")

    def __init__(
        self,
        *,
        output_path: str,
        mode: str = "customers",
        customer_ids: Iterable[str] | None = None,
        customer_ids_path: str | None = None,
        sort_by: str = "createdAt",
        sort_direction: str = "desc",
        since: str | dt.date | None = None,
        until: str | dt.date | None = None,
        format: str | None = None,
        fields: Sequence[str] | None = None,
        per_page: int = MAX_PER_PAGE,
        return_records: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            output_path=output_path,
            format=format,
            fields=fields,
            per_page=per_page,
            return_records=return_records,
            **kwargs,
        )
        # whether each argument was given (None or not) is known now; templated values are checked in execute
        _check_choice("mode", mode, CALL_MODES)
        if mode == "placed":
            if customer_ids is not None or customer_ids_path is not None:
                raise ValueError("mode='placed' finds the customers itself: drop customer_ids and customer_ids_path.")
            if since is None:
                raise ValueError("mode='placed' needs since (the start of the calls to export, e.g. the interval's).")
        elif (customer_ids is None) == (customer_ids_path is None):
            raise ValueError("Pass exactly one of customer_ids (a list or XComArg) and customer_ids_path (a file).")
        _check_choice("sort_by", sort_by, CALL_SORT_FIELDS)
        _check_choice("sort_direction", sort_direction, SORT_DIRECTIONS)
        if (since is not None or until is not None) and (sort_by, sort_direction) != ("createdAt", "desc"):
            raise ValueError("since and until need the calls newest first: sort_by='createdAt', sort_direction='desc'.")
        self.mode = mode
        self.customer_ids = customer_ids
        self.customer_ids_path = customer_ids_path
        self.sort_by = sort_by
        self.sort_direction = sort_direction
        self.since = since
        self.until = until

    def _iter_customer_ids(self) -> Iterator[str]:
        """The customer ids to export, streamed from the file or de-duplicated from the list."""
        if self.customer_ids_path is not None:
            path = to_path(rendered_path("customer_ids_path", self.customer_ids_path))
            for number, row in enumerate(iter_records(path), start=1):
                if not row.get("id"):
                    raise ValueError(f"Row {number} of {path.name} has no 'id': export customers with 'id' in fields.")
                yield _customer_id(row["id"], number)
            return
        ids = self.customer_ids
        if isinstance(ids, str):
            ids = [part for part in re.split(r"[\s,]+", ids) if part]
        elif ids is None or isinstance(ids, Mapping) or not isinstance(ids, Iterable):
            raise ValueError(f"customer_ids must render to a list of customer UUIDs, got {type(ids).__name__}.")
        yield from dict.fromkeys(_customer_id(value, n) for n, value in enumerate(ids, start=1))

    def _called_customer_ids(self, since: dt.datetime) -> Iterator[str]:
        """The customers whose last call is on or after ``since``'s (UTC) day, oldest customer first, each once.

        careCycle's last-call filter takes whole days, so it may list customers called earlier on that day; their
        calls are cut at ``since``. Customers called again since are listed too: their newer calls are skipped.
        """
        filters = {**DEFAULT_CUSTOMER_SORT, "last_call_start_date": since.astimezone(dt.timezone.utc).date()}
        for page in self.hook.customer_pages(filters, per_page=MAX_PER_PAGE):
            for number, item in enumerate(page.items, start=1):
                yield _customer_id(item, (page.number - 1) * MAX_PER_PAGE + number)

    def _call_pages(self, customer_ids: Iterable[str], window: _Window | None, counts: _CallCounts) -> Iterator[Page]:
        """Each customer's call pages in turn, rows tagged with ``customerId``, cut to the window."""
        for customer_id in customer_ids:
            counts.customers += 1
            if window is not None:
                window.start_customer()
            try:
                pages = self.hook.call_pages(
                    customer_id, sort_by=self.sort_by, sort_direction=self.sort_direction, per_page=self.per_page
                )
                for page in pages:
                    rows = [{"customerId": customer_id, **call} for call in page.items]
                    older = False
                    if window is not None:
                        rows, older = window.cut(customer_id, rows)
                    yield Page(items=rows, number=page.number, items_total=None)
                    if older:
                        counts.stopped_early += 1
                        break
            except CareCycleNotFoundError:
                counts.missing += 1
                self.log.warning("Customer %s was not found (deleted since it was listed?); skipping it.", customer_id)

    def execute(self, context: Context) -> dict[str, Any]:
        with rendered_arguments():
            rendered_path("output_path", self.output_path)
            rendered_path("customer_ids_path", self.customer_ids_path, optional=True)
            since = _parse_bound("since", self.since)
            until = _parse_bound("until", self.until)
            if self.mode == "placed" and since is None:
                raise ValueError("since rendered to an empty value: mode='placed' needs the start of its calls.")
            if since is not None and until is not None and until <= since:
                raise ValueError(f"until ({until.isoformat()}) must be later than since ({since.isoformat()}).")
        counts = _CallCounts()
        window = _Window(since, until) if since is not None or until is not None else None
        customer_ids = (
            self._called_customer_ids(since) if self.mode == "placed" and since else self._iter_customer_ids()
        )
        pages = self._call_pages(customer_ids, window, counts)
        written = self._export(pages, unit="calls", leading=("customerId",))
        self.log.info(
            "Calls of %d customers exported (%d missing, %d stopped early at since=%s, until=%s).",
            counts.customers,
            counts.missing,
            counts.stopped_early,
            since.isoformat() if since else None,
            until.isoformat() if until else None,
        )
        outcome = CallsExport(**written, customers=counts.customers, missing_customers=counts.missing)
        self.outcome = outcome
        record_outcome(self, context, outcome)  # metrics and the asset event
        return outcome.as_dict()

    def openlineage_datasets(self, outcome: Outcome | None) -> lineage.Datasets:
        """The customers file read (``customer_ids_path``, with the customers read), careCycle's
        ``customers/calls`` and the file written, with the rows exported."""
        done = outcome if isinstance(outcome, CallsExport) else None
        rows = None if done is None else done.count
        namespace = lineage.carecycle_namespace(self.hook.base_url)
        inputs = []
        if self.customer_ids_path:
            inputs.append(lineage.file_input(self.customer_ids_path, None if done is None else done.customers))
        if self.mode == "placed":  # the called customers are listed from careCycle
            inputs.append(lineage.input_dataset(namespace, lineage.CUSTOMERS, None if done is None else done.customers))
        inputs.append(lineage.input_dataset(namespace, lineage.CALLS, rows))
        return inputs, [lineage.file_output(self.output_path, rows)]
