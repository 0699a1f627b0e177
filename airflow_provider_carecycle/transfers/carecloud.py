"""CareCloud CRM -> careCycle: upload the CRM customers changed in a DAG run's data interval as careCycle leads.

.. seealso:: ``docs/operators/carecloud-to-carecycle.md``
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from functools import cached_property
from typing import Any

from airflow_provider_carecycle._compat import Context
from airflow_provider_carecycle.crm_mapping import CARECLOUD_FIELD_MAPPING, customer_to_lead_source
from airflow_provider_carecycle.hooks.carecloud import DEFAULT_PAGE_SIZE, CareCloudCrmHook
from airflow_provider_carecycle.operators.base import context_interval, rendered_arguments
from airflow_provider_carecycle.operators.leads import CareCycleLeadUploadBaseOperator, check_lead_field_names


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
        :data:`~airflow_provider_carecycle.crm_mapping.CARECLOUD_FIELD_MAPPING`. Fields it does not map can still
        come from ``defaults`` (``sourceId``, ``timezone``, ...).
    :param changed_since: the interval's start, inclusive (templated; default: the run's ``data_interval_start``,
        or for a run without a data interval, a manual Airflow 3 run without a logical date, midnight UTC the day
        before its ``run_after``; see :func:`~airflow_provider_carecycle.operators.base.run_interval`).
    :param changed_before: the interval's end, exclusive (templated; default: the run's ``data_interval_end``, or
        midnight UTC of the ``run_after`` day).
    :param page_size: CRM customers per request.
    :param extra_params: more CareCloud ``GET /customers`` query parameters (filters combine with AND); templated.
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
        self.crm_rows = 0

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

    def check_rendered_arguments(self) -> None:
        """Also check ``crm_field_mapping`` and ``extra_params``, once rendered.

        :raises ValueError: naming the argument.
        """
        super().check_rendered_arguments()
        check_lead_field_names("crm_field_mapping", self.crm_field_mapping)
        if self.extra_params is not None and not isinstance(self.extra_params, Mapping):
            raise ValueError(f"extra_params must render to a mapping, got {type(self.extra_params).__name__}.")

    def iter_source(self, context: Context) -> Iterator[dict[str, Any]]:
        since, before = self.interval(context)
        mapping = self.crm_field_mapping or CARECLOUD_FIELD_MAPPING
        self.log.info("Reading CareCloud CRM customers changed in [%s, %s).", since.isoformat(), before.isoformat())
        customers = self.carecloud_hook.iter_changed_customers(
            since, before, count=self.page_size, extra_params=self.extra_params
        )
        for customer in customers:
            self.crm_rows += 1
            yield customer_to_lead_source(customer, mapping)

    def execute(self, context: Context) -> dict[str, Any]:
        with rendered_arguments():
            self.check_rendered_arguments()
            self.interval(context)  # a bad bound fails before anything is read
        self.crm_rows = 0
        summary = self.upload(context)
        return {**summary, "crm_rows": self.crm_rows}
