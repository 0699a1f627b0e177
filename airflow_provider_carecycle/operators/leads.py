"""Lead upload: validate, normalise, deduplicate and upload leads to careCycle, accounting for every record.

:class:`CareCycleUploadLeadsOperator` reads a list of records (or an XComArg) or a streamed file on object storage;
``SqlToCareCycleLeadsOperator`` (in :mod:`airflow_provider_carecycle.transfers.sql`) reads a SQL query. Both run the
same engine (:class:`~airflow_provider_carecycle.sync.engine.LeadUploader`) with the same options, defined once
here in :class:`CareCycleLeadUploadBaseOperator`.

Why one module of this size: the upload family's options (validation policies, batching, checkpoint, ledger, rejected
file), their checks once rendered and their wiring into the engine are one contract that every lead upload shares.

.. seealso:: ``docs/operators/upload-leads.md``
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence, Sized
from datetime import timedelta
from typing import Any

from airflow_provider_carecycle import lineage
from airflow_provider_carecycle._compat import AirflowFailException, Context
from airflow_provider_carecycle.leads.phone import (
    DEFAULT_ALLOWED_NUMBER_TYPES,
    DEFAULT_ALLOWED_REGIONS,
    PhoneRule,
    check_allowed_number_types,
    check_allowed_regions,
)
from airflow_provider_carecycle.leads.validation import (
    INVALID_OPTIONAL_DROP,
    LeadValidator,
    check_field_names,
    check_invalid_optional,
)
from airflow_provider_carecycle.operators.base import CareCycleBaseOperator, rendered_arguments, rendered_path
from airflow_provider_carecycle.outcome import Outcome, record_outcome
from airflow_provider_carecycle.storage import FORMATS, iter_records
from airflow_provider_carecycle.sync.engine import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_IN_FLIGHT,
    LeadUploader,
    check_upload_options,
)
from airflow_provider_carecycle.sync.ledger import check_resend_after
from airflow_provider_carecycle.sync.state_store import TaskStateCheckpointStore
from airflow_provider_carecycle.sync.summary import UploadSummary


def check_lead_field_names(argument: str, value: Any) -> None:
    """A rendered ``field_mapping``/``defaults``: ``None``, or a mapping keyed by careCycle lead fields.

    :param argument: the argument, named in the message.
    :param value: its rendered value.
    :raises ValueError: for a value that is not a mapping, or keys that are not lead fields.
    """
    if value is None:
        return
    if not isinstance(value, Mapping):
        raise ValueError(f"{argument} must be a mapping of careCycle lead field -> value, got {type(value).__name__}.")
    check_field_names(value, argument)


def rejection_failure_message(summary: UploadSummary, max_rejected_ratio: float) -> str | None:
    """The failure message when too many records were rejected, else ``None`` (PHI-free: counts and reasons).

    :param summary: the finished upload's summary.
    :param max_rejected_ratio: the largest accepted ``rejected / total``.
    """
    if not summary.total or summary.rejected / summary.total <= max_rejected_ratio:
        return None
    reasons = "; ".join(f"{reason} (x{count})" for reason, count in summary.top_reasons())
    where = (
        f"See {summary.rejected_path} for every rejected record and its reason."
        if summary.rejected_path
        else "Set rejected_path to keep the rejected records and their reasons."
    )
    return (
        f"{summary.rejected} of {summary.total} lead records were rejected "
        f"({summary.rejected / summary.total:.2%}), above max_rejected_ratio={max_rejected_ratio:.2%}. "
        f"Every valid lead was uploaded ({summary.uploaded}). Top reasons: {reasons}. {where}"
    )


def _sync_state_path(value: Any) -> Any:
    """The rendered ``sync_state_path``: ``None`` (no ledger) or a folder URI or path; blank text is an error."""
    value = rendered_path("sync_state_path", value, optional=True)
    if value is not None and not isinstance(value, (str, os.PathLike)):
        raise ValueError(f"sync_state_path must be a folder URI or path, got {type(value).__name__}.")
    return value


def _flag(argument: str, value: Any) -> bool:
    """A rendered boolean argument: ``True``/``False``, or the text a template renders them to."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(f"{argument} must be True or False (or render to 'true'/'false'), got {value!r}.")


class CareCycleLeadUploadBaseOperator(CareCycleBaseOperator):
    """Options and run logic shared by the lead upload operators; subclasses say where records come from.

    :param field_mapping: careCycle field -> source key or dotted path into nested dicts (``"address.zip"``).
    :param defaults: careCycle field -> value used when a record lacks the field (e.g. ``sourceId``, ``timezone``).
    :param drop_unknown_fields: drop source keys that are neither mapped nor careCycle fields instead of
        rejecting the record.
    :param allowed_regions: the regions whose phone numbers are dialled (region codes sharing +1, a list or
        comma-separated text; templated). Default the US and its territories: ``US, PR, VI, GU, AS, MP``; add ``CA``
        for Canada. Other numbers are rejected with ``region_not_allowed``.
    :param allowed_number_types: the phone number types dialled (templated). Default ``fixed_line``, ``mobile``,
        ``fixed_line_or_mobile``; add ``toll_free``, ``premium_rate``, ``shared_cost``, ``voip``,
        ``personal_number``, ``pager``, ``uan`` or ``voicemail`` to dial those too. Other numbers are rejected
        with ``number_type_not_allowed``.
    :param invalid_optional: what an invalid ``email``, ``dateOfBirth``, ``gender`` or ``maritalStatus`` does
        (templated): ``"drop"`` (default) sends the lead without that field, counts it in the summary's
        ``fields_dropped`` and writes a ``warning`` line to ``rejected_path``, so a bad e-mail does not cost the
        call; ``"reject"`` rejects the lead.
    :param rejected_path: JSON Lines file (object storage URI) receiving every rejected record with its stage
        (``validation``/``api``), field, reason and source row number. Written even when empty.
    :param max_rejected_ratio: the task fails (after uploading every valid lead and writing the rejected file)
        when ``rejected / total`` exceeds this, 0.0-1.0. Default 0.0: any rejection fails the task.
    :param batch_size: records per request, 1-200.
    :param max_in_flight: concurrent requests, 1-32; the hook's limiter still caps the request rate.
    :param checkpoint_path: object storage URI of a small JSON checkpoint; a retried task with the same input
        skips the batches the API already acknowledged. Template it per run (``.../{{ ds }}.json``). Without it, on
        Airflow 3.3+ the checkpoint is kept in the task state store (deleted when the upload finishes), so a retried
        try resumes all the same; on earlier Airflow a retry sends every lead again (see ``docs/operators/sync.md``).
    :param dry_run: validate, normalise and write the rejected file, but send nothing.
    :param progress_every_s: least seconds between two progress lines.
    :param sync_state_path: object storage folder (``s3://``, ``gs://``, ``file://``) of the sync ledger: send only
        the leads that are new or changed since careCycle last accepted them; the rest count as ``unchanged``.
        Keep it per careCycle destination and feed, not per run (see ``docs/operators/sync.md``).
    :param full_sync: with ``sync_state_path``, send every lead and replace the ledger with what careCycle accepts
        (templated: ``True``/``False`` or ``"true"``/``"false"``).
    :param resend_after: with ``sync_state_path``, send again a lead careCycle accepted longer ago than this
        (a ``timedelta`` or seconds), for a periodic refresh.

    Each summary key is also pushed as its own XCom (``multiple_outputs`` defaults to ``True``), so a downstream
    task can take ``upload.output["rejected_path"]``.

    When the task is killed (``on_kill``: marked failed or cleared in the UI, a SIGTERM), no new batch is sent, the
    requests in flight are settled (or abandoned after a few seconds, then not recorded), the checkpoint and the
    sync ledger keep exactly what careCycle acknowledged, the rejected file's temporary file is removed, and the task
    fails with :class:`~airflow_provider_carecycle.exceptions.TaskKilledError`.
    """

    template_fields: tuple[str, ...] = (
        "field_mapping",
        "defaults",
        "rejected_path",
        "checkpoint_path",
        "sync_state_path",
        "full_sync",
        "allowed_regions",
        "allowed_number_types",
        "invalid_optional",
    )
    template_fields_renderers = {"field_mapping": "json", "defaults": "json"}
    #: a source whose consent rules say who may not be called (the CareCloud CRM transfer) turns this on: a
    #: ``doNotCall`` lead careCycle never held is then not sent (``LeadUploader(suppress_new_do_not_call=)``)
    suppress_new_do_not_call: bool = False
    #: the finished upload's summary (``None`` before ``execute``): its ``as_dict()`` is the XCom value
    outcome: UploadSummary | None = None

    def __init__(
        self,
        *,
        field_mapping: Mapping[str, str] | None = None,
        defaults: Mapping[str, Any] | None = None,
        drop_unknown_fields: bool = False,
        rejected_path: str | None = None,
        max_rejected_ratio: float = 0.0,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        checkpoint_path: str | None = None,
        dry_run: bool = False,
        progress_every_s: float = 30.0,
        sync_state_path: str | None = None,
        full_sync: bool | str = False,
        resend_after: timedelta | float | None = None,
        allowed_regions: str | Sequence[str] = DEFAULT_ALLOWED_REGIONS,
        allowed_number_types: str | Sequence[str] = DEFAULT_ALLOWED_NUMBER_TYPES,
        invalid_optional: str = INVALID_OPTIONAL_DROP,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("multiple_outputs", True)
        super().__init__(**kwargs)
        # only the non-templated options are checked here; the templated ones in execute, once rendered
        check_upload_options(batch_size, max_in_flight)
        if isinstance(max_rejected_ratio, bool) or not isinstance(max_rejected_ratio, (int, float)):
            raise ValueError(f"max_rejected_ratio must be a number from 0.0 to 1.0, got {max_rejected_ratio!r}.")
        if not 0.0 <= max_rejected_ratio <= 1.0:
            raise ValueError(f"max_rejected_ratio must be from 0.0 to 1.0, got {max_rejected_ratio!r}.")
        if progress_every_s <= 0:
            raise ValueError(f"progress_every_s must be positive, got {progress_every_s!r}.")
        self.field_mapping = field_mapping
        self.defaults = defaults
        self.drop_unknown_fields = drop_unknown_fields
        self.rejected_path = rejected_path
        self.max_rejected_ratio = float(max_rejected_ratio)
        self.batch_size = batch_size
        self.max_in_flight = max_in_flight
        self.checkpoint_path = checkpoint_path
        # not ``self.dry_run``: that name is BaseOperator's dry_run() method (render the templates, run nothing)
        self.is_dry_run = dry_run
        self.progress_every_s = progress_every_s
        self.sync_state_path = sync_state_path
        self.full_sync = full_sync
        self.resend_after = resend_after
        check_resend_after(resend_after)
        self.allowed_regions = allowed_regions
        self.allowed_number_types = allowed_number_types
        self.invalid_optional = invalid_optional
        self._phone_rule: PhoneRule | None = None

    def iter_source(self, context: Context) -> Iterable[Any]:
        """The source records, as a stream. Subclasses implement it."""
        raise NotImplementedError

    def lead_validator(self) -> LeadValidator:
        """The validator the source records go through: ``field_mapping``, ``defaults``, ``drop_unknown_fields`` and
        the :meth:`validation_options`."""
        return LeadValidator(self.field_mapping, self.defaults, self.drop_unknown_fields, **self.validation_options())

    def validation_options(self) -> dict[str, Any]:
        """The validator's policies from the rendered arguments (``allowed_regions``, ``allowed_number_types``,
        ``invalid_optional``), as :class:`LeadValidator` keyword arguments; every lead validator of the upload family
        is built with them."""
        return {
            "phone_rule": self._phone_rule or self._checked_phone_rule(),
            "invalid_optional": check_invalid_optional(self.invalid_optional),
        }

    def _checked_phone_rule(self) -> PhoneRule:
        """:raises ValueError: naming ``allowed_regions`` or ``allowed_number_types``."""
        return PhoneRule(
            check_allowed_regions(self.allowed_regions), check_allowed_number_types(self.allowed_number_types)
        )

    def check_rendered_arguments(self) -> None:
        """Check the rendered templated arguments before anything is read or sent; subclasses add theirs.

        ``rejected_path``/``checkpoint_path``: ``None`` turns the feature off; text that rendered empty is an
        error (a template that lost its value must not silently switch off the rejected file or the checkpoint).

        :raises ValueError: naming the argument.
        """
        check_lead_field_names("field_mapping", self.field_mapping)
        check_lead_field_names("defaults", self.defaults)
        self.rejected_path = rendered_path("rejected_path", self.rejected_path, optional=True)
        self.checkpoint_path = rendered_path("checkpoint_path", self.checkpoint_path, optional=True)
        self.sync_state_path = _sync_state_path(self.sync_state_path)
        self.full_sync = _flag("full_sync", self.full_sync)
        self._phone_rule = self._checked_phone_rule()
        self.invalid_optional = check_invalid_optional(self.invalid_optional)

    def execute(self, context: Context) -> dict[str, Any]:
        with rendered_arguments():
            self.check_rendered_arguments()
        return self.upload(context)

    def upload(self, context: Context) -> dict[str, Any]:
        """Validate, upload and account for every source record; the shared body of ``execute``.

        Subclasses call this (not ``super().execute()``: on Airflow 2 an ``execute`` called from another operator
        method logs "execute cannot be called outside TaskInstance!").

        :param context: the task's context.
        :return: the upload summary.
        """
        validator = self.lead_validator()
        state_checkpoint = None
        if self.checkpoint_path is None and not self.is_dry_run:  # Airflow 3.3+: resume without configuration
            state_checkpoint = TaskStateCheckpointStore.from_context(
                context, sync_state_path=self.sync_state_path, destination=self.hook.destination_id
            )
            if state_checkpoint is not None:
                self.log.info("No checkpoint_path: the resume state is kept in %s.", state_checkpoint)
        uploader = LeadUploader(
            None if self.is_dry_run else self.hook,
            validator,
            batch_size=self.batch_size,
            max_in_flight=self.max_in_flight,
            rejected_path=self.rejected_path,
            checkpoint_path=self.checkpoint_path if state_checkpoint is None else state_checkpoint,
            dry_run=self.is_dry_run,
            sync_state_path=self.sync_state_path,
            full_sync=bool(self.full_sync),
            resend_after=self.resend_after,
            suppress_new_do_not_call=self.suppress_new_do_not_call,
            logger=self.log,
            progress_every_s=self.progress_every_s,
        )
        self._uploader: LeadUploader | None = uploader
        if self.__dict__.get("_kill_requested"):  # killed before the engine existed
            uploader.stop()
        try:
            summary = uploader.run(self.iter_source(context))
        finally:
            self._uploader = None
        if state_checkpoint is not None:  # every lead settled: nothing left to resume
            state_checkpoint.delete()
        self.outcome = summary
        self._log_summary(summary)
        record_outcome(self, context, summary)  # metrics and the asset event
        message = rejection_failure_message(summary, self.max_rejected_ratio)
        if message:
            raise AirflowFailException(message)
        return summary.as_dict()

    def on_kill(self) -> None:
        """Stop the running upload (see the class docstring). Runs in Airflow's SIGTERM handler: it only sets a
        flag (no lock the task's main thread may hold, no I/O); the upload's own thread settles and cleans up."""
        self._kill_requested = True
        uploader = self.__dict__.get("_uploader")
        if uploader is not None:
            uploader.stop()

    def openlineage_datasets(self, outcome: Outcome | None) -> lineage.Datasets:
        """careCycle's ``leads`` (not in a dry run) and the rejected file, with the leads uploaded and rejected; the
        source's datasets are each subclass's (none for ``records``)."""
        counts = {} if outcome is None else outcome.as_dict()
        outputs = []
        if not self.is_dry_run:
            namespace = lineage.carecycle_namespace(self.hook.base_url)
            outputs.append(lineage.output_dataset(namespace, lineage.LEADS, counts.get("uploaded")))
        if self.rejected_path:
            outputs.append(lineage.file_output(self.rejected_path, counts.get("rejected")))
        return [], outputs

    def _log_summary(self, summary: UploadSummary) -> None:
        self.log.info(
            "Lead upload%s: %d records, %d uploaded, %d rejected, %d duplicates, %d unchanged, %d suppressed, "
            "%d batches (%d skipped) in %.1f s.",
            " (dry run)" if summary.dry_run else "",
            summary.total,
            summary.uploaded,
            summary.rejected,
            summary.duplicates,
            summary.unchanged,
            summary.suppressed,
            summary.batches,
            summary.skipped_batches,
            summary.elapsed_s,
        )
        for reason, count in summary.top_reasons():
            self.log.info("Rejected x%d: %s", count, reason)
        for reason, count in summary.fields_dropped.most_common():
            self.log.info("Sent without an invalid optional field x%d: %s", count, reason)
        if summary.rejected and summary.rejected_path:
            self.log.info("Rejected records with their reasons: %s", summary.rejected_path)
        hook = self.__dict__.get("hook")
        if hook is not None:
            stats = hook.stats
            self.log.info(
                "API: %d requests, %d retries, %d rate limited, %.1f s waited.",
                stats.requests,
                stats.retries,
                stats.rate_limited,
                stats.waited_s,
            )


class CareCycleUploadLeadsOperator(CareCycleLeadUploadBaseOperator):
    """Upload leads to careCycle from records or a file, so every record is either uploaded once or rejected.

    Records are validated and normalised before any request (phone to E.164 ``+1XXXXXXXXXX``, dates of birth to
    ``MM-DD-YYYY``, enums to their canonical spelling, ...), merged by ``externalId`` (else phone; the last
    record wins), uploaded in batches at the API's rate limit, and every rejected record is written to
    ``rejected_path`` with its reason. Returns a small summary dict (``total``, ``valid``, ``uploaded``,
    ``rejected``, ``duplicates``, ``batches``, ``skipped_batches``, ``rejected_path``, ``elapsed_s``,
    ``dry_run``, ``top_reasons``: the five most frequent reasons with counts, ``fields_dropped``: invalid optional
    fields left out of leads that were sent, per reason); record contents never reach XCom or the logs.

    .. seealso:: ``docs/operators/upload-leads.md``

    :param records: a list of source records (dicts), or an XComArg resolving to one.
    :param source_path: an ``ObjectStoragePath``-style URI (``s3://``, ``gs://``, ``file://``, ...) of a
        ``.jsonl``, ``.json`` or ``.csv`` file, optionally ``.gz``; read as a stream.
    :param source_format: ``jsonl``, ``json`` or ``csv`` when the name does not tell.
    :param kwargs: the shared options of :class:`CareCycleLeadUploadBaseOperator` (``field_mapping``,
        ``defaults``, ``rejected_path``, ``max_rejected_ratio``, ``batch_size``, ``max_in_flight``,
        ``checkpoint_path``, ``dry_run``, ...) and of :class:`CareCycleBaseOperator`.
    """

    template_fields: tuple[str, ...] = (
        "records",
        "source_path",
        "source_format",
        *CareCycleLeadUploadBaseOperator.template_fields,
    )

    def __init__(
        self,
        *,
        records: list[Mapping[str, Any]] | Any = None,
        source_path: str | None = None,
        source_format: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # whether each source was given is known now; their (templated) values are checked in execute
        if (records is None) == (source_path is None):
            raise ValueError("Pass exactly one of records (a list of dicts or an XComArg) and source_path.")
        self.records = records
        self.source_path = source_path
        self.source_format = source_format
        self._resolved_records: Iterable[Any] | None = None

    def render_template(
        self,
        content: Any,
        context: Context,
        jinja_env: Any = None,
        seen_oids: set[int] | None = None,
    ) -> Any:
        """Render as Airflow does, except ``records``: kept out of Jinja and of Airflow's rendered-fields store (PHI).

        Airflow renders each templated argument through this public method, the task's own rendering and a mapped
        task's (``.expand()``) alike. A literal list of records is not run through Jinja (its strings are data, not
        templates); an XComArg is resolved. The records are kept aside for the upload, and ``records`` then shows
        only a count in the UI.
        """
        if content is None or content is not self.records:
            return super().render_template(content, context, jinja_env, seen_oids)
        records = self._resolved_records if self._resolved_records is not None else content
        if not isinstance(records, (list, tuple)):
            records = super().render_template(records, context, jinja_env, seen_oids)
        if isinstance(records, (str, bytes, Mapping)) or not isinstance(records, Iterable):
            raise ValueError(f"records must resolve to a list of dicts, got {type(records).__name__}.")
        self._resolved_records = records
        count = len(records) if isinstance(records, Sized) else "?"
        return f"<{count} records, not shown: they may hold patient data>"

    def check_rendered_arguments(self) -> None:
        """Also check the source: ``source_path`` must not render empty, ``source_format`` must be known.

        :raises ValueError: naming the argument.
        """
        super().check_rendered_arguments()
        if self.source_path is not None:
            self.source_path = rendered_path("source_path", self.source_path)
        if self.source_format is not None and self.source_format not in FORMATS:
            raise ValueError(f"source_format must be one of {', '.join(FORMATS)}, got {self.source_format!r}.")
        if self.records is not None and self._resolved_records is None and not isinstance(self.records, (list, tuple)):
            raise ValueError(
                f"records must be a list of dicts (or an XComArg run by Airflow), got {type(self.records).__name__}."
            )

    def openlineage_datasets(self, outcome: Outcome | None) -> lineage.Datasets:
        """The upload's datasets, and ``source_path`` read, with the records read."""
        _, outputs = super().openlineage_datasets(outcome)
        if not self.source_path:
            return [], outputs
        return [lineage.file_input(self.source_path, None if outcome is None else outcome.as_dict()["total"])], outputs

    def iter_source(self, context: Context) -> Iterator[Any]:
        if self.source_path is not None:
            yield from iter_records(self.source_path, format=self.source_format)
            return
        records = self._resolved_records if self._resolved_records is not None else self.records
        yield from records or ()
