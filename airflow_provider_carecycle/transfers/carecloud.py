"""CareCloud CRM -> careCycle: upload the CRM customers changed in a DAG run's data interval as careCycle leads.

.. seealso:: ``docs/operators/carecloud-to-carecycle.md``
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from airflow_provider_carecycle._compat import Context
from airflow_provider_carecycle.carecloud.hook import DEFAULT_PAGE_SIZE, CareCloudCrmHook, parse_carecloud_datetime
from airflow_provider_carecycle.carecloud.mapping import CARECLOUD_FIELD_MAPPING, CrmMapping
from airflow_provider_carecycle.leads.ledger import SyncWatermark
from airflow_provider_carecycle.operators.base import context_interval, rendered_arguments
from airflow_provider_carecycle.operators.leads import CareCycleLeadUploadBaseOperator
from airflow_provider_carecycle.state_store import crm_watermark, declares_leads_asset


def as_datetime(name: str, value: Any) -> datetime:
    """A rendered interval bound (a ``datetime`` or an ISO 8601 string) as a ``datetime``.

    :param name: the argument's name, for the error message.
    :param value: the rendered value.
    """
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value.strip():
        text = value.strip()
        try:
            return datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
        except ValueError:
            pass
    raise ValueError(f"{name} must be a datetime or an ISO 8601 string, got {value!r}.")


class CareCloudCrmToCareCycleLeadsOperator(CareCycleLeadUploadBaseOperator):
    """Upload the CareCloud CRM customers changed in ``[changed_since, changed_before)`` to careCycle as leads.

    Each CRM customer is mapped to a careCycle lead (``crm_field_mapping``: names, email, phone, birthdate, zip,
    city, ``externalId`` = ``customer_id`` by default), then validated, deduplicated and uploaded like every other
    lead source. A customer that cannot become a lead (a phone outside the US, no zip and no ``timezone``
    default, ...) is rejected with its reason into ``rejected_path``. Reruns of the same interval upload the same
    ``externalId`` values, which careCycle updates rather than duplicates.

    Returns the upload summary (``total``, ``uploaded``, ``rejected``, ``duplicates``, ``batches``,
    ``rejected_path``, ...) plus ``crm_rows``, the CRM customers read.

    .. seealso:: ``docs/operators/carecloud-to-carecycle.md``

    :param carecloud_crm_conn_id: the CareCloud CRM Airflow connection.
    :param carecloud_hook_params: extra keyword arguments for :class:`CareCloudCrmHook`.
    :param crm_field_mapping: careCycle lead field -> dotted path into a CareCloud customer; default
        :data:`~airflow_provider_carecycle.carecloud.mapping.CARECLOUD_FIELD_MAPPING`. Fields it does not map can still
        come from ``defaults`` (``sourceId``, ``timezone``, ...).
    :param changed_since: the interval's start, inclusive (templated; default: the run's ``data_interval_start``,
        or for a run without a data interval, a manual Airflow 3 run without a logical date, midnight UTC the day
        before its ``run_after``; see :func:`~airflow_provider_carecycle.operators.base.run_interval`).
    :param changed_before: the interval's end, exclusive (templated; default: the run's ``data_interval_end``, or
        midnight UTC of the ``run_after`` day).
    :param page_size: CRM customers per request.
    :param extra_params: more CareCloud ``GET /customers`` query parameters (filters combine with AND); templated.
    :param incremental: read from a **watermark** rather than from the data interval's start: the highest
        ``last_change`` a successful run read, kept per CRM connection and careCycle destination: on Airflow 3.3+,
        when the task declares the ``carecycle://<host>/leads`` asset (an outlet), in that asset's state store;
        elsewhere next to the ledger in ``sync_state_path`` (one of the two is required). It advances only when the
        run succeeds (every lead settled), so a failed or skipped day is read by the next run. Without a watermark
        yet, the run reads from ``changed_since`` or the data interval's start. Not used by a dry run.
    :param overlap: with ``incremental``, re-read this much before the watermark, for clock skew (a ``timedelta``
        or seconds; default 5 minutes); the sync ledger makes re-read leads free.
    :param kwargs: the lead upload options of :class:`CareCycleLeadUploadBaseOperator` (``defaults``,
        ``rejected_path``, ``max_rejected_ratio``, ``batch_size``, ``checkpoint_path``, ``dry_run``, ...) and
        the careCycle connection arguments.
    """

    template_fields: tuple[str, ...] = (
        "crm_field_mapping",
        "changed_since",
        "changed_before",
        "extra_params",
        *CareCycleLeadUploadBaseOperator.template_fields,
    )
    template_fields_renderers = {
        **CareCycleLeadUploadBaseOperator.template_fields_renderers,
        "crm_field_mapping": "json",
        "extra_params": "json",
    }
    #: the rendered ``crm_field_mapping``, checked once per run by :meth:`check_rendered_arguments`
    _crm_mapping: CrmMapping | None = None

    def __init__(
        self,
        *,
        carecloud_crm_conn_id: str = CareCloudCrmHook.default_conn_name,
        carecloud_hook_params: Mapping[str, Any] | None = None,
        crm_field_mapping: Mapping[str, str] | None = None,
        changed_since: datetime | str | None = None,
        changed_before: datetime | str | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        extra_params: Mapping[str, Any] | None = None,
        incremental: bool = False,
        overlap: timedelta | float = timedelta(minutes=5),
        **kwargs: Any,
    ) -> None:
        if kwargs.get("field_mapping") is not None:
            raise ValueError(
                "field_mapping does not apply to CRM customers: use crm_field_mapping "
                "(careCycle field -> dotted path into a CareCloud customer)."
            )
        super().__init__(**kwargs)
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
            raise ValueError(f"page_size must be a positive integer, got {page_size!r}.")
        self.carecloud_crm_conn_id = carecloud_crm_conn_id
        self.carecloud_hook_params = dict(carecloud_hook_params or {})
        self.crm_field_mapping = crm_field_mapping
        self.changed_since = changed_since
        self.changed_before = changed_before
        self.page_size = page_size
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
        self.crm_rows = 0
        self._newest: datetime | None = None
        self._watermark: SyncWatermark | None = None

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
        """The watermark minus the overlap, when there is a watermark; else ``since``."""
        self._watermark = crm_watermark(
            self,
            context,
            key=f"{self.carecloud_crm_conn_id}\n{self.carecloud_hook.base_url}\n{self.hook.destination_id}",
            base_url=self.hook.base_url,
            sync_state_path=self.sync_state_path,
        )
        mark = self._watermark.read()
        self._newest = mark
        if mark is None:
            self.log.info("No watermark yet in %s: reading from %s.", self._watermark.location, since.isoformat())
            return since
        self.log.info("Watermark %s (minus an overlap of %s).", mark.isoformat(), self.overlap)
        return mark - self.overlap

    def check_rendered_arguments(self) -> None:
        """Also check ``crm_field_mapping`` (once per run: the rows are then mapped without checks) and
        ``extra_params``, once rendered.

        :raises ValueError: naming the argument (and the bad mapping key).
        """
        super().check_rendered_arguments()
        self._crm_mapping = self._checked_crm_mapping()
        if self.extra_params is not None and not isinstance(self.extra_params, Mapping):
            raise ValueError(f"extra_params must render to a mapping, got {type(self.extra_params).__name__}.")

    def _checked_crm_mapping(self) -> CrmMapping:
        """The rendered ``crm_field_mapping`` (default :data:`CARECLOUD_FIELD_MAPPING`), checked.

        :raises ValueError: for a value that is not a mapping, a key that is not a careCycle lead field, a bad path.
        """
        mapping = self.crm_field_mapping
        if mapping is not None and not isinstance(mapping, Mapping):
            raise ValueError(
                "crm_field_mapping must be a mapping of careCycle lead field -> dotted path into a CareCloud "
                f"customer, got {type(mapping).__name__}."
            )
        return CrmMapping(mapping or CARECLOUD_FIELD_MAPPING, argument="crm_field_mapping")

    def iter_source(self, context: Context) -> Iterator[dict[str, Any]]:
        since, before = self.interval(context)
        track = self.incremental and not self.is_dry_run
        if track:
            since = self._incremental_since(context, since)
            if since >= before:
                self.log.info("The watermark is at or after %s: nothing to read.", before.isoformat())
                return
        mapping = self._crm_mapping or self._checked_crm_mapping()
        self.log.info("Reading CareCloud CRM customers changed in [%s, %s).", since.isoformat(), before.isoformat())
        customers = self.carecloud_hook.iter_changed_customers(
            since, before, count=self.page_size, extra_params=self.extra_params
        )
        tz = self.carecloud_hook.project_tz
        for customer in customers:
            self.crm_rows += 1
            if track:
                changed = parse_carecloud_datetime(customer.get("last_change"), tz)
                if changed is not None and (self._newest is None or changed > self._newest):
                    self._newest = changed
            yield mapping(customer)

    def execute(self, context: Context) -> dict[str, Any]:
        with rendered_arguments():
            self.check_rendered_arguments()
            self.interval(context)  # a bad bound fails before anything is read
        self.crm_rows = 0
        self._newest, self._watermark = None, None
        summary = self.upload(context)  # raises unless every lead is settled: the watermark stays
        result = {**summary, "crm_rows": self.crm_rows}
        if self._watermark is not None and self._newest is not None:
            self._watermark.write(self._newest)
            result["watermark"] = self._newest.isoformat()
        return result
