"""Text helpers the lead rules share: Unicode decimal digits to ASCII, before any rule looks at a number.

A CRM export can hold a phone number or a ZIP code in full-width (``２１２``) or Arabic-Indic (``٢١٢``) digits;
Python's ``\\d`` and ``int()`` take them, so without this step they would pass a check unconverted and make a
second lead of the same number. Pure Python.
"""

from __future__ import annotations

import unicodedata


def ascii_digits(text: str) -> str:
    """``text`` with every Unicode decimal digit (category ``Nd``: full-width, Arabic-Indic, Devanagari, ...) replaced
    by its ASCII digit; everything else is kept as it is.

    >>> ascii_digits("２１２-٥٥٥-0142")
    '212-555-0142'

    :param text: the text.
    """
    if text.isascii():
        return text
    return "".join(
        str(unicodedata.decimal(char)) if not char.isascii() and unicodedata.decimal(char, None) is not None else char
        for char in text
    )


__all__ = ["ascii_digits"]
