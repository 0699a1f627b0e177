"""CareCloud CRM -> careCycle: upload the CRM customers changed in a DAG run's data interval as careCycle leads.

.. seealso:: ``docs/operators/carecloud-to-carecycle.md``
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from airflow_provider_carecycle import lineage
from airflow_provider_carecycle._compat import Context
from airflow_provider_carecycle.carecloud.consent import ConsentRules, check_consent_mapping, check_policy
from airflow_provider_carecycle.carecloud.hook import DEFAULT_PAGE_SIZE, CareCloudCrmHook, ChangedRead
from airflow_provider_carecycle.carecloud.local_time import as_instant, changed_instant
from airflow_provider_carecycle.carecloud.mapping import CARECLOUD_FIELD_MAPPING, CrmMapping
from airflow_provider_carecycle.leads.validation import LeadValidator
from airflow_provider_carecycle.operators.base import (
    RENAMED_ARGUMENTS,
    context_interval,
    refuse_renamed_arguments,
    rendered_arguments,
)
from airflow_provider_carecycle.operators.leads import CareCycleLeadUploadBaseOperator
from airflow_provider_carecycle.outcome import Outcome
from airflow_provider_carecycle.sync.state_store import crm_watermark, declares_leads_asset
from airflow_provider_carecycle.sync.watermark import MAX_RETRY_IDS, SyncWatermark, WatermarkState
from airflow_provider_carecycle.values import page_size, parse_iso_datetime


def as_datetime(name: str, value: Any) -> datetime:
    """A rendered interval bound (a ``datetime`` or an ISO 8601 string) as a ``datetime``.

    :param name: the argument's name, for the error message.
    :param value: the rendered value.
    """
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value.strip():
        try:
            return parse_iso_datetime(value)
        except ValueError:
            pass
    raise ValueError(f"{name} must be a datetime or an ISO 8601 string, got {value!r}.")


def watermark_key(conn_id: str, crm_base_url: str, destination: str, extra_params: Mapping[str, Any] | None) -> str:
    """What names one incremental feed, whose watermark it is: the CRM connection (its id and base URL), the query
    (every ``extra_params`` filter, as the request sends it: values as text, list order ignored) and the careCycle
    destination (a hash of its base URL and API key). Two feeds that differ in any of these keep two watermarks.

    :param conn_id: the CareCloud CRM connection id.
    :param crm_base_url: the CRM API's base URL.
    :param destination: the careCycle hook's ``destination_id``.
    :param extra_params: the rendered ``extra_params``.
    """
    query = {
        str(name): sorted(str(v) for v in value) if isinstance(value, (list, tuple, set)) else str(value)
        for name, value in (extra_params or {}).items()
        if value is not None
    }
    text = json.dumps(query, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "\n".join(("carecloud-feed/2", conn_id, crm_base_url, destination, text))


def legacy_watermark_key(conn_id: str, crm_base_url: str, destination: str) -> str:
    """The key an earlier release kept the watermark under: per CRM connection and destination, whatever the query
    (several feeds may have shared it, so it is read only as a bound the read may start before).

    :param conn_id: the CareCloud CRM connection id.
    :param crm_base_url: the CRM API's base URL.
    :param destination: the careCycle hook's ``destination_id``.
    """
    return f"{conn_id}\n{crm_base_url}\n{destination}"


class CareCloudCrmToCareCycleLeadsOperator(CareCycleLeadUploadBaseOperator):
    """Upload the CareCloud CRM customers changed in ``[changed_since, changed_before)`` to careCycle as leads.

    Each CRM customer is mapped to a careCycle lead (``field_mapping``: names, email, phone, birthdate, zip, city,
    ``externalId`` = ``customer_id`` by default), then validated, deduplicated and uploaded like every other
    lead source. A customer that cannot become a lead (a phone outside the US, no zip and no ``timezone``
    default, ...) is rejected with its reason into ``rejected_path``. Reruns of the same interval upload the same
    ``externalId`` values, which careCycle updates rather than duplicates.

    **Consent travels with every lead** (``docs/operators/consent.md``): each customer's account ``state`` and
    consents set the lead's ``doNotCall``, ``doNotSMS``, ``doNotEmail`` (and, for a deleted customer, ``doNotMail``),
    by the rules of :mod:`~airflow_provider_carecycle.carecloud.consent`. A customer careCycle already holds (the sync
    ledger knows it) who may no longer be called is sent again with the flag; one never sent before is not sent at all
    and counted as ``suppressed``. A flag is only ever sent set: clearing a do-not-call in careCycle is a deliberate
    act there, never a side effect of the feed.

    Returns the upload summary (``total``, ``uploaded``, ``rejected``, ``duplicates``, ``suppressed``, ``batches``,
    ``rejected_path``, ...) plus ``crm_rows``, the CRM customers read.

    .. seealso:: ``docs/operators/carecloud-to-carecycle.md``

    :param carecloud_crm_conn_id: the CareCloud CRM Airflow connection.
    :param carecloud_hook_params: extra keyword arguments for :class:`CareCloudCrmHook`.
    :param field_mapping: careCycle lead field -> dotted path into a CareCloud customer; default
        :data:`~airflow_provider_carecycle.carecloud.mapping.CARECLOUD_FIELD_MAPPING`. Fields it does not map can still
        come from ``defaults`` (``sourceId``, ``timezone``, ...). The argument every lead upload has, here applied to
        the CRM's customers (earlier releases called it ``crm_field_mapping``: that name is refused, naming this one).
    :param changed_since: the interval's start, inclusive (templated; default: the run's ``data_interval_start``,
        or for a run without a data interval, a manual Airflow 3 run without a logical date, midnight UTC the day
        before its ``run_after``; see :func:`~airflow_provider_carecycle.operators.base.run_interval`).
    :param changed_before: the interval's end, exclusive (templated; default: the run's ``data_interval_end``, or
        midnight UTC of the ``run_after`` day).
    :param per_page: CRM customers per request (CareCloud's ``count``; earlier releases called it ``page_size``:
        that name is refused, naming this one).
    :param extra_params: more CareCloud ``GET /customers`` query parameters (filters combine with AND); templated.
    :param incremental: read from a **watermark** rather than from the data interval's start: the highest
        ``last_change`` a successful run read, kept per feed (:func:`watermark_key`: the CRM connection, the query's
        ``extra_params``, the careCycle destination): on Airflow 3.3+, when the task declares the
        ``carecycle://<host>/leads`` asset (an outlet), in that asset's state store; elsewhere next to the ledger in
        ``sync_state_path`` (one of the two is required). It advances only when the run succeeds (every lead
        settled), so a failed or skipped day is read by the next run; never past the run's own start, nor past a
        row that may have been skipped while the CRM was paged; and the customers careCycle refused are fetched and
        sent again by the next runs. Without a watermark yet, the run reads from ``changed_since`` or the data
        interval's start. Not used by a dry run. See ``docs/operators/carecloud-to-carecycle.md``.
    :param overlap: with ``incremental``, re-read this much before the watermark, for clock skew (a ``timedelta``
        or seconds; default 5 minutes); the sync ledger makes re-read leads free.
    :param consent_mapping: consent ``text_id`` -> the careCycle flag(s) its withdrawal sets (templated); default
        :data:`~airflow_provider_carecycle.carecloud.consent.DEFAULT_CONSENT_MAPPING` (the marketing-communication
        consent governs calls, SMS and e-mail). Resolved once per run through the CRM's consent catalogue; a
        ``text_id`` the CRM does not list is an error. Consents tied to the SMS, e-mail and White Post channels govern
        those channels' flags unless named here.
    :param unset_consent: a governing consent that is not set (2) or absent: ``"call"`` (default: no flag) or
        ``"do_not_call"`` (as if withdrawn).
    :param inactive: a non-active customer (``state`` 2): ``"call"`` (default) or ``"do_not_call"``.
    :param suppress_new_do_not_call: with ``sync_state_path``, do not send a ``doNotCall`` customer careCycle never
        held (default ``True``; counted as ``suppressed``). Without a sync ledger nothing tells the two apart and
        every lead is sent, flag and all. ``False`` sends them flagged anyway (when careCycle may hold leads this
        feed's ledger never saw, e.g. uploaded before it kept one).
    :param kwargs: the lead upload options of :class:`CareCycleLeadUploadBaseOperator` (``defaults``,
        ``rejected_path``, ``max_rejected_ratio``, ``batch_size``, ``checkpoint_path``, ``dry_run``, ...) and
        the careCycle connection arguments.
    """

    template_fields: tuple[str, ...] = (
        "changed_since",
        "changed_before",
        "extra_params",
        "consent_mapping",
        *CareCycleLeadUploadBaseOperator.template_fields,
    )
    template_fields_renderers = {
        **CareCycleLeadUploadBaseOperator.template_fields_renderers,
        "extra_params": "json",
        "consent_mapping": "json",
    }
    #: the rendered ``field_mapping``, checked once per run by :meth:`check_rendered_arguments`
    _crm_mapping: CrmMapping | None = None

    def __init__(
        self,
        *,
        carecloud_crm_conn_id: str = CareCloudCrmHook.default_conn_name,
        carecloud_hook_params: Mapping[str, Any] | None = None,
        changed_since: datetime | str | None = None,
        changed_before: datetime | str | None = None,
        per_page: int = DEFAULT_PAGE_SIZE,
        extra_params: Mapping[str, Any] | None = None,
        incremental: bool = False,
        overlap: timedelta | float = timedelta(minutes=5),
        consent_mapping: Mapping[str, Any] | None = None,
        unset_consent: str = "call",
        inactive: str = "call",
        suppress_new_do_not_call: bool = True,
        **kwargs: Any,
    ) -> None:
        # one name per concept: every lead upload takes field_mapping, every paged read per_page
        refuse_renamed_arguments(type(self).__name__, kwargs, RENAMED_ARGUMENTS)
        super().__init__(**kwargs)
        page_size("per_page", per_page)
        self.carecloud_crm_conn_id = carecloud_crm_conn_id
        self.carecloud_hook_params = dict(carecloud_hook_params or {})
        self.changed_since = changed_since
        self.changed_before = changed_before
        self.per_page = per_page
        self.extra_params = extra_params
        self.incremental = incremental
        if incremental and not kwargs.get("sync_state_path") and not declares_leads_asset(self.outlets):
            raise ValueError(
                "incremental=True keeps its watermark next to the sync ledger: set sync_state_path (or, on Airflow "
                "3.3+, declare the careCycle leads asset, outlets=[Asset('carecycle://<host>/leads')], whose state "
                "store then keeps it)."
            )
        seconds = overlap.total_seconds() if isinstance(overlap, timedelta) else overlap
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds < 86400:
            raise ValueError(f"overlap must be a duration from 0 to 1 day (timedelta or seconds), got {overlap!r}.")
        self.overlap = timedelta(seconds=seconds)
        self.consent_mapping = consent_mapping
        self.unset_consent = check_policy("unset_consent", unset_consent)
        self.inactive = check_policy("inactive", inactive)
        self.suppress_new_do_not_call = bool(suppress_new_do_not_call)
        self._consent: ConsentRules | None = None
        self.crm_rows = 0
        self._watermark: SyncWatermark | None = None
        self._mark: WatermarkState | None = None
        self._read = ChangedRead()
        #: per source row read by an incremental run: the customer id and the earliest instant of its last_change
        self._rows: list[tuple[str, datetime | None]] = []

    @cached_property
    def carecloud_hook(self) -> CareCloudCrmHook:
        """The CareCloud CRM hook, built on first use (at run time, never at DAG parse time)."""
        return CareCloudCrmHook(self.carecloud_crm_conn_id, **self.carecloud_hook_params)

    def interval(self, context: Context) -> tuple[datetime, datetime]:
        """``(changed_since, changed_before)``, falling back to the run's interval for a bound not given.

        :raises ValueError: for a bound that is not a datetime or ISO 8601 text.
        """
        since, before = self.changed_since, self.changed_before
        if since is None or before is None:
            fallback = context_interval(context)
            since = fallback.start if since is None else since
            before = fallback.end if before is None else before
        return as_datetime("changed_since", since), as_datetime("changed_before", before)

    def _incremental_since(self, context: Context, since: datetime) -> datetime:
        """Where an incremental read starts: this feed's watermark minus the overlap; without one, ``since`` (or
        the earlier of ``since`` and an earlier release's per-connection watermark minus the overlap)."""
        hook = self.carecloud_hook
        conn_id, destination = self.carecloud_crm_conn_id, self.hook.destination_id
        self._watermark = crm_watermark(
            self,
            context,
            key=watermark_key(conn_id, hook.base_url, destination, self.extra_params),
            legacy_key=legacy_watermark_key(conn_id, hook.base_url, destination),
            base_url=self.hook.base_url,
            sync_state_path=self.sync_state_path,
        )
        self._mark = self._watermark.read_state()
        if self._mark is None:
            self.log.info("No watermark yet in %s: reading from %s.", self._watermark.location, since.isoformat())
            return since
        start = self._mark.last_change - self.overlap
        if self._mark.legacy:
            start = min(start, since)
            self.log.info("No watermark of this feed yet: reading from %s.", start.isoformat())
            return start
        self.log.info("Watermark %s (minus an overlap of %s).", self._mark.last_change.isoformat(), self.overlap)
        return start

    def check_rendered_arguments(self) -> None:
        """Also check ``field_mapping`` as a CRM mapping (once per run: the rows are then mapped without checks) and
        ``extra_params``, once rendered.

        :raises ValueError: naming the argument (and the bad mapping key).
        """
        super().check_rendered_arguments()
        self._crm_mapping = self._checked_crm_mapping()
        if self.extra_params is not None and not isinstance(self.extra_params, Mapping):
            raise ValueError(f"extra_params must render to a mapping, got {type(self.extra_params).__name__}.")
        if self.consent_mapping is not None:
            check_consent_mapping(self.consent_mapping)

    def _checked_crm_mapping(self) -> CrmMapping:
        """The rendered ``field_mapping`` (default :data:`CARECLOUD_FIELD_MAPPING`), checked.

        :raises ValueError: for a value that is not a mapping, a key that is not a careCycle lead field, a bad path.
        """
        mapping = self.field_mapping
        if mapping is not None and not isinstance(mapping, Mapping):
            raise ValueError(
                "field_mapping must be a mapping of careCycle lead field -> dotted path into a CareCloud "
                f"customer, got {type(mapping).__name__}."
            )
        return CrmMapping(mapping or CARECLOUD_FIELD_MAPPING, argument="field_mapping")

    def lead_validator(self) -> LeadValidator:
        """The validator of the mapped CRM rows: they are in careCycle's field names already, so it maps nothing."""
        return LeadValidator(None, self.defaults, self.drop_unknown_fields, **self.validation_options())

    def iter_source(self, context: Context) -> Iterator[dict[str, Any]]:
        since, before = self.interval(context)
        track = self.incremental and not self.is_dry_run
        retry: tuple[str, ...] = ()
        if track:
            tz = self.carecloud_hook.project_tz
            since, before = as_instant(since, tz), as_instant(before, tz, latest=True)
            since = self._incremental_since(context, since)
            if self._mark is not None and not self._mark.legacy:
                retry = self._mark.retry
        mapping = self._crm_mapping or self._checked_crm_mapping()
        self._consent = ConsentRules.resolve(
            self.carecloud_hook, self.consent_mapping, unset_consent=self.unset_consent, inactive=self.inactive
        )
        if since < before:
            self.log.info("Reading CareCloud CRM customers changed in [%s, %s).", since.isoformat(), before.isoformat())
            rows = self.carecloud_hook.iter_changed_rows(
                since, before, count=self.per_page, extra_params=self.extra_params, read=self._read
            )
            for customer, changed in rows:
                yield self._source_row(customer, changed, mapping, track)
        else:
            self.log.info("The watermark is at or after %s: nothing to read.", before.isoformat())
        pending = sorted(set(retry) - {customer_id for customer_id, _ in self._rows})
        if pending:
            self.log.info("Fetching again %d CRM customer(s) careCycle refused in an earlier run.", len(pending))
            again = self.carecloud_hook.iter_customers(
                customer_ids=pending, extra_params=self.extra_params, count=self.per_page
            )
            tz = self.carecloud_hook.project_tz
            for customer in again:  # not read by last_change: its change time is read here, once
                yield self._source_row(customer, changed_instant(customer.get("last_change"), tz), mapping, track)

    def _source_row(
        self, customer: dict[str, Any], changed: datetime | None, mapping: CrmMapping, track: bool
    ) -> dict[str, Any]:
        """One CRM customer as a lead source record; an incremental run notes which customer each row is and when it
        changed (the earliest instant its ``last_change`` names, ``None`` when unreadable)."""
        self.crm_rows += 1
        if track:
            self._rows.append((str(customer.get("customer_id")), changed))
        source = mapping(customer)
        assert self._consent is not None, "iter_source resolves the consent rules first"
        for flag in self._consent.flags(customer):  # only ever set: never clears a flag careCycle holds
            source[flag] = True
        return source

    def _next_watermark(self) -> tuple[datetime | None, list[str]]:
        """The watermark this successful run vouches for, and the customers careCycle refused, to try again.

        Up to :data:`~airflow_provider_carecycle.sync.watermark.MAX_RETRY_IDS` refused customers are kept by id; the
        watermark stays at or before the change of any beyond that, so the next run reads them again.
        """
        refused = sorted(set(self.outcome.refused_rows if self.outcome is not None else ()))
        retry: list[str] = []
        held_back: datetime | None = None
        for row in refused:
            customer_id, changed = self._rows[row - 1]
            if customer_id in retry:
                continue
            if len(retry) < MAX_RETRY_IDS:
                retry.append(customer_id)
                continue
            bound = changed if changed is not None else self._read.started_at
            held_back = bound if held_back is None else min(held_back, bound)
        previous = None if self._mark is None or self._mark.legacy else self._mark.last_change
        mark = self._read.watermark(previous)
        if mark is not None and held_back is not None:
            mark = min(mark, held_back)
        return mark, retry

    def openlineage_datasets(self, outcome: Outcome | None) -> lineage.Datasets:
        """The upload's datasets, and the CRM's ``customers`` read, with the CRM customers read."""
        _, outputs = super().openlineage_datasets(outcome)
        namespace = lineage.carecloud_namespace(self.carecloud_hook.base_url)
        return [
            lineage.input_dataset(namespace, lineage.CUSTOMERS, None if outcome is None else self.crm_rows)
        ], outputs

    def execute(self, context: Context) -> dict[str, Any]:
        with rendered_arguments():
            self.check_rendered_arguments()
            self.interval(context)  # a bad bound fails before anything is read
        self.crm_rows = 0
        self._watermark, self._mark, self._read, self._rows = None, None, ChangedRead(), []
        self._consent = None
        self.upload(context)  # raises unless every lead is settled: the watermark stays
        if self._consent is not None and self._consent.reasons:
            self.log.info(
                "Consent and account state: %s.",
                ", ".join(f"{count} {reason}" for reason, count in sorted(self._consent.reasons.items())),
            )
        outcome = self.outcome
        assert outcome is not None, "upload() keeps its summary"
        outcome.crm_rows = self.crm_rows
        if self._watermark is not None:
            mark, retry = self._next_watermark()
            if mark is not None:
                self._watermark.write(mark, retry)
                outcome.watermark = mark.isoformat()
                if retry:
                    self.log.info(
                        "%d CRM customer(s) careCycle refused are fetched and sent again by the next run.", len(retry)
                    )
        return outcome.as_dict()
