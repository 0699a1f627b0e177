"""Which careCycle customers changed: the two ways the API allows, for the customers export's ``changed`` argument.

careCycle cannot sort or filter customers by ``updatedAt``. What it can do:

* ``touched`` (:class:`TouchedWindow`): the customers *created* in an interval (``dateField=createdAt``) and those
  *called* in it (``lastCallStartDate``/``lastCallEndDate``): two listings, merged by id, each customer once. Cheap;
  misses edits made by hand in careCycle's web app, and a customer called in the interval and again after it (its
  last call is then outside; run it on time).
* ``diff`` (:class:`CustomerDiff`): the whole listing, compared with the previous run's through a small state file:
  per customer id, a keyed hash of the exported fields (no field value in clear, in the spirit of the sync ledger).
  Only new and changed customers are written, plus a row for each id that disappeared. Complete; costs a full
  listing.

The state file (``state_path``) is gzipped JSON Lines, written like every export (private, atomic): a first line
``{"format": "carecycle-customer-diff", "version": 1, "binding": ..., "columns": ...}`` and one
``{"id": <customer UUID>, "hash": <32 hex digits>}`` per customer. The hash key comes from the careCycle the hook
talks to (its ``destination_id``), ``binding`` names it without saying which. The state is saved only after the
export's file is in place, so a failure in between exports the same changes again, never loses one.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_provider_carecycle.records import json_default
from airflow_provider_carecycle.storage import RecordWriter, iter_records, to_path
from airflow_provider_carecycle.sync.ledger import LeadHasher
from airflow_provider_carecycle.values import parse_iso_datetime

log = logging.getLogger(__name__)

CHANGED_MODES = ("touched", "diff")
#: the column every row of a ``changed`` export carries: when the export started (UTC, ISO 8601)
EXTRACTED_AT = "extractedAt"
#: the column of a ``diff`` export that says what happened to the customer: ``new``, ``changed`` or ``deleted``
CHANGE_TYPE = "changeType"
#: the customer filters ``touched`` sets itself (the two listings' date bounds)
TOUCHED_FILTERS = ("date_field", "start_date", "end_date", "last_call_start_date", "last_call_end_date")
STATE_FORMAT = "carecycle-customer-diff"
STATE_VERSION = 1


def extraction_time(now: dt.datetime | None = None) -> str:
    """The ``extractedAt`` value: ``now`` (default: the current time) in UTC, ISO 8601 with milliseconds and ``Z``."""
    moment = (now or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _timestamp(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = parse_iso_datetime(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


class TouchedWindow:
    """The customers created or called in ``[since, until)``: the two listings' filters, and each customer once.

    :param since: the interval's start (aware).
    :param until: its end (aware, later than ``since``).
    """

    def __init__(self, since: dt.datetime, until: dt.datetime) -> None:
        self.since = since
        self.until = until
        self._seen: set[str] = set()
        self.created = 0
        self.called = 0

    def listings(self, filters: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The filters of the two listings: created in the interval's days, last called in them.

        careCycle's date filters take whole (UTC) days, both bounds inclusive; :meth:`keep` cuts to the interval.

        :raises ValueError: when ``filters`` sets one of the date bounds ``touched`` sets itself.
        """
        clash = sorted(set(filters) & set(TOUCHED_FILTERS))
        if clash:
            raise ValueError(
                f"changed='touched' sets {', '.join(clash)} itself (from since/until): remove them from filters."
            )
        first = self.since.astimezone(dt.timezone.utc).date()
        last = (self.until.astimezone(dt.timezone.utc) - dt.timedelta(microseconds=1)).date()
        return [
            {**filters, "date_field": "createdAt", "start_date": first, "end_date": last},
            {**filters, "last_call_start_date": first, "last_call_end_date": last},
        ]

    def _inside(self, value: Any) -> bool:
        moment = _timestamp(value)
        return moment is not None and self.since <= moment < self.until

    def keep(self, item: Mapping[str, Any]) -> bool:
        """Whether to write this customer: created or last called in the interval, and not written before."""
        customer_id = item.get("id")
        if not isinstance(customer_id, str) or customer_id in self._seen:
            return False
        created = self._inside(item.get("createdAt"))
        if not created and not self._inside(item.get("lastCallDate")):
            return False
        self._seen.add(customer_id)
        if created:
            self.created += 1
        else:
            self.called += 1
        return True


@dataclass
class DiffCounts:
    """What a ``diff`` export found."""

    new: int = 0
    changed: int = 0
    unchanged: int = 0
    disappeared: int = 0


class CustomerDiff:
    """The previous export's hashes, the current one's, and what changed between them (see the module docstring).

    :param state_path: the state file (any ``ObjectStoragePath`` URI or local path; ``.jsonl.gz`` is a good name).
    :param destination: the careCycle exported from (the hook's ``destination_id``): it keys the hashes.
    :param columns: the exported columns (``None``: whole records); a change of columns makes every row changed.
    """

    def __init__(self, state_path: Any, destination: str, columns: Sequence[str] | None) -> None:
        self.path = to_path(state_path)
        self._hasher = LeadHasher(destination)
        self._columns = list(columns) if columns is not None else None
        self._previous: dict[str, str] = {}
        self._current: dict[str, str] = {}
        self.counts = DiffCounts()

    def _meta(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "binding": self._hasher.binding,
            "columns": self._columns,
        }

    def load(self) -> CustomerDiff:
        """Read the previous state; none (a first run), or one of another careCycle or version, means every
        customer is new and none disappeared.

        :raises ValueError: for a state file that is not one (naming the file and line), rather than a full export
            that would pass for a diff.
        """
        if not self.path.exists():
            log.info("No diff state at %s yet: every customer is new.", self.path.name)
            return self
        rows = iter_records(self.path, format="jsonl")
        meta = next(rows, None)
        if not isinstance(meta, dict) or meta.get("format") != STATE_FORMAT:
            raise ValueError(f"{self.path.name}: not a customer diff state (its first line is not the state's header).")
        expected = self._meta()
        if (meta.get("version"), meta.get("binding")) != (expected["version"], expected["binding"]):
            log.warning(
                "The diff state %s belongs to another careCycle connection or version: every customer is new.",
                self.path.name,
            )
            return self
        for number, row in enumerate(rows, start=2):
            customer_id, digest = row.get("id"), row.get("hash")
            if not isinstance(customer_id, str) or not isinstance(digest, str):
                raise ValueError(f"{self.path.name}, line {number}: a diff state entry needs 'id' and 'hash'.")
            self._previous[customer_id] = digest
        if meta.get("columns") != expected["columns"]:
            log.info("The exported columns changed since the diff state was written: every customer is changed.")
        return self

    def change(self, customer_id: str, row: Mapping[str, Any]) -> str | None:
        """Note the customer's exported row; its ``changeType`` (``new``, ``changed``) or ``None`` when unchanged."""
        text = json.dumps(row, default=json_default, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        digest = self._hasher.lead_hash(text).hex()
        self._current[customer_id] = digest
        before = self._previous.pop(customer_id, None)
        if before == digest:
            self.counts.unchanged += 1
            return None
        if before is None:
            self.counts.new += 1
            return "new"
        self.counts.changed += 1
        return "changed"

    def disappeared(self) -> Iterator[str]:
        """The ids the previous export had and this one did not (call once the listing is read to its end)."""
        for customer_id in sorted(self._previous):
            self.counts.disappeared += 1
            yield customer_id

    def save(self) -> None:
        """Write the current hashes as the next run's state (private, atomic)."""
        with RecordWriter(self.path, format="jsonl") as writer:
            writer.write(self._meta())
            for customer_id, digest in self._current.items():
                writer.write({"id": customer_id, "hash": digest})
