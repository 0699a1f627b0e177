"""The lead upload engine: validate, deduplicate, batch, upload at the rate limit, settle every lead, resume.

:class:`LeadUploader` is what ``CareCycleUploadLeadsOperator``, ``SqlToCareCycleLeadsOperator`` and
``CareCloudCrmToCareCycleLeadsOperator`` run; it can be used directly with any iterable of source records and a
``CareCycleHook``.

How a run goes:

1. **Prepare** (no request yet). Every source record is validated and normalised by a
   :class:`~airflow_provider_carecycle.leads.validation.LeadValidator`. A rejected record goes straight to the
   rejected file. A valid lead becomes one :class:`~airflow_provider_carecycle.sync.spool.LeadItem` (its row,
   identity, compact JSON text, original record and, with a sync ledger, its keyed hashes, each made once) and goes
   to the :class:`~airflow_provider_carecycle.sync.spool.LeadSpool`, keyed by its identity (``externalId``, else the
   phone number); a later record with the same identity is merged into it field by field (the last value wins) and
   counted as a duplicate. Memory stays bounded by a batch whatever the input size: the spool is on disk. With a sync
   ledger (``sync_state_path``, see :mod:`~airflow_provider_carecycle.sync.ledger`), the leads careCycle already
   holds exactly as they are now are marked *unchanged* and not sent.
2. **Fingerprint**: sha256 over the batch size and the normalised leads in first-seen order. Batches are cut from
   that order, so the same input always gives the same batches.
3. **Upload**: batches of ``batch_size`` go out through the hook (whose process-wide limiter keeps to the API's
   rate limit and which retries 429/5xx/dropped connections), with up to ``max_in_flight`` requests at once; the
   request body is the spooled texts. What careCycle answers is read by the rules of
   :mod:`~airflow_provider_carecycle.sync.answers`: a 200 answer must account for every lead sent (its per-record
   errors become rejections), a 400 has its offenders isolated and the rest sent again, a 413 halves the batch once;
   anything else leaves the batch *unsettled* (:class:`UnsettledBatchError`, nothing counted). With a checkpoint
   (bound to the input and to the destination), each settled request is recorded durably before moving on; a rerun
   on the same input to the same careCycle skips what was settled and sends the rest. Every lead careCycle accepted
   (in this run, or in an earlier one that the checkpoint resumes) is noted in the sync ledger, which is saved every
   ``ledger_save_every_s`` and when the run ends, even when it fails.

**Stopping** (:meth:`LeadUploader.stop`, what the operators' ``on_kill`` calls): no new request is sent; the requests in
flight get ``stop_grace_s`` seconds (default :data:`STOP_GRACE_S`) to be answered, and their answers are recorded like
any other. A request still unanswered then is abandoned: whatever its answer, it is not recorded (nor counted, nor put
in the ledger), so the checkpoint holds exactly the settlements the run recorded and a rerun sends the rest. The run
then raises :class:`~airflow_provider_carecycle.exceptions.TaskKilledError`; the rejected file's temporary file is
removed.

Record contents never reach logs, exceptions or the summary: only counts, batch numbers, row numbers and
PHI-free reasons. The rejected file (which holds the original records) is the one place they go.

Why one module of this size: preparing, batching, sending and settling share one invariant (every lead uploaded,
rejected, merged or unchanged exactly once, nothing counted that careCycle did not acknowledge), kept readable in
one place; what it works with (the spool, the answer rules, the summary, the checkpoint, the ledger) are modules of
their own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import timedelta
from queue import SimpleQueue
from typing import Any

from airflow_provider_carecycle.exceptions import CareCycleAPIError, CareCycleValidationError, TaskKilledError
from airflow_provider_carecycle.leads.rejection import (
    STAGE_API,
    STAGE_VALIDATION,
    STAGE_WARNING,
    Rejection,
    rejected_line,
)
from airflow_provider_carecycle.leads.validation import LeadValidator
from airflow_provider_carecycle.progress import Progress, TaskLog
from airflow_provider_carecycle.storage import RecordWriter
from airflow_provider_carecycle.sync.answers import Settlement, Unsettled, read_accepted, read_refused
from airflow_provider_carecycle.sync.checkpoint import UploadCheckpoint
from airflow_provider_carecycle.sync.ledger import LeadHasher, SyncLedger, check_resend_after
from airflow_provider_carecycle.sync.protocols import DocumentStore, LeadUploadHook, RecordSink
from airflow_provider_carecycle.sync.spool import LeadItem, LeadSpool, record_text
from airflow_provider_carecycle.sync.stores import SyncLedgerError
from airflow_provider_carecycle.sync.summary import UploadSummary
from airflow_provider_carecycle.vocabulary import MAX_RECORDS_PER_UPLOAD

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = MAX_RECORDS_PER_UPLOAD
DEFAULT_MAX_IN_FLIGHT = 4
MAX_IN_FLIGHT_LIMIT = 32
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


class LeadUploader:
    """Upload source records to careCycle as leads (see the module docstring for the whole flow).

    :param hook: a :class:`~airflow_provider_carecycle.hooks.carecycle.CareCycleHook` (not used when ``dry_run``).
    :param validator: maps, validates and normalises source records.
    :param batch_size: records per request, 1-200.
    :param max_in_flight: requests sent concurrently (the hook's limiter still caps the rate).
    :param rejected_path: JSON Lines file for the rejected records (``None``: count them only).
    :param checkpoint_path: where to keep the acknowledged batches, to resume after a crash: a URI or path, or any
        :class:`~airflow_provider_carecycle.sync.protocols.DocumentStore` (``None``: no resume).
    :param dry_run: validate, normalise and write the rejected file, but send nothing (the sync ledger is not read).
    :param sync_state_path: the sync ledger's folder (``None``: send every lead); needs a hook with a
        ``destination_id``.
    :param full_sync: with a ledger, send every lead and replace the ledger with what careCycle accepts.
    :param resend_after: with a ledger, send again a lead last accepted longer ago than this (``timedelta`` or
        seconds; ``None``: never for its age).
    :param logger: where progress and summaries go (an operator's ``self.log``).
    :param progress_every_s: least seconds between two progress lines.
    :param ledger_save_every_s: least seconds between two saves of the sync ledger during the run (it is saved at the
        end too).
    :param stop_grace_s: seconds a stopped run gives its requests in flight before abandoning them (:meth:`stop`).
    :param suppress_new_do_not_call: with a sync ledger, do not send a lead that carries ``doNotCall`` and whose
        identity the ledger has never held (careCycle never had it): it is counted as ``suppressed``. A lead the
        ledger knows is sent with its flag (careCycle has no delete: only the flag stops its calls). Without a ledger,
        with ``full_sync`` (which reads none of it) or with ledger files it could not read (an earlier version,
        malformed), nothing tells the two apart, so every lead is sent, flag and all.
    """

    def __init__(
        self,
        hook: LeadUploadHook | None,
        validator: LeadValidator,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        rejected_path: str | None = None,
        checkpoint_path: str | DocumentStore | None = None,
        dry_run: bool = False,
        sync_state_path: Any = None,
        full_sync: bool = False,
        resend_after: timedelta | float | None = None,
        suppress_new_do_not_call: bool = False,
        logger: TaskLog | None = None,
        progress_every_s: float = 30.0,
        ledger_save_every_s: float = LEDGER_SAVE_EVERY_S,
        stop_grace_s: float = STOP_GRACE_S,
    ) -> None:
        check_upload_options(batch_size, max_in_flight)
        self.sync_state_path = sync_state_path
        self.full_sync = full_sync
        self.resend_after = check_resend_after(resend_after)
        self.suppress_new_do_not_call = bool(suppress_new_do_not_call)
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
        self.ledger_save_every_s = ledger_save_every_s
        self.stop_grace_s = stop_grace_s
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
        spool = LeadSpool(self._hasher())
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
                    # full_sync reads no entry, and files of an earlier ledger version or malformed ones are not
                    # read: then the ledger cannot tell a lead careCycle holds from one it never held, and every
                    # flagged lead is sent
                    unread = self.full_sync or self._ledger.outdated or self._ledger.ignored
                    if self.suppress_new_do_not_call and not unread:
                        summary.suppressed = spool.mark_suppressed(self._ledger)
                        self.log.info(
                            "%d lead(s) with doNotCall that careCycle never held are not sent (suppressed).",
                            summary.suppressed,
                        )
                    if spool.to_send:  # durably, before the first request: see SyncLedger.revoke
                        self._ledger.revoke(spool.hashes_to_send())
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

    def _destination(self) -> str | None:
        destination = getattr(self.hook, "destination_id", None)
        return destination if isinstance(destination, str) and destination else None

    def _hasher(self) -> LeadHasher | None:
        """The sync ledger's hashes of this destination, for the spool to hash each lead once (no ledger: ``None``)."""
        destination = self._destination()
        if self.sync_state_path is None or self.dry_run or destination is None:
            return None
        return LeadHasher(destination)

    def _open_ledger(self) -> SyncLedger:
        destination = self._destination()
        if destination is None:
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

    def _prepare(self, records: Iterable[Any], spool: LeadSpool, summary: UploadSummary, writer: RecordSink) -> None:
        for row, record in enumerate(records, start=1):
            self._raise_if_stopped("validating the records")
            summary.total += 1
            result = self.validator.validate(record)
            if not result.ok:
                self._reject_validation(row, record, result.rejections, summary, writer)
                continue
            summary.valid += 1
            if result.dropped:
                self._warn_dropped(row, record, result.dropped, summary, writer)
            lead = result.lead or {}
            item = LeadItem.of(row, self.validator.identity(lead), lead, record_text(record), spool.hasher)
            if spool.add(item):
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
        writer.write_json_text(rejected_line(STAGE_VALIDATION, row, rejections, record_text(record)))

    @staticmethod
    def _warn_dropped(
        row: int, record: Any, dropped: list[Rejection], summary: UploadSummary, writer: RecordSink
    ) -> None:
        """A lead that goes without its invalid optional fields: counted per reason, a warning line in the file."""
        summary.fields_dropped.update(rejection.reason for rejection in dropped)
        writer.write_json_text(rejected_line(STAGE_WARNING, row, dropped, record_text(record)))

    # -- stage 2: upload -----------------------------------------------------------------------------------------

    def _upload(self, spool: LeadSpool, summary: UploadSummary, writer: RecordSink) -> None:
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
        settled: SimpleQueue[tuple[int, list[LeadItem], Settlement]] = SimpleQueue()
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
        items: list[LeadItem],
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
            self._account(number, items, Settlement(sorted(settled), earlier), summary, writer)
            progress.total = (progress.total or 0) - len(settled)
        if checkpoint.is_done(number):
            summary.skipped_batches += 1
        return [p for p in range(len(items)) if p not in settled]

    def _collect(
        self,
        pending: dict[Future[None], int],
        settled: SimpleQueue[tuple[int, list[LeadItem], Settlement]],
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
        settled: SimpleQueue[tuple[int, list[LeadItem], Settlement]],
        summary: UploadSummary,
        writer: Any,
    ) -> None:
        """After a stop: send nothing more, give the requests in flight ``stop_grace_s`` seconds, abandon the
        rest (their answers are then not recorded), and account for every settlement recorded."""
        pool.shutdown(wait=False, cancel_futures=True)
        _, unanswered = wait(pending, timeout=self.stop_grace_s)
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
                self.stop_grace_s,
            )
        else:
            self.log.warning("Lead upload stopped: every request in flight was answered and recorded.")

    def _account(
        self, number: int, items: list[LeadItem], settlement: Settlement, summary: UploadSummary, writer: RecordSink
    ) -> None:
        """Count a settlement, note its accepted leads in the sync ledger and write its rejections (main thread)."""
        summary.uploaded += len(settlement.positions) - len(settlement.rejections)
        if self._ledger is not None:
            refused = {r.position for r in settlement.rejections}
            for position in settlement.positions:
                hashes = items[position].hashes
                if position not in refused and hashes is not None:
                    self._ledger.record(hashes)
            if self._ledger.unsaved and time.monotonic() - self._ledger_saved_at >= self.ledger_save_every_s:
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
        items: list[LeadItem],
        todo: list[int],
        checkpoint: UploadCheckpoint | None,
        settled: SimpleQueue[tuple[int, list[LeadItem], Settlement]],
    ) -> None:
        """Send the ``todo`` positions of batch ``number``; checkpoint each settlement, then hand it to the main
        thread through ``settled``."""

        def settle(settlement: Settlement) -> None:
            with self._settle_lock:
                if self._abandoned:  # the run has stopped and given up on this request: record nothing
                    return
                if checkpoint is not None:
                    checkpoint.record(number, settlement.positions, settlement.rejections, batch_len=len(items))
                settled.put((number, items, settlement))

        self._send(number, items, todo, settle)

    def _send(
        self, number: int, items: list[LeadItem], positions: list[int], on_settled: Callable[[Settlement], None]
    ) -> None:
        """Send ``positions`` of batch ``number``; what careCycle settles goes to ``on_settled``, what it asks to be
        sent again (the rest of a 400, the halves of a 413) is sent again (see :mod:`~airflow_provider_carecycle.sync.
        answers`).

        :raises UnsettledBatchError: when careCycle does not settle a group (see the class); the groups settled
            before stay settled (and checkpointed).
        """
        hook = self.hook
        if hook is None:
            raise ValueError("LeadUploader needs a hook to send leads (only a dry run goes without one).")
        external_ids = [item.external_id for item in items]
        queue: list[tuple[list[int], bool]] = [(positions, False)]  # (group, halved after a 413 already)
        while queue and not self._stop.is_set():  # stopped: no new request (the rest stays unsettled)
            group, halved = queue.pop(0)
            unsettled = len(group) + sum(len(g) for g, _ in queue)
            try:
                answer = hook.upload_lead_texts([items[p].text for p in group])
            except CareCycleValidationError as error:
                step = read_refused(error, group, halved, batch=number, unsettled=unsettled)
                if isinstance(step, Unsettled):
                    raise UnsettledBatchError(
                        step.message, batch=number, unsettled=unsettled, status=step.status
                    ) from error
                if step.payload_too_large:
                    self.log.warning(
                        "Batch %d: careCycle answered 413 (payload too large) for %d leads; sending them in two "
                        "halves of %d and %d. Lower batch_size if this keeps happening.",
                        number,
                        len(group),
                        *(len(part) for part in step.groups),
                    )
                if step.offenders:
                    on_settled(
                        Settlement([r.position for r in step.offenders if r.position is not None], step.offenders)
                    )
                queue[:0] = [(part, halved or step.payload_too_large) for part in step.groups if part]
                continue
            rejections = read_accepted(answer, external_ids, group, batch=number, unsettled=unsettled)
            if isinstance(rejections, Unsettled):
                raise UnsettledBatchError(rejections.message, batch=number, unsettled=unsettled, status=200)
            on_settled(Settlement(group, rejections))


class _NullWriter:
    """Stands in for the rejected-records writer when no ``rejected_path`` is given."""

    count = 0

    def __enter__(self) -> _NullWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def write_json_text(self, text: str) -> None:
        self.count += 1
