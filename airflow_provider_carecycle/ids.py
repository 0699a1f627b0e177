"""The one check of careCycle ids: every careCycle id (customer, campaign, call, ...) is an RFC 9562 UUID.

The hook, the operators and anything else that takes an id check it here, so a value one part accepts is never
refused by another. Importing this imports nothing of Airflow.
"""

from __future__ import annotations

import re
from typing import Any

#: a UUID of version 1-8 with the RFC 9562 variant, or the nil or max UUID, in either case (use ``fullmatch``)
UUID_PATTERN = re.compile(
    r"([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[1-8][0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}"
    r"|00000000-0000-0000-0000-000000000000|ffffffff-ffff-ffff-ffff-ffffffffffff)"
)


def is_uuid(value: Any) -> bool:
    """Whether ``value`` is text holding a careCycle id (an RFC 9562 UUID, exactly, no surrounding blanks).

    :param value: anything.
    """
    return isinstance(value, str) and UUID_PATTERN.fullmatch(value) is not None


def require_uuid(name: str, value: Any) -> str:
    """``value`` when it is a careCycle id, else a ``ValueError`` naming the argument.

    :param name: the argument's name, for the message (``customer_id``, ``campaign_id``).
    :param value: the value given.
    :raises ValueError: when ``value`` is not a UUID.
    """
    if not is_uuid(value):
        raise ValueError(f"{name} must be a careCycle UUID, got {value!r}.")
    return value
