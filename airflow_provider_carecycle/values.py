"""The one reading of each kind of value that several parts of the provider take, so a value one part accepts is never
refused by another: page sizes and ISO 8601 date-times. (careCycle ids are :mod:`~airflow_provider_carecycle.ids`'s;
the API's value sets, :mod:`~airflow_provider_carecycle.vocabulary`'s.) Importing this imports nothing of Airflow.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any


def page_size(name: str, value: Any, largest: int | None = None) -> int:
    """``value`` when it is a page size: an integer (not a bool) of at least 1 and, if given, at most ``largest``.

    :param name: the argument, named in the message (``per_page``).
    :param value: the value given.
    :param largest: the API's largest page, if it has one.
    :raises ValueError: naming the argument and its range.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or (largest is not None and value > largest):
        allowed = "of at least 1" if largest is None else f"from 1 to {largest}"
        raise ValueError(f"{name} must be an integer {allowed}, got {value!r}.")
    return value


def parse_iso_datetime(text: str) -> datetime:
    """An ISO 8601 date-time (or date), ``Z``/``z`` read as UTC (``datetime.fromisoformat`` reads it only from Python
    3.11); one without an offset stays naive.

    :param text: the text, surrounding blanks ignored.
    :raises ValueError: when it is not ISO 8601.
    """
    text = text.strip()
    return datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
