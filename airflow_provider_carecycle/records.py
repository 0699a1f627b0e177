"""Record helpers shared by the storage layer and the pure lead validator.

Pure Python: imports nothing from Airflow, fsspec or ``requests``, so :mod:`airflow_provider_carecycle.leads`
(which uses these) stays cheap to import outside a worker. :mod:`airflow_provider_carecycle.storage` re-exports
every name here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

EXTRA_VALUES_KEY = "_extraValues"
"""The key under which :class:`MalformedRow` keeps the CSV values beyond the header's columns."""


class MalformedRow(dict[str, Any]):
    """A source row that was read whole but is not a clean record; the lead validator rejects it.

    It holds every value of the row (nothing is lost: the rejected file keeps them), and :attr:`problem` says
    what is wrong without any value. Only the readers of :mod:`airflow_provider_carecycle.storage` build one, so
    a key in a JSON source cannot forge it.

    :param values: the row's values by column (extra values under :data:`EXTRA_VALUES_KEY`).
    :param problem: what is wrong, PHI-free (counts only), e.g. ``"the CSV row has 5 values, the header has 4"``.
    """

    def __init__(self, values: Iterable[tuple[str, Any]], problem: str) -> None:
        super().__init__(values)
        self.problem = problem


def json_default(value: Any) -> Any:
    """JSON encoding for the non-JSON values that databases and CSV readers produce.

    :param value: a value :func:`json.dumps` cannot encode by itself.
    """
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def lookup_path(record: Mapping[Any, Any], path: str) -> Any:
    """The value at ``path`` in a record: a literal key first, else a dotted walk through nested mappings
    (``"address.zip"``); ``None`` when missing.

    :param record: the record.
    :param path: a key, or dotted keys into nested mappings.
    """
    if path in record:
        return record[path]
    current: Any = record
    for part in path.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return None
        current = current[part]
    return current
