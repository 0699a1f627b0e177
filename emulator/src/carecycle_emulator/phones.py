"""Dialable US phone numbers for test data: what a CRM holds, valid in the numbering plan.

The lead validator of ``airflow-provider-carecycle`` checks numbers against Google's numbering-plan metadata, so test
data made of invented area codes (``200``, ``555``) would be refused. These are long-established US geographic area
codes; every ``<area>555XXXX`` number with one of them is a valid US fixed-line-or-mobile number there. Standard
library only.
"""

from __future__ import annotations

# fmt: off
AREA_CODES: tuple[int, ...] = (
    201, 202, 203, 205, 206, 207, 208, 209, 210, 212, 213, 214, 215, 216, 217, 218, 219, 224, 225, 228,
    229, 231, 234, 239, 240, 248, 251, 252, 253, 254, 256, 260, 262, 267, 269, 270, 281, 301, 302, 303,
    304, 305, 307, 308, 309, 310, 312, 313, 314, 315, 316, 317, 318, 319, 320, 321, 323, 325, 330, 334,
    336, 337, 339, 347, 351, 352, 360, 361, 386, 401, 402, 404, 405, 406, 407, 408, 409, 410, 412, 413,
    414, 415, 417, 419, 423, 425, 432, 434, 435, 440, 443, 469, 478, 479, 480, 484, 501, 502, 503, 504,
    505, 507, 508, 509, 510, 512, 513, 515, 516, 517, 518, 520, 530, 540, 541, 559, 561, 562, 563, 570,
)
# fmt: on
"""120 US geographic area codes in service for decades."""

#: numbers :func:`us_phone` gives before it repeats one
DISTINCT_PHONES = len(AREA_CODES) * 10_000


def us_phone(i: int) -> str:
    """The ``i``-th test number, ten digits (``2015550000``, ``2015550001``, ...): distinct for ``i`` below
    :data:`DISTINCT_PHONES` (1,200,000), then repeating.

    :param i: the index, ``>= 0``.
    """
    return f"{AREA_CODES[i // 10_000 % len(AREA_CODES)]}555{i % 10_000:04d}"


__all__ = ["AREA_CODES", "DISTINCT_PHONES", "us_phone"]
