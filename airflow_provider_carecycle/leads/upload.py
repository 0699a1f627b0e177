"""The lead upload engine: validate, deduplicate, batch, upload at the rate limit, isolate rejects, resume.

:class:`LeadUploader` is what ``CareCycleUploadLeadsOperator`` and ``SqlToCareCycleLeadsOperator`` run; it can be
used directly with any iterable of source records and a ``CareCycleHook``.

How a run goes:

1. **Prepare** (no request yet). Every source record is validated and normalised by a
   :class:`~airflow_provider_carecycle.leads.validation.LeadValidator`. A rejected record goes straight to the
   rejected file. A valid lead is stored in a temporary SQLite file keyed by its identity (``externalId``, else
   the phone number); a later record with the same identity is merged into it field by field (the last value wins)
   and counted as a duplicate. Memory stays bounded by a batch whatever the input size: the spool is on disk.
2. **Fingerprint**: sha256 over the batch size and the normalised leads in first-seen order. Batches are cut from
   that order, so the same input always gives the same batches.
3. **Upload**: batches of ``batch_size`` go out through the hook (whose process-wide limiter keeps to the API's
   rate limit and which retries 429/5xx/dropped connections), with up to ``max_in_flight`` requests at once.
   Per-record ``errors[]`` of a 200 answer become rejections. A batch answered 400 ``VALIDATION_ERROR`` has its
   offenders isolated (by ``failedRecords``/error paths when the API names them, else by bisecting) and the rest
   re-sent. With a checkpoint, each answered request is recorded durably before moving on; a rerun on the same
   input skips what was settled and sends nothing twice.

Record contents never reach logs, exceptions or the summary: only counts, batch numbers, row numbers and
PHI-free reasons. The rejected file (which holds the original records) is the one place they go.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from typing import Any

from airflow_provider_carecycle.exceptions import CareCycleValidationError
from airflow_provider_carecycle.leads.checkpoint import StoredRejection, UploadCheckpoint
from airflow_provider_carecycle.leads.validation import LeadValidator, Rejection
from airflow_provider_carecycle.progress import Progress
from airflow_provider_carecycle.storage import RecordWriter, json_default
from airflow_provider_carecycle.vocabulary import MAX_RECORDS_PER_UPLOAD

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = MAX_RECORDS_PER_UPLOAD
DEFAULT_MAX_IN_FLIGHT = 4
MAX_IN_FLIGHT_LIMIT = 32
TOP_REASONS = 5

STAGE_VALIDATION = "validation"
STAGE_API = "api"
#: rejection code of a per-record error in a 200 answer
CODE_API_ERROR = "api_error"
#: rejection code of a record the API refused with 400 VALIDATION_ERROR
CODE_API_VALIDATION = "api_validation_error"


def check_upload_options(batch_size: int, max_in_flight: int) -> None:
    """Raise ``ValueError`` with one clear message when the batching options are out of range.

    :param batch_size: records per request, 1-200.
    :param max_in_flight: concurrent requests, 1-32.
    """
    for name, value, high in (
        ("batch_size", batch_size, MAX_RECORDS_PER_UPLOAD),
        ("max_in_flight", max_in_flight, MAX_IN_FLIGHT_LIMIT),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
            raise ValueError(f"{name} must be an integer from 1 to {high}, got {value!r}.")


@dataclass
class UploadSummary:
    """The outcome of an upload: counts only, never record contents (this is what goes to XCom).

    ``total == uploaded + rejected + duplicates`` once every batch is settled.

    :param total: source records read.
    :param valid: source records that passed validation (duplicates included).
    :param uploaded: leads the API accepted (in this run or, when resuming, in an earlier one).
    :param rejected: source records rejected, by validation or by the API.
    :param duplicates: valid records merged into an earlier record with the same identity.
    :param batches: batches the deduplicated leads were cut into.
    :param skipped_batches: batches already settled by an earlier run (from the checkpoint).
    :param rejected_path: where the rejected records were written, or ``None``.
    :param elapsed_s: seconds the run took.
    :param dry_run: nothing was sent.
    """

    total: int = 0
    valid: int = 0
    uploaded: int = 0
    rejected: int = 0
    duplicates: int = 0
    batches: int = 0
    skipped_batches: int = 0
    rejected_path: str | None = None
    elapsed_s: float = 0.0
    dry_run: bool = False
    reasons: Counter[str] = field(default_factory=Counter, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """The XCom summary: the counts and the most frequent (PHI-free) rejection reasons."""
        out = asdict(self)
        out.pop("reasons")
        out["top_reasons"] = [[reason, count] for reason, count in self.top_reasons()]
        out["elapsed_s"] = round(self.elapsed_s, 3)
        return out

    def top_reasons(self, n: int = TOP_REASONS) -> list[tuple[str, int]]:
        """The ``n`` most frequent PHI-free rejection reasons with their counts."""
        return self.reasons.most_common(n)


@dataclass(frozen=True)
class _Item:
    """One deduplicated lead in a batch: its source row (1-based), the lead, the original record as JSON text."""

    row: int
    lead: dict[str, Any]
    original: str


@dataclass
class _Settlement:
    """What the API settled for some positions of a batch."""

    positions: list[int]
    rejections: list[StoredRejection]


class _LeadSpool:
    """Valid leads keyed by identity, in first-seen order, in a temporary SQLite file (bounded memory).

    Not thread-safe: only the engine's main thread touches it.
    """

    def __init__(self) -> None:
        handle, self.path = tempfile.mkstemp(prefix="carecycle-leads-", suffix=".sqlite")
        os.close(handle)
        self._db = sqlite3.connect(self.path)
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-8000", "temp_store=FILE"):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.execute(
            "CREATE TABLE leads (seq INTEGER PRIMARY KEY, identity TEXT NOT NULL UNIQUE, "
            "row INTEGER NOT NULL, lead TEXT NOT NULL, original TEXT NOT NULL)"
        )
        self.count = 0

    def add(self, identity: str, row: int, lead: Mapping[str, Any], original: str) -> bool:
        """Store a lead; merge it into an earlier one with the same identity. Return True for a duplicate."""
        cursor = self._db.execute(
            "INSERT INTO leads (identity, row, lead, original) VALUES (?, ?, ?, ?) ON CONFLICT(identity) DO NOTHING",
            (identity, row, _dumps(lead), original),
        )
        if cursor.rowcount:
            self.count += 1
            return False
        (earlier,) = self._db.execute("SELECT lead FROM leads WHERE identity = ?", (identity,)).fetchone()
        merged = {**json.loads(earlier), **lead}
        self._db.execute(
            "UPDATE leads SET row = ?, lead = ?, original = ? WHERE identity = ?",
            (row, _dumps(merged), original, identity),
        )
        return True

    def batches(self, batch_size: int) -> Iterator[list[_Item]]:
        """Yield the leads in first-seen order, ``batch_size`` at a time."""
        cursor = self._db.execute("SELECT row, lead, original FROM leads ORDER BY seq")
        while rows := cursor.fetchmany(batch_size):
            yield [_Item(row, json.loads(lead), original) for row, lead, original in rows]

    def fingerprint(self, batch_size: int) -> str:
        """sha256 over the batch size and every normalised lead in order."""
        digest = hashlib.sha256(f"carecycle-leads:v1:batch_size={batch_size}\n".encode())
        for (lead,) in self._db.execute("SELECT lead FROM leads ORDER BY seq"):
            digest.update(lead.encode())
            digest.update(b"\n")
        return digest.hexdigest()

    def close(self) -> None:
        self._db.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False, default=json_default)


def _record_text(record: Any) -> str:
    try:
        return json.dumps(record, separators=(",", ":"), ensure_ascii=False, default=json_default)
    except (TypeError, ValueError):
        return json.dumps(repr(record))


def _record_position(path: Any, size: int) -> int | None:
    """The record index an API error path (``["records", 3, "dateOfBirth"]``) points at, if any."""
    if isinstance(path, list) and len(path) >= 2 and path[0] == "records" and isinstance(path[1], int):
        return path[1] if 0 <= path[1] < size else None
    return None


class LeadUploader:
    """Upload source records to careCycle as leads (see the module docstring for the whole flow).

    :param hook: a :class:`~airflow_provider_carecycle.hooks.carecycle.CareCycleHook` (not used when ``dry_run``).
    :param validator: maps, validates and normalises source records.
    :param batch_size: records per request, 1-200.
    :param max_in_flight: requests sent concurrently (the hook's limiter still caps the rate).
    :param rejected_path: JSON Lines file for the rejected records (``None``: count them only).
    :param checkpoint_path: where to keep the acknowledged batches, to resume after a crash (``None``: no resume).
    :param dry_run: validate, normalise and write the rejected file, but send nothing.
    :param logger: where progress and summaries go (an operator's ``self.log``).
    :param progress_every_s: least seconds between two progress lines.
    """

    def __init__(
        self,
        hook: Any,
        validator: LeadValidator,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        rejected_path: str | None = None,
        checkpoint_path: str | None = None,
        dry_run: bool = False,
        logger: logging.Logger | None = None,
        progress_every_s: float = 30.0,
    ) -> None:
        check_upload_options(batch_size, max_in_flight)
        self.hook = hook
        self.validator = validator
        self.batch_size = batch_size
        self.max_in_flight = max_in_flight
        self.rejected_path = rejected_path
        self.checkpoint_path = checkpoint_path
        self.dry_run = dry_run
        self.log = logger or log
        self.progress_every_s = progress_every_s

    # -- the run -------------------------------------------------------------------------------------------------

    def run(self, records: Iterable[Any]) -> UploadSummary:
        """Validate, deduplicate and upload ``records``; write the rejected file; return the summary.

        :param records: source records (dicts), read once, as a stream.
        :raises CareCycleAPIError: when the API fails for good (auth, retries exhausted); settled batches are in
            the checkpoint, so a rerun resumes.
        """
        started = time.monotonic()
        summary = UploadSummary(rejected_path=self.rejected_path, dry_run=self.dry_run)
        spool = _LeadSpool()
        try:
            with self._rejected_writer() as writer:
                self._prepare(records, spool, summary, writer)
                summary.batches = -(-spool.count // self.batch_size)
                if self.dry_run:
                    self.log.info(
                        "Dry run: %d records, %d valid, %d rejected, %d duplicates, %d batches; nothing sent.",
                        summary.total,
                        summary.valid,
                        summary.rejected,
                        summary.duplicates,
                        summary.batches,
                    )
                elif spool.count:
                    self._upload(spool, summary, writer)
        finally:
            spool.close()
        summary.elapsed_s = time.monotonic() - started
        return summary

    def _rejected_writer(self) -> Any:
        if self.rejected_path is None:
            return _NullWriter()
        return RecordWriter(self.rejected_path, format="jsonl")

    # -- stage 1: validate and spool -----------------------------------------------------------------------------

    def _prepare(self, records: Iterable[Any], spool: _LeadSpool, summary: UploadSummary, writer: Any) -> None:
        for row, record in enumerate(records, start=1):
            summary.total += 1
            result = self.validator.validate(record)
            if not result.ok:
                self._reject_validation(row, record, result.rejections, summary, writer)
                continue
            summary.valid += 1
            lead = result.lead or {}
            if spool.add(self.validator.identity(lead), row, lead, _record_text(record)):
                summary.duplicates += 1
        self.log.info(
            "Validated %d records: %d valid, %d rejected, %d duplicates merged.",
            summary.total,
            summary.valid,
            summary.rejected,
            summary.duplicates,
        )

    def _reject_validation(
        self, row: int, record: Any, rejections: list[Rejection], summary: UploadSummary, writer: Any
    ) -> None:
        first = rejections[0]
        summary.rejected += 1
        summary.reasons[f"validation: {first.reason}"] += 1
        writer.write(
            {
                "stage": STAGE_VALIDATION,
                "row": row,
                "field": first.field,
                "code": first.code,
                "reason": first.reason,
                "errors": [{"field": r.field, "code": r.code, "reason": r.reason} for r in rejections],
                "record": json.loads(_record_text(record)),
            }
        )

    # -- stage 2: upload -----------------------------------------------------------------------------------------

    def _upload(self, spool: _LeadSpool, summary: UploadSummary, writer: Any) -> None:
        checkpoint = None
        if self.checkpoint_path is not None:
            checkpoint = UploadCheckpoint(
                self.checkpoint_path,
                fingerprint=spool.fingerprint(self.batch_size),
                batch_size=self.batch_size,
                batches=summary.batches,
            )
            if checkpoint.resumed:
                self.log.info(
                    "Resuming from checkpoint %s: %d of %d batches already settled.",
                    self.checkpoint_path,
                    checkpoint.done_count,
                    summary.batches,
                )
        progress = Progress(self.log, "leads", total=spool.count, every_s=self.progress_every_s)
        getattr(self.hook, "limiter", None)  # resolve the connection and shared limiter before threads start
        pending: dict[Future[list[_Settlement]], tuple[int, list[_Item]]] = {}
        failure: BaseException | None = None
        with ThreadPoolExecutor(self.max_in_flight, thread_name_prefix="carecycle-upload") as pool:
            for number, items in enumerate(spool.batches(self.batch_size)):
                if failure is not None:
                    break
                todo = self._todo(number, items, checkpoint, summary, writer)
                if not todo:
                    progress.total = (progress.total or 0) - len(items)
                    continue
                submit = self._send_all if checkpoint is None else self._send_all_checkpointed
                future = pool.submit(submit, number, items, todo, checkpoint)
                pending[future] = (number, items)
                while len(pending) >= self.max_in_flight:
                    failure = self._collect(pending, summary, writer, progress) or failure
            while pending:
                failure = self._collect(pending, summary, writer, progress) or failure
        self.log.info("%s", progress.line())
        if failure is not None:
            raise failure

    def _todo(
        self,
        number: int,
        items: list[_Item],
        checkpoint: UploadCheckpoint | None,
        summary: UploadSummary,
        writer: Any,
    ) -> list[int]:
        """The positions of batch ``number`` still to send; account for the ones an earlier run settled."""
        if checkpoint is None:
            return list(range(len(items)))
        settled = set(range(len(items))) if checkpoint.is_done(number) else checkpoint.settled(number)
        if settled:
            earlier = [r for r in checkpoint.rejections(number) if r[0] is None or r[0] in settled]
            self._account(number, items, _Settlement(sorted(settled), earlier), summary, writer)
        if checkpoint.is_done(number):
            summary.skipped_batches += 1
        return [p for p in range(len(items)) if p not in settled]

    def _collect(
        self,
        pending: dict[Future[list[_Settlement]], tuple[int, list[_Item]]],
        summary: UploadSummary,
        writer: Any,
        progress: Progress,
    ) -> BaseException | None:
        """Wait for at least one request group to finish and account for it; return its error, if any."""
        done, _ = wait(pending, return_when=FIRST_COMPLETED)
        failure = None
        for future in done:
            number, items = pending.pop(future)
            error = future.exception()
            if error is not None:
                failure = failure or error
                self.log.error("Batch %d failed: %s", number, getattr(error, "message", type(error).__name__))
                continue
            for settlement in future.result():
                self._account(number, items, settlement, summary, writer)
            progress.add(len(items))
        return failure

    def _account(
        self, number: int, items: list[_Item], settlement: _Settlement, summary: UploadSummary, writer: Any
    ) -> None:
        """Count a settlement and write its rejections (main thread only)."""
        summary.uploaded += len(settlement.positions) - len(settlement.rejections)
        for position, field_name, code, reason in settlement.rejections:
            item = items[position] if position is not None else None
            summary.rejected += 1
            summary.reasons[f"api: {field_name or 'record'} ({code})"] += 1
            writer.write(
                {
                    "stage": STAGE_API,
                    "row": item.row if item else None,
                    "batch": number,
                    "field": field_name,
                    "code": code,
                    "reason": reason,
                    "record": json.loads(item.original) if item else None,
                }
            )

    # -- sending (worker threads) --------------------------------------------------------------------------------

    def _send_all_checkpointed(
        self, number: int, items: list[_Item], todo: list[int], checkpoint: UploadCheckpoint
    ) -> list[_Settlement]:
        def settle(settlement: _Settlement) -> None:
            checkpoint.record(number, settlement.positions, settlement.rejections, batch_len=len(items))

        return self._send(items, todo, settle)

    def _send_all(self, number: int, items: list[_Item], todo: list[int], checkpoint: None) -> list[_Settlement]:
        return self._send(items, todo, lambda settlement: None)

    def _send(
        self, items: list[_Item], positions: list[int], on_settled: Callable[[_Settlement], None]
    ) -> list[_Settlement]:
        """Send ``positions`` of a batch in one request; isolate offenders of a 400 and re-send the rest."""
        settlements: list[_Settlement] = []
        queue = [positions]
        while queue:
            group = queue.pop(0)
            try:
                answer = self.hook.upload_leads([items[p].lead for p in group])
            except CareCycleValidationError as error:
                offenders, rest = self._isolate(error, group)
                if offenders:
                    settlement = _Settlement([p for p, _ in offenders], [r for _, r in offenders])
                    on_settled(settlement)
                    settlements.append(settlement)
                queue[:0] = [part for part in rest if part]
                continue
            settlement = _Settlement(group, self._answer_rejections(answer, items, group))
            on_settled(settlement)
            settlements.append(settlement)
        return settlements

    @staticmethod
    def _isolate(
        error: CareCycleValidationError, group: list[int]
    ) -> tuple[list[tuple[int, StoredRejection]], list[list[int]]]:
        """Split a 400'd group into rejected offenders and the groups to re-send.

        The offenders are the records the API named (``failedRecords[].index``, ``errors[].path``). When it named
        none, a single record is the offender; a larger group is cut in two and each half re-sent.
        """
        reasons: dict[int, list[tuple[str | None, str]]] = {}
        for issue in error.errors:
            local = _record_position(issue.get("path"), len(group))
            if local is not None:
                path = issue.get("path") or []
                field_name = str(path[2]) if len(path) > 2 else None
                reasons.setdefault(local, []).append((field_name, str(issue.get("message") or "invalid")))
        for failed in error.failed_records:
            index = failed.get("index") if isinstance(failed, dict) else None
            if isinstance(index, int) and 0 <= index < len(group):
                reasons.setdefault(index, [])
        if not reasons and len(group) == 1:
            reasons[0] = [(None, error.message)]
        if not reasons:
            middle = len(group) // 2
            return [], [group[:middle], group[middle:]]
        offenders = []
        for local, found in sorted(reasons.items()):
            field_name = found[0][0] if found else None
            text = "; ".join(f"{f}: {m}" if f else m for f, m in found) or "rejected by the API (VALIDATION_ERROR)"
            offenders.append((group[local], (group[local], field_name, CODE_API_VALIDATION, f"API: {text}")))
        rest = [p for i, p in enumerate(group) if i not in reasons]
        return offenders, [rest]

    @staticmethod
    def _answer_rejections(answer: Any, items: list[_Item], group: list[int]) -> list[StoredRejection]:
        """The per-record ``errors[]`` of a 200 answer, matched to positions by ``externalId``."""
        errors = answer.get("errors") if isinstance(answer, dict) else None
        if not isinstance(errors, list) or not errors:
            return []
        by_external_id = {
            str(items[p].lead["externalId"]): p for p in group if items[p].lead.get("externalId") is not None
        }
        without_id = [p for p in group if items[p].lead.get("externalId") is None]
        rejections: list[StoredRejection] = []
        taken: set[int] = set()
        for error in errors:
            if not isinstance(error, dict):
                continue
            external_id = error.get("externalId")
            position = by_external_id.get(str(external_id)) if external_id is not None else None
            if position is None and external_id is None and len(without_id) == 1:
                position = without_id[0]
            if position in taken:
                position = None
            if position is not None:
                taken.add(position)
            rejections.append((position, None, CODE_API_ERROR, f"API: {error.get('error') or 'record failed'}"))
        return rejections


class _NullWriter:
    """Stands in for the rejected-records writer when no ``rejected_path`` is given."""

    count = 0

    def __enter__(self) -> _NullWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def write(self, record: Mapping[str, Any]) -> None:
        self.count += 1
