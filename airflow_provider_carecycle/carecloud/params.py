"""The query parameters of CareCloud's ``GET /customers``: filters, sorting and list filters in chunks.

Used by :class:`~airflow_provider_carecycle.carecloud.hook.CareCloudCrmHook`. The values checked here are PHI
(phone, birthdate, names): a message never repeats them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

MAX_LIST_FILTER_ITEMS = 1000
SORT_DIRECTIONS = ("ASC", "DESC")
TEXT_FILTERS = ("email", "customer_source_id", "first_name", "last_name")
LIST_FILTERS = ("email_list", "customer_ids")

_FIRST_LEVEL_FIELD = re.compile(r"^[a-z][a-z0-9_]*$")
_DMY_DATE = re.compile(r"^\d{2}\.\d{2}\.\d{4}$")


def _phone_filter(value: Any) -> str:
    """CareCloud phone filter: digits with the international prefix (``+``, spaces and dashes are removed)."""
    digits = re.sub(r"[\s\-()+.]", "", str(value))
    if not digits.isdigit():
        raise ValueError("phone must be digits with the international prefix, e.g. 12025550143 or 420523828931.")
    return digits


def _birthdate_filter(value: Any) -> str:
    if isinstance(value, datetime):
        value = value.date()
    if isinstance(value, date):
        return value.isoformat()
    text = str(value).strip()
    try:
        date.fromisoformat(text)
    except ValueError:
        if not _DMY_DATE.match(text):
            raise ValueError("birthdate must be a date, 'YYYY-MM-DD' or 'DD.MM.YYYY'.") from None
    return text


def _sort_params(sort_field: str | None, sort_direction: str | None) -> dict[str, str]:
    params: dict[str, str] = {}
    if sort_field is not None:
        if not isinstance(sort_field, str) or not _FIRST_LEVEL_FIELD.match(sort_field):
            raise ValueError(
                f"sort_field must be a first-level customer field such as 'last_change', got {sort_field!r}."
            )
        params["sort_field"] = sort_field
    if sort_direction is not None:
        direction = str(sort_direction).upper()
        if direction not in SORT_DIRECTIONS:
            raise ValueError(f"sort_direction must be ASC or DESC, got {sort_direction!r}.")
        params["sort_direction"] = direction
    return params


def _list_chunks(name: str, values: Sequence[str] | None) -> list[list[str]] | None:
    """``values`` in chunks of at most 1,000 (the API's limit), or ``None`` when the filter is not used."""
    if values is None:
        return None
    if isinstance(values, (str, bytes)):
        raise ValueError(f"{name} must be a list of strings, not one string.")
    items = [str(v) for v in values]
    return [items[i : i + MAX_LIST_FILTER_ITEMS] for i in range(0, len(items), MAX_LIST_FILTER_ITEMS)]


def build_customer_params(
    *,
    email: str | None = None,
    phone: str | int | None = None,
    customer_source_id: str | None = None,
    first_name: str | None = None,
    last_name: str | None = None,
    birthdate: str | date | None = None,
    sort_field: str | None = None,
    sort_direction: str | None = None,
) -> dict[str, Any]:
    """The scalar query parameters of ``GET /customers`` (list filters are added per chunk by the hook).

    :raises ValueError: for a malformed value (the message never repeats the value for PHI filters).
    """
    params: dict[str, Any] = {}
    for name, value in (
        ("email", email),
        ("customer_source_id", customer_source_id),
        ("first_name", first_name),
        ("last_name", last_name),
    ):
        if value is not None:
            params[name] = str(value)
    if phone is not None:
        params["phone"] = _phone_filter(phone)
    if birthdate is not None:
        params["birthdate"] = _birthdate_filter(birthdate)
    params.update(_sort_params(sort_field, sort_direction))
    return params


__all__ = ["LIST_FILTERS", "MAX_LIST_FILTER_ITEMS", "SORT_DIRECTIONS", "TEXT_FILTERS", "build_customer_params"]
