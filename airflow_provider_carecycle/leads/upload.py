"""The lead upload engine: validate, deduplicate, batch, upload at the rate limit, isolate rejects, resume.

:class:`LeadUploader` is what ``CareCycleUploadLeadsOperator`` and ``SqlToCareCycleLeadsOperator`` run; it can be
used directly with any iterable of source records and a ``CareCycleHook``.

How a run goes:

1. **Prepare** (no request yet). Every source record is validated and normalised by a
   :class:`~airflow_provider_carecycle.leads.validation.LeadValidator`. A rejected record goes straight to the
   rejected file. A valid lead is stored in a temporary SQLite file keyed by its identity (``externalId``, else
   the phone number); a later record with the same identity is merged into it field by field (the last value wins)
   and counted as a duplicate. Memory stays bounded by a batch whatever the input size: the spool is on disk.
   With a sync ledger (``sync_state_path``, see :mod:`~airflow_provider_carecycle.leads.ledger`), the leads
   careCycle already holds exactly as they are now are marked *unchanged* and not sent.
2. **Fingerprint**: sha256 over the batch size and the normalised leads in first-seen order. Batches are cut from
   that order, so the same input always gives the same batches.
3. **Upload**: batches of ``batch_size`` go out through the hook (whose process-wide limiter keeps to the API's
   rate limit and which retries 429/5xx/dropped connections), with up to ``max_in_flight`` requests at once.
   A 200 answer must account for every record sent (``succeeded + failed`` equal to the records sent, one
   ``errors[]`` entry per failure, each tied to a record sent by its ``externalId``); its per-record errors become
   rejections. Any other 200 answer leaves the batch *unsettled*: :class:`UnsettledBatchError`, nothing counted.
   A batch answered 400 ``VALIDATION_ERROR`` has its offenders isolated (by ``failedRecords``/error paths when the
   API names them, else by bisecting) and the rest re-sent. A 413 halves the batch once; any other 4xx (and a 413
   for a half) fails the batch at once, unsettled. With a checkpoint (bound to the input and to the destination),
   each settled request is recorded durably before moving on; a rerun on the same input to the same careCycle
   skips what was settled and sends the rest. Every lead careCycle accepted (in this run, or in an earlier one
   that the checkpoint resumes) is noted in the sync ledger, which is saved every minute and when the run ends,
   even when it fails.

**Stopping** (:meth:`LeadUploader.stop`, what the operators' ``on_kill`` calls): no new request is sent; the
requests in flight get :data:`STOP_GRACE_S` seconds to be answered, and their answers are recorded like any other.
A request still unanswered then is abandoned: whatever its answer, it is not recorded (nor counted, nor put in the
ledger), so the checkpoint holds exactly the settlements the run recorded and a rerun sends the rest.
The run then raises :class:`TaskKilledError`; the rejected file's temporary file is removed.

Record contents never reach logs, exceptions or the summary: only counts, batch numbers, row numbers and
PHI-free reasons. The rejected file (which holds the original records) is the one place they go.

Why one module of this size: preparing, batching, sending and settling share one invariant (every lead uploaded,
rejected, merged or unchanged exactly once, nothing counted that careCycle did not acknowledge), kept readable in
one place; the spool, checkpoint, ledger and protocols are modules of their own.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from queue import SimpleQueue
from typing import Any, TypeGuard

from airflow_provider_carecycle.exceptions import CareCycleAPIError, CareCycleValidationError, TaskKilledError
from airflow_provider_carecycle.leads.checkpoint import CheckpointStore, UploadCheckpoint
from airflow_provider_carecycle.leads.ledger import SyncLedger, SyncLedgerError, check_resend_after
from airflow_provider_carecycle.leads.protocols import LeadUploadHook, RecordSink
from airflow_provider_carecycle.leads.rejection import (
    STAGE_API,
    STAGE_VALIDATION,
    Rejection,
    RejectionCode,
    rejected_line,
)
from airflow_provider_carecycle.leads.validation import LeadValidator
from airflow_provider_carecycle.progress import Progress, TaskLog
from airflow_provider_carecycle.scratch import scratch_database
from airflow_provider_carecycle.storage import RecordWriter, json_default
from airflow_provider_carecycle.vocabulary import MAX_RECORDS_PER_UPLOAD

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = MAX_RECORDS_PER_UPLOAD
DEFAULT_MAX_IN_FLIGHT = 4
MAX_IN_FLIGHT_LIMIT = 32
TOP_REASONS = 5
#: least seconds between two saves of the sync ledger during a run (it is saved at the end too)
LEDGER_SAVE_EVERY_S = 60.0

#: seconds a stopped upload waits for its requests in flight before abandoning them (Airflow 3 kills a task
#: process 5 s after its SIGTERM)
STOP_GRACE_S = 3.0
#: how often (seconds) the main thread looks for a stop while it waits for answers
_STOP_POLL_S = 0.1


class UnsettledBatchError(CareCycleAPIError):
    """careCycle did not settle a batch: its answer did not account for every lead sent, a per-record error could
    not be tied to a lead sent, or it refused the batch (a 4xx) without naming the leads at fault.

    None of the batch's unsettled leads counts as uploaded and none is in the checkpoint, so a rerun with the same
    ``checkpoint_path`` sends them again (careCycle's upload is an upsert by ``externalId``).

    :param message: what went wrong, PHI-free (batch number, counts, statuses).
    :param batch: the batch number.
    :param unsettled: how many leads of the batch stay unsettled.
    :param status: the HTTP status of the answer.
    """

    def __init__(self, message: str, *, batch: int, unsettled: int, status: int | None = None) -> None:
        super().__init__(message, status=status)
        self.batch = batch
        self.unsettled = unsettled


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

    ``total == uploaded + rejected + duplicates + unchanged`` once every batch is settled.

    :param total: source records read.
    :param valid: source records that passed validation (duplicates included).
    :param uploaded: leads the API accepted (in this run or, when resuming, in an earlier one).
    :param rejected: source records rejected, by validation or by the API.
    :param duplicates: valid records merged into an earlier record with the same identity.
    :param unchanged: leads not sent because the sync ledger holds them, unchanged, as accepted by careCycle.
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
    unchanged: int = 0
    batches: int = 0
    skipped_batches: int = 0
    rejected_path: str | None = None
    elapsed_s: float = 0.0
    dry_run: bool = False
    reasons: Counter[str] = field(default_factory=Counter, repr=False)
    #: the source rows (1-based) of the leads careCycle refused per record, in this run or in the earlier one a
    #: checkpoint resumes (not in XCom: for a source that must offer them again, like the CRM watermark)
    refused_rows: list[int] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """The XCom summary: the counts and the most frequent (PHI-free) rejection reasons."""
        out = asdict(self)
        out.pop("reasons")
        out.pop("refused_rows")
        out["top_reasons"] = [[reason, count] for reason, count in self.top_reasons()]
        out["elapsed_s"] = round(self.elapsed_s, 3)
        return out

    def top_reasons(self, n: int = TOP_REASONS) -> list[tuple[str, int]]:
        """The ``n`` most frequent PHI-free rejection reasons with their counts."""
        return self.reasons.most_common(n)


@dataclass(frozen=True)
class _Item:
    """One deduplicated lead in a batch: its source row (1-based), the lead, the original record as the JSON text
    it was spooled as (written to the rejected file as it is, never parsed)."""

    row: int
    lead: dict[str, Any]
    original: str


@dataclass
class _Settlement:
    """What the API settled for some positions of a batch (each rejection carries its ``position``)."""

    positions: list[int]
    rejections: list[Rejection]


class _LeadSpool:
    """Valid leads keyed by identity, in first-seen order, on disk (bounded memory) in SQLite's temporary database:
    a file with no name, so nothing of it outlives the process, even a ``kill -9``
    (:func:`~airflow_provider_carecycle.scratch.scratch_database`).

    Not thread-safe: only the engine's main thread touches it.
    """

    def __init__(self) -> None:
        self._db = scratch_database("cache_size=-8000")
        self._db.execute(
            "CREATE TABLE leads (seq INTEGER PRIMARY KEY, identity TEXT NOT NULL UNIQUE, "
            "row INTEGER NOT NULL, lead TEXT NOT NULL, original TEXT NOT NULL, send INTEGER NOT NULL DEFAULT 1)"
        )
        self.count = 0
        self.unchanged = 0

    @property
    def to_send(self) -> int:
        """How many leads are to be sent (all but the unchanged ones)."""
        return self.count - self.unchanged

    def mark_unchanged(self, ledger: SyncLedger) -> int:
        """Mark the leads the ledger holds as unchanged (they are not sent); return how many."""
        self._db.execute("CREATE TEMP TABLE unchanged (seq INTEGER PRIMARY KEY)")
        rows = self._db.execute("SELECT seq, identity, lead FROM leads ORDER BY seq")
        insert = self._db.cursor()
        found = ledger.unchanged(rows)
        while chunk := list(itertools.islice(found, 10_000)):
            insert.executemany("INSERT INTO temp.unchanged (seq) VALUES (?)", ((seq,) for seq in chunk))
        self._db.execute("UPDATE leads SET send = 0 WHERE seq IN (SELECT seq FROM temp.unchanged)")
        (self.unchanged,) = self._db.execute("SELECT count(*) FROM leads WHERE send = 0").fetchone()
        self._db.execute("DROP TABLE temp.unchanged")
        return self.unchanged

    def leads_to_send(self) -> Iterator[tuple[str, str]]:
        """``(identity, lead_text)`` of every lead to send, in first-seen order."""
        yield from self._db.execute("SELECT identity, lead FROM leads WHERE send = 1 ORDER BY seq")

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
        """Yield the leads to send in first-seen order, ``batch_size`` at a time."""
        cursor = self._db.execute("SELECT row, lead, original FROM leads WHERE send = 1 ORDER BY seq")
        while rows := cursor.fetchmany(batch_size):
            yield [_Item(row, json.loads(lead), original) for row, lead, original in rows]

    def fingerprint(self, batch_size: int) -> str:
        """sha256 over the batch size and every normalised lead to send, in order."""
        digest = hashlib.sha256(f"carecycle-leads:v1:batch_size={batch_size}\n".encode())
        for (lead,) in self._db.execute("SELECT lead FROM leads WHERE send = 1 ORDER BY seq"):
            digest.update(lead.encode())
            digest.update(b"\n")
        return digest.hexdigest()

    def close(self) -> None:
        self._db.close()


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False, default=json_default)


def _record_text(record: Any) -> str:
    """The original record as compact JSON text: made once, spooled, and written to the rejected file as it is."""
    try:
        return json.dumps(record, separators=(",", ":"), ensure_ascii=False, default=json_default)
    except (TypeError, ValueError):
        return json.dumps(repr(record))


def _record_position(path: Any, size: int) -> int | None:
    """The record index an API error path (``["records", 3, "dateOfBirth"]``) points at, if any."""
    if isinstance(path, list) and len(path) >= 2 and path[0] == "records" and _is_count(path[1]):
        return path[1] if path[1] < size else None
    return None


class LeadUploader:
    """Upload source records to careCycle as leads (see the module docstring for the whole flow).

    :param hook: a :class:`~airflow_provider_carecycle.hooks.carecycle.CareCycleHook` (not used when ``dry_run``).
    :param validator: maps, validates and normalises source records.
    :param batch_size: records per request, 1-200.
    :param max_in_flight: requests sent concurrently (the hook's limiter still caps the rate).
    :param rejected_path: JSON Lines file for the rejected records (``None``: count them only).
    :param checkpoint_path: where to keep the acknowledged batches, to resume after a crash: a URI or path, or any
        :class:`~airflow_provider_carecycle.leads.checkpoint.CheckpointStore` (``None``: no resume).
    :param dry_run: validate, normalise and write the rejected file, but send nothing (the sync ledger is not read).
    :param sync_state_path: the sync ledger's folder (``None``: send every lead); needs a hook with a
        ``destination_id``.
    :param full_sync: with a ledger, send every lead and replace the ledger with what careCycle accepts.
    :param resend_after: with a ledger, send again a lead last accepted longer ago than this (``timedelta`` or
        seconds; ``None``: never for its age).
    :param logger: where progress and summaries go (an operator's ``self.log``).
    :param progress_every_s: least seconds between two progress lines.
    """

    def __init__(
        self,
        hook: LeadUploadHook | None,
        validator: LeadValidator,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        rejected_path: str | None = None,
        checkpoint_path: str | CheckpointStore | None = None,
        dry_run: bool = False,
        sync_state_path: Any = None,
        full_sync: bool = False,
        resend_after: timedelta | float | None = None,
        logger: TaskLog | None = None,
        progress_every_s: float = 30.0,
    ) -> None:
        check_upload_options(batch_size, max_in_flight)
        self.sync_state_path = sync_state_path
        self.full_sync = full_sync
        self.resend_after = check_resend_after(resend_after)
        self._ledger: SyncLedger | None = None
        self._ledger_saved_at = 0.0
        self.hook = hook
        self.validator = validator
        self.batch_size = batch_size
        self.max_in_flight = max_in_flight
        self.rejected_path = rejected_path
        self.checkpoint_path = checkpoint_path
        self.dry_run = dry_run
        self.log = logger or log
        self.progress_every_s = progress_every_s
        self._stop = threading.Event()
        self._settle_lock = threading.Lock()
        self._abandoned = False

    def stop(self) -> None:
        """Ask the run to stop: no new request; the ones in flight are settled or abandoned, then the run raises
        :class:`TaskKilledError`. Thread-safe and returns at once (safe in a signal handler, as ``on_kill``).
        """
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stop.is_set()

    def _raise_if_stopped(self, stage: str) -> None:
        if self._stop.is_set():
            raise TaskKilledError(f"Lead upload stopped (the task was killed) while {stage}; nothing was sent.")

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
        failed = True
        try:
            with self._rejected_writer() as writer:
                self._prepare(records, spool, summary, writer)
                self._raise_if_stopped("validating the records")
                if self.sync_state_path is not None and not self.dry_run and spool.count:
                    self._ledger = self._open_ledger()
                    self._ledger_saved_at = time.monotonic()
                    summary.unchanged = spool.mark_unchanged(self._ledger)
                    self.log.info(
                        "Sync ledger: %d of %d leads unchanged since careCycle accepted them; %d to send.",
                        summary.unchanged,
                        spool.count,
                        spool.to_send,
                    )
                    if spool.to_send:  # durably, before the first request: see SyncLedger.revoke
                        self._ledger.revoke(spool.leads_to_send())
                summary.batches = -(-spool.to_send // self.batch_size)
                if self.dry_run:
                    self.log.info(
                        "Dry run: %d records, %d valid, %d rejected, %d duplicates, %d batches; nothing sent.",
                        summary.total,
                        summary.valid,
                        summary.rejected,
                        summary.duplicates,
                        summary.batches,
                    )
                elif spool.to_send:
                    self._upload(spool, summary, writer)
            failed = False
        finally:
            spool.close()
            self._close_ledger(failed)
        summary.elapsed_s = time.monotonic() - started
        return summary

    def _open_ledger(self) -> SyncLedger:
        destination = getattr(self.hook, "destination_id", None)
        if not isinstance(destination, str) or not destination:
            raise ValueError(
                "sync_state_path needs a hook with a destination_id (the careCycle the leads go to), "
                f"and {type(self.hook).__name__} has none."
            )
        assert self.sync_state_path is not None
        return SyncLedger(
            self.sync_state_path, destination=destination, full_sync=self.full_sync, resend_after=self.resend_after
        ).open()

    def _close_ledger(self, failed: bool) -> None:
        """Save what careCycle accepted in this run (also when it failed), then drop the working copy.

        :param failed: the run is failing; an error saving the ledger is then logged, not raised over the failure.
        """
        ledger, self._ledger = self._ledger, None
        if ledger is None:
            return
        try:
            if ledger.unsaved or (ledger.full_sync and not ledger.recorded and not failed):
                ledger.save()
        except SyncLedgerError as err:
            if not failed:
                raise
            self.log.error("%s", err)
        finally:
            ledger.close()

    def _rejected_writer(self) -> RecordSink:
        if self.rejected_path is None:
            return _NullWriter()
        return RecordWriter(self.rejected_path, format="jsonl")

    # -- stage 1: validate and spool -----------------------------------------------------------------------------

    def _prepare(self, records: Iterable[Any], spool: _LeadSpool, summary: UploadSummary, writer: RecordSink) -> None:
        for row, record in enumerate(records, start=1):
            self._raise_if_stopped("validating the records")
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
        self, row: int, record: Any, rejections: list[Rejection], summary: UploadSummary, writer: RecordSink
    ) -> None:
        summary.rejected += 1
        summary.reasons[f"validation: {rejections[0].reason}"] += 1
        writer.write_json_text(rejected_line(STAGE_VALIDATION, row, rejections, _record_text(record)))

    # -- stage 2: upload -----------------------------------------------------------------------------------------

    def _upload(self, spool: _LeadSpool, summary: UploadSummary, writer: RecordSink) -> None:
        checkpoint = None
        if self.checkpoint_path is not None:
            destination = getattr(self.hook, "destination_id", None)
            if not isinstance(destination, str) or not destination:
                raise ValueError(
                    "checkpoint_path needs a hook with a destination_id (the careCycle the leads go to), "
                    f"and {type(self.hook).__name__} has none."
                )
            checkpoint = UploadCheckpoint(
                self.checkpoint_path,
                fingerprint=spool.fingerprint(self.batch_size),
                batch_size=self.batch_size,
                batches=summary.batches,
                destination=destination,
            )
            if checkpoint.resumed:
                self.log.info(
                    "Resuming from checkpoint %s: %d of %d batches already settled.",
                    self.checkpoint_path,
                    checkpoint.done_count,
                    summary.batches,
                )
        validation_rejected = summary.rejected
        progress = Progress(self.log, "leads", total=spool.to_send, every_s=self.progress_every_s)
        getattr(self.hook, "limiter", None)  # resolve the connection and shared limiter before threads start
        pending: dict[Future[None], int] = {}
        settled: SimpleQueue[tuple[int, list[_Item], _Settlement]] = SimpleQueue()
        failure: BaseException | None = None
        pool = ThreadPoolExecutor(self.max_in_flight, thread_name_prefix="carecycle-upload")
        try:
            for number, items in enumerate(spool.batches(self.batch_size)):
                if failure is not None or self._stop.is_set():
                    break
                todo = self._todo(number, items, checkpoint, summary, writer, progress)
                if not todo:
                    continue
                future = pool.submit(self._send_batch, number, items, todo, checkpoint, settled)
                pending[future] = number
                while len(pending) >= self.max_in_flight and not self._stop.is_set():
                    failure = self._collect(pending, settled, summary, writer, progress) or failure
            while pending and not self._stop.is_set():
                failure = self._collect(pending, settled, summary, writer, progress) or failure
        finally:
            # also when Airflow 2 raises its SIGTERM exception here, right after on_kill
            if self._stop.is_set():
                self._wind_down(pool, pending, settled, summary, writer)
            else:
                pool.shutdown(wait=True)
        self.log.info("%s", progress.line())
        api_rejected = summary.rejected - validation_rejected
        if self._stop.is_set() and summary.uploaded + api_rejected < spool.to_send:  # else: done before the kill
            raise TaskKilledError(
                f"Lead upload stopped (the task was killed): {summary.uploaded + api_rejected} of {spool.to_send} "
                f"leads are settled ({summary.uploaded} uploaded, {api_rejected} rejected by the API) and recorded; "
                "the others count as not uploaded. " + self._rerun_advice(checkpoint)
            )
        if failure is not None:
            self.log.error(
                "Lead upload stopped: %d of %d leads are settled (%d uploaded, %d rejected by the API); the other "
                "%d are unsettled and none of them counts as uploaded. %s",
                summary.uploaded + api_rejected,
                spool.to_send,
                summary.uploaded,
                api_rejected,
                spool.to_send - summary.uploaded - api_rejected,
                self._rerun_advice(checkpoint),
            )
            raise failure

    def _rerun_advice(self, checkpoint: UploadCheckpoint | None) -> str:
        """What a rerun sends, for the failure messages: only the unsettled leads when it resumes from a checkpoint
        (a ``checkpoint_path``, or Airflow 3.3's task state store on a retry of the same task instance)."""
        if checkpoint is None:
            return "Without a checkpoint_path a rerun sends every lead again (an upsert by externalId)."
        return f"A rerun that resumes from the checkpoint in {self.checkpoint_path} sends only those."

    def _todo(
        self,
        number: int,
        items: list[_Item],
        checkpoint: UploadCheckpoint | None,
        summary: UploadSummary,
        writer: RecordSink,
        progress: Progress,
    ) -> list[int]:
        """The positions of batch ``number`` still to send; account for the ones an earlier run settled."""
        if checkpoint is None:
            return list(range(len(items)))
        settled = set(range(len(items))) if checkpoint.is_done(number) else checkpoint.settled(number)
        if settled:
            earlier = [r for r in checkpoint.rejections(number) if r.position in settled]
            self._account(number, items, _Settlement(sorted(settled), earlier), summary, writer)
            progress.total = (progress.total or 0) - len(settled)
        if checkpoint.is_done(number):
            summary.skipped_batches += 1
        return [p for p in range(len(items)) if p not in settled]

    def _collect(
        self,
        pending: dict[Future[None], int],
        settled: SimpleQueue[tuple[int, list[_Item], _Settlement]],
        summary: UploadSummary,
        writer: RecordSink,
        progress: Progress,
    ) -> BaseException | None:
        """Wait for at least one batch to finish, account for every settlement so far; return a batch's error.

        Settlements are accounted as they come, so the part of a batch settled before it failed counts too.
        Returns early, with nothing done, when the run is stopped.
        """
        done: set[Future[None]] = set()
        while not done and not self._stop.is_set():
            done, _ = wait(pending, timeout=_STOP_POLL_S, return_when=FIRST_COMPLETED)
        while not settled.empty():
            number, items, settlement = settled.get()
            self._account(number, items, settlement, summary, writer)
            progress.add(len(settlement.positions))
        failure = None
        for future in done:
            number = pending.pop(future)
            error = future.exception()
            if error is not None:
                failure = failure or error
                self.log.error("Batch %d failed: %s", number, getattr(error, "message", type(error).__name__))
        return failure

    def _wind_down(
        self,
        pool: ThreadPoolExecutor,
        pending: dict[Future[None], int],
        settled: SimpleQueue[tuple[int, list[_Item], _Settlement]],
        summary: UploadSummary,
        writer: Any,
    ) -> None:
        """After a stop: send nothing more, give the requests in flight :data:`STOP_GRACE_S` seconds, abandon the
        rest (their answers are then not recorded), and account for every settlement recorded."""
        pool.shutdown(wait=False, cancel_futures=True)
        _, unanswered = wait(pending, timeout=STOP_GRACE_S)
        with self._settle_lock:  # from here on no worker records anything
            self._abandoned = True
        while not settled.empty():
            number, items, settlement = settled.get()
            self._account(number, items, settlement, summary, writer)
        if unanswered:
            self.log.warning(
                "Lead upload stopped: %d request(s) still in flight after %.0f s are abandoned; they are not "
                "recorded, so a rerun sends their leads again (an upsert by externalId).",
                len(unanswered),
                STOP_GRACE_S,
            )
        else:
            self.log.warning("Lead upload stopped: every request in flight was answered and recorded.")

    def _account(
        self, number: int, items: list[_Item], settlement: _Settlement, summary: UploadSummary, writer: RecordSink
    ) -> None:
        """Count a settlement, note its accepted leads in the sync ledger and write its rejections (main thread)."""
        summary.uploaded += len(settlement.positions) - len(settlement.rejections)
        if self._ledger is not None:
            refused = {r.position for r in settlement.rejections}
            for position in settlement.positions:
                if position not in refused:
                    lead = items[position].lead
                    self._ledger.record(self.validator.identity(lead), _dumps(lead))
            if self._ledger.unsaved and time.monotonic() - self._ledger_saved_at >= LEDGER_SAVE_EVERY_S:
                self._ledger.save()
                self._ledger_saved_at = time.monotonic()
        for rejection in settlement.rejections:
            assert rejection.position is not None, "an API rejection has its position"
            item = items[rejection.position]
            summary.rejected += 1
            summary.refused_rows.append(item.row)
            summary.reasons[f"api: {rejection.field or 'record'} ({rejection.code})"] += 1
            writer.write_json_text(rejected_line(STAGE_API, item.row, [rejection], item.original, batch=number))

    # -- sending (worker threads) --------------------------------------------------------------------------------

    def _send_batch(
        self,
        number: int,
        items: list[_Item],
        todo: list[int],
        checkpoint: UploadCheckpoint | None,
        settled: SimpleQueue[tuple[int, list[_Item], _Settlement]],
    ) -> None:
        """Send the ``todo`` positions of batch ``number``; checkpoint each settlement, then hand it to the main
        thread through ``settled``."""

        def settle(settlement: _Settlement) -> None:
            with self._settle_lock:
                if self._abandoned:  # the run has stopped and given up on this request: record nothing
                    return
                if checkpoint is not None:
                    checkpoint.record(number, settlement.positions, settlement.rejections, batch_len=len(items))
                settled.put((number, items, settlement))

        self._send(number, items, todo, settle)

    def _send(
        self, number: int, items: list[_Item], positions: list[int], on_settled: Callable[[_Settlement], None]
    ) -> None:
        """Send ``positions`` of batch ``number``; isolate offenders of a 400, halve a 413 once, re-send the rest.

        :raises UnsettledBatchError: when careCycle does not settle a group (see the class); the groups settled
            before stay settled (and checkpointed).
        """
        hook = self.hook
        if hook is None:
            raise ValueError("LeadUploader needs a hook to send leads (only a dry run goes without one).")
        queue: list[tuple[list[int], bool]] = [(positions, False)]  # (group, halved after a 413 already)
        while queue and not self._stop.is_set():  # stopped: no new request (the rest stays unsettled)
            group, halved = queue.pop(0)
            unsettled = len(group) + sum(len(g) for g, _ in queue)
            try:
                answer = hook.upload_leads([items[p].lead for p in group])
            except CareCycleValidationError as error:
                offenders, rest, halved = self._split_refused(number, error, group, halved, unsettled)
                if offenders:
                    on_settled(_Settlement([r.position for r in offenders if r.position is not None], offenders))
                queue[:0] = [(part, halved) for part in rest if part]
                continue
            on_settled(_Settlement(group, self._answer_rejections(number, answer, items, group, unsettled)))

    def _split_refused(
        self, number: int, error: CareCycleValidationError, group: list[int], halved: bool, unsettled: int
    ) -> tuple[list[Rejection], list[list[int]], bool]:
        """What to do with a group careCycle refused with a 4xx: ``(offenders, groups to re-send, halved)``.

        * the API names the records at fault (``failedRecords[].index``, ``errors[].path`` into ``records``) of a
          400 or a ``VALIDATION_ERROR``: those are rejected, the rest re-sent;
        * a 400 ``VALIDATION_ERROR`` naming none: a single record is the offender, a larger group is bisected;
        * a 413 (payload too large): the group is halved once (logged); a 413 for a half fails;
        * anything else (405, 409, 415, 422, a 400 of another code, ...): the batch fails at once, unsettled.
        """
        named = self._named_offenders(error, group)
        validation = error.code == "VALIDATION_ERROR"
        if named and (error.status == 400 or validation):
            offenders = []
            for local, found in sorted(named.items()):
                field_name = found[0][0] if found else None
                text = "; ".join(f"{f}: {m}" if f else m for f, m in found) or "rejected by the API (VALIDATION_ERROR)"
                code = RejectionCode.API_VALIDATION_ERROR
                offenders.append(Rejection(field_name, f"API: {text}", code, position=group[local]))
            return offenders, [[p for i, p in enumerate(group) if i not in named]], halved
        if error.status == 400 and validation:
            if len(group) == 1:
                refused = Rejection(None, f"API: {error.message}", RejectionCode.API_VALIDATION_ERROR, group[0])
                return [refused], [], halved
            middle = len(group) // 2
            return [], [group[:middle], group[middle:]], halved
        if error.status == 413 and not halved and len(group) > 1:
            middle = len(group) // 2
            self.log.warning(
                "Batch %d: careCycle answered 413 (payload too large) for %d leads; sending them in two halves "
                "of %d and %d. Lower batch_size if this keeps happening.",
                number,
                len(group),
                middle,
                len(group) - middle,
            )
            return [], [group[:middle], group[middle:]], True
        if error.status == 413:
            what = f"careCycle answered 413 (payload too large) even for half the batch ({len(group)} leads)"
            advice = "Lower batch_size."
        else:
            code = f", code {error.code}" if isinstance(error.code, str) and error.code.isidentifier() else ""
            what = f"careCycle refused the upload of {len(group)} leads ({error.status}{code})"
            advice = "It named no lead at fault, so the batch was neither bisected nor retried."
        raise UnsettledBatchError(
            f"Batch {number}: {what}. {advice} {unsettled} leads of the batch stay unsettled and count as not "
            "uploaded; a rerun that resumes from the checkpoint sends them again.",
            batch=number,
            unsettled=unsettled,
            status=error.status,
        ) from error

    @staticmethod
    def _named_offenders(error: CareCycleValidationError, group: list[int]) -> dict[int, list[tuple[str | None, str]]]:
        """The group's records the API named (local index -> ``(field, message)`` pairs, maybe none)."""
        reasons: dict[int, list[tuple[str | None, str]]] = {}
        for issue in error.errors:
            local = _record_position(issue.get("path"), len(group)) if isinstance(issue, dict) else None
            if local is not None:
                path = issue.get("path") or []
                field_name = str(path[2]) if len(path) > 2 else None
                reasons.setdefault(local, []).append((field_name, str(issue.get("message") or "invalid")))
        for failed in error.failed_records:
            index = failed.get("index") if isinstance(failed, dict) else None
            if _is_count(index) and index < len(group):
                reasons.setdefault(index, [])
        return reasons

    @staticmethod
    def _answer_rejections(
        number: int, answer: Any, items: list[_Item], group: list[int], unsettled: int
    ) -> list[Rejection]:
        """The per-record rejections of a 200 answer, once it is checked to account for every record sent.

        :raises UnsettledBatchError: when the answer does not account for every record sent, or one of its
            ``errors[]`` cannot be tied to exactly one record sent (by ``externalId``, or the only record without).
        """
        problem = _unaccounted(answer, len(group))
        if problem:
            raise UnsettledBatchError(
                f"Batch {number}: careCycle's answer to an upload of {len(group)} leads does not account for "
                f"them ({problem}). None of them counts as uploaded; {unsettled} leads of the batch stay unsettled "
                "and a rerun that resumes from the checkpoint sends them again.",
                batch=number,
                unsettled=unsettled,
                status=200,
            )
        by_external_id = {
            str(items[p].lead["externalId"]): p for p in group if items[p].lead.get("externalId") is not None
        }
        without_id = [p for p in group if items[p].lead.get("externalId") is None]
        rejections: list[Rejection] = []
        untied: list[int] = []
        taken: set[int] = set()
        for index, error in enumerate(answer.get("errors") or []):
            external_id = error.get("externalId")
            if external_id is not None:
                position = by_external_id.get(str(external_id))
            else:
                position = without_id[0] if len(without_id) == 1 else None
            if position is None or position in taken:
                untied.append(index)
                continue
            taken.add(position)
            reason = f"API: {error.get('error') or 'record failed'}"
            rejections.append(Rejection(None, reason, RejectionCode.API_ERROR, position))
        if untied:
            raise UnsettledBatchError(
                f"Batch {number}: careCycle reported {len(untied)} per-record error(s) (errors[{_indices(untied)}]) "
                "that cannot be tied to a lead sent: an externalId not in the batch, the same lead twice, or no "
                "externalId while several leads have none. Which leads failed is unknown, so none of the "
                f"{len(group)} counts as uploaded; {unsettled} leads stay unsettled. Give every lead an "
                "externalId so careCycle's errors name it.",
                batch=number,
                unsettled=unsettled,
                status=200,
            )
        return rejections


def _is_count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _indices(indices: list[int], most: int = 5) -> str:
    shown = ", ".join(str(i) for i in indices[:most])
    return shown + (", ..." if len(indices) > most else "")


def _unaccounted(answer: Any, sent: int) -> str | None:
    """Why a 200 answer to an upload of ``sent`` records does not account for each of them, or ``None``.

    careCycle answers ``{"succeeded": int, "failed": int, "errors": [{"id", "externalId", "error"}]}``:
    ``succeeded + failed`` must be the records sent and ``errors`` must hold one object per failure. Only types and
    counts are described, never values.
    """
    if not isinstance(answer, dict):
        return "an empty answer" if answer is None else f"a JSON {type(answer).__name__}, not an object"
    counts: dict[str, int] = {}
    for name in ("succeeded", "failed"):
        value = answer.get(name)
        if not _is_count(value):
            return f"{name} is {'missing' if value is None else 'not a whole number >= 0'}"
        counts[name] = value
    if counts["succeeded"] + counts["failed"] != sent:
        return f"succeeded {counts['succeeded']} + failed {counts['failed']} is not the {sent} sent"
    errors = answer.get("errors")
    if errors is None and counts["failed"] == 0:
        return None
    if not isinstance(errors, list):
        return "errors is not a list"
    if len(errors) != counts["failed"]:
        return f"failed is {counts['failed']} but errors lists {len(errors)}"
    if not all(isinstance(error, dict) for error in errors):
        return "an errors entry is not an object"
    return None


class _NullWriter:
    """Stands in for the rejected-records writer when no ``rejected_path`` is given."""

    count = 0

    def __enter__(self) -> _NullWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def write_json_text(self, text: str) -> None:
        self.count += 1
