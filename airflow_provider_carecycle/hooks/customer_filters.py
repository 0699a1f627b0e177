"""careCycle's customer filters: the one table that maps snake_case filter names to ``GET /v2/customers`` query
parameters (used by ``CareCycleHook.customer_pages`` and so by ``iter_customers`` and the customers export).

The vendor page lost most parameter names; ``verified`` marks the names seen in the vendor's documentation, the
others are our working assumptions (see ``docs/api-assumptions.md``). ``extra_params`` passes any raw parameter
through unchanged, so users are never blocked by a name we guessed wrong or a filter added later.

CareCloud CRM's customer query parameters are another vendor's: :mod:`airflow_provider_carecycle.carecloud.params`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_carecycle.vocabulary import (
    CAMPAIGN_MEMBER_STATUSES,
    CUSTOMER_DATE_FIELDS,
    CUSTOMER_SORT_FIELDS,
    CUSTOMER_STATUSES,
    POLICY_STATUSES,
    POLICY_TYPES,
    SORT_DIRECTIONS,
)


@dataclass(frozen=True)
class Filter:
    """One customer filter.

    :param api_name: the query parameter name.
    :param kind: ``text``, ``list`` (comma-joined), ``bool`` (``true``/``false``), ``date`` (``YYYY-MM-DD``).
    :param choices: the allowed values, checked before any request; ``None`` means free text.
    :param verified: whether the name was seen in the vendor's documentation.
    """

    api_name: str
    kind: str = "text"
    choices: tuple[str, ...] | None = None
    verified: bool = False


CUSTOMER_FILTERS: dict[str, Filter] = {
    "search": Filter("search", verified=True),
    "sort_by": Filter("sortBy", choices=CUSTOMER_SORT_FIELDS, verified=True),
    "sort_direction": Filter("sortDirection", choices=SORT_DIRECTIONS, verified=True),
    "include_test_numbers": Filter("includeTestNumbers", "bool", verified=True),
    "source_ids": Filter("sourceIds", "list", verified=True),
    "campaign_ids": Filter("campaignIds", "list", verified=True),
    "customer_campaign_statuses": Filter("customerCampaignStatuses", "list", CAMPAIGN_MEMBER_STATUSES),
    "has_prior_attempts": Filter("hasPriorAttempts", "bool"),
    "pulse_node_id": Filter("pulseNodeId"),
    "policy_statuses": Filter("policyStatuses", "list", POLICY_STATUSES),
    "assigned_member_ids": Filter("assignedMemberIds", "list"),
    "statuses": Filter("statuses", "list", CUSTOMER_STATUSES),
    "date_field": Filter("dateField", choices=CUSTOMER_DATE_FIELDS, verified=True),
    "start_date": Filter("startDate", "date", verified=True),
    "end_date": Filter("endDate", "date", verified=True),
    "last_call_start_date": Filter("lastCallStartDate", "date"),
    "last_call_end_date": Filter("lastCallEndDate", "date"),
    "states": Filter("states", "list"),
    "counties": Filter("counties", "list"),
    "policy_types": Filter("policyTypes", "list", POLICY_TYPES),
    "aging_in_months": Filter("agingInMonths", choices=("3", "6", "12")),
}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value).strip()


def _check_choices(name: str, spec: Filter, values: Iterable[str]) -> None:
    if spec.choices is None:
        return
    bad = [v for v in values if v not in spec.choices]
    if bad:
        raise ValueError(
            f"Invalid value for careCycle customer filter {name!r}: {', '.join(map(repr, bad))}. "
            f"Valid values: {', '.join(spec.choices)}."
        )


def _encode(name: str, spec: Filter, value: Any) -> str:
    if spec.kind == "list":
        items = value.split(",") if isinstance(value, str) else [_text(v) for v in value]
        values = [v.strip() for v in items if v.strip()]
        _check_choices(name, spec, values)
        return ",".join(values)
    if spec.kind == "bool":
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower()
        if not isinstance(value, bool):
            raise ValueError(f"careCycle customer filter {name!r} takes True or False, got {type(value).__name__}.")
        return _text(value)
    text = _text(value)
    if spec.kind == "date":
        try:
            dt.date.fromisoformat(text[:10])
        except ValueError:
            raise ValueError(
                f"careCycle customer filter {name!r} takes a date (YYYY-MM-DD, a date or a datetime)."
            ) from None
        text = text[:10]
    _check_choices(name, spec, [text])
    return text


def customer_query_params(filters: Mapping[str, Any], extra_params: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Turn snake_case filters into ``GET /v2/customers`` query parameters, checking every value first.

    ``None`` values and empty lists are left out. ``extra_params`` are added last, unchanged, and win.

    :param filters: keyword filters named as in :data:`CUSTOMER_FILTERS`.
    :param extra_params: raw query parameters passed through as given.
    :raises ValueError: for an unknown filter name or an invalid value, listing what is valid.
    """
    unknown = sorted(set(filters) - set(CUSTOMER_FILTERS))
    if unknown:
        raise ValueError(
            f"Unknown careCycle customer filter(s): {', '.join(unknown)}. "
            f"Valid filters: {', '.join(CUSTOMER_FILTERS)}; pass anything else through extra_params."
        )
    params: dict[str, str] = {}
    for name, value in filters.items():
        if value is None or (not isinstance(value, (str, bool)) and hasattr(value, "__len__") and not value):
            continue
        spec = CUSTOMER_FILTERS[name]
        params[spec.api_name] = _encode(name, spec, value)
    params.update({k: v for k, v in (extra_params or {}).items() if v is not None})
    return params
