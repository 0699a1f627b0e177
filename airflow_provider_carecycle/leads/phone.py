"""A lead's phone number: parsed with Google's numbering-plan metadata (``phonenumbers``), checked, sent as E.164.

careCycle turns every lead into an outbound call, so the number is the lead. :class:`PhoneRule` says which numbers
may be dialled: the text is turned into ASCII digits first (:func:`~.text.ascii_digits`), parsed by ``phonenumbers``
with the US as the default region (every common written form, ``tel:`` URIs; an extension is dropped from the
number dialled), and then must be

1. a number at all (``invalid_format``),
2. valid in the metadata: an assigned area code and exchange, the right length (``invalid_phone_number``: ``(911)``
   or ``(555)`` as an area code, nine digits),
3. in an allowed region (``region_not_allowed``: by default the US and the territories that share +1, so a Canadian
   or Caribbean number is refused with ``region CA is not allowed``),
4. of an allowed number type (``number_type_not_allowed``: by default fixed-line, mobile, fixed-line-or-mobile; a
   toll-free, premium-rate, shared-cost, pager, voicemail, personal (5XX), VoIP or UAN number is not a prospect).

The number sent, the deduplication identity and the sync ledger's hash all use the E.164 form (``+1XXXXXXXXXX``), so
every written form of one number is one lead. Reasons name the rule and, for a refused region or type, the region
code or the type; never a digit of the number.

Parsing is the costly step: its outcome is cached by the written form (the same number written the same way is
parsed once per process); the region and type checks run on the cached outcome. ``phonenumbers`` is imported at
the first number, not with this module (DAG files that import the operators do not pay for it). Pure Python.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from airflow_provider_carecycle.leads.rejection import RejectionCode
from airflow_provider_carecycle.leads.text import ascii_digits

#: the region a number without a country code is read in
DEFAULT_REGION = "US"
#: the regions dialled by default: the US and its territories that share its +1 country code
DEFAULT_ALLOWED_REGIONS: tuple[str, ...] = ("US", "PR", "VI", "GU", "AS", "MP")
#: the number types dialled by default
DEFAULT_ALLOWED_NUMBER_TYPES: tuple[str, ...] = ("fixed_line", "mobile", "fixed_line_or_mobile")
#: careCycle dials +1 numbers only (its ``phoneNumber`` is ``+1XXXXXXXXXX``), so only these regions can be allowed
CARECYCLE_COUNTRY_CODE = 1

_TYPE_WORDS = {
    "fixed_line": "a fixed-line",
    "mobile": "a mobile",
    "fixed_line_or_mobile": "a fixed-line or mobile",
    "toll_free": "a toll-free",
    "premium_rate": "a premium-rate",
    "shared_cost": "a shared-cost",
    "voip": "a VoIP",
    "personal_number": "a personal (follow-me)",
    "pager": "a pager",
    "uan": "a universal access (UAN)",
    "voicemail": "a voicemail-only",
}
NUMBER_TYPES: tuple[str, ...] = tuple(_TYPE_WORDS)
"""The ``allowed_number_types`` names: ``phonenumbers.PhoneNumberType``'s names in lower case."""

#: a NANP number written the plainest ways (``2125550142``, ``(212) 555-0142``, ``+1 212.555.0142``, ...) when the
#: default region is the US: its area code, exchange and line, read without ``phonenumbers.parse`` (half the cost)
_PLAIN_NANP = re.compile(r"^(?:\+?1[ .\-]?)?\(?([2-9][0-9]{2})\)?[ .\-]?([0-9]{3})[ .\-]?([0-9]{4})$")

#: how many written forms the parse cache keeps (a feed repeats a number in consecutive runs and duplicate rows)
PARSE_CACHE_SIZE = 65_536
#: the longest written form the cache keeps (a number with its extension and a ``tel:`` prefix fits easily)
CACHED_TEXT_LENGTH = 64

_LENGTH_DETAILS = {  # phonenumbers.ValidationResult's names
    "TOO_SHORT": "too short for a phone number of its country",
    "TOO_LONG": "too long for a phone number of its country",
    "INVALID_LENGTH": "not a valid length for a phone number of its country",
    "INVALID_COUNTRY_CODE": "unknown country calling code",
}
_PARSE_DETAILS = {  # phonenumbers.NumberParseException's error types
    "INVALID_COUNTRY_CODE": "unknown country calling code",
    "TOO_SHORT_AFTER_IDD": "too short after the international prefix",
    "TOO_SHORT_NSN": "too short for a phone number",
    "TOO_LONG": "too long for a phone number",
}


@lru_cache(maxsize=1)
def _library() -> tuple[Any, dict[int, str], dict[int, str], dict[int, str]]:
    """``phonenumbers``, imported at first use, with its type, length and parse-error codes mapped to our names."""
    import phonenumbers

    types = {getattr(phonenumbers.PhoneNumberType, name.upper()): name for name in NUMBER_TYPES}
    lengths = {getattr(phonenumbers.ValidationResult, key): text for key, text in _LENGTH_DETAILS.items()}
    errors = {getattr(phonenumbers.NumberParseException, key): text for key, text in _PARSE_DETAILS.items()}
    return phonenumbers, types, lengths, errors


class PhoneError(ValueError):
    """A number that may not be dialled: ``code`` (a rejection code) and ``detail`` (PHI-free)."""

    def __init__(self, code: str, detail: str) -> None:
        self.code = code
        self.detail = detail
        super().__init__(detail)


@dataclass(frozen=True)
class ParsedPhone:
    """A number valid in the metadata: its E.164 form, region code and type name (see :data:`NUMBER_TYPES`)."""

    e164: str
    region: str
    number_type: str


def parse_phone(text: str, default_region: str = DEFAULT_REGION) -> ParsedPhone | PhoneError:
    """Parse one written number; cached by ``(text, default_region)`` when the text is at most
    :data:`CACHED_TEXT_LENGTH` characters (a hostile file of long values must not fill memory through the cache).

    :param text: the number as written (Unicode digits allowed; an extension and a ``tel:`` prefix are fine).
    :param default_region: the region of a number written without a country code.
    :return: the parsed number, or the :class:`PhoneError` it fails with (returned, so it is cached too).
    """
    if len(text) <= CACHED_TEXT_LENGTH:
        return _cached_parse(text, default_region)
    return _parse(text, default_region)


def _parse(text: str, default_region: str) -> ParsedPhone | PhoneError:
    lib, types, lengths, errors = _library()
    text = ascii_digits(text.strip())
    plain = _PLAIN_NANP.match(text) if default_region == DEFAULT_REGION else None
    if plain:  # the forms most CRMs export: what parse() would make of them, without its cost
        number = lib.PhoneNumber(country_code=CARECYCLE_COUNTRY_CODE, national_number=int("".join(plain.groups())))
    else:
        try:
            number = lib.parse(text, default_region)
        except lib.NumberParseException as error:
            detail = errors.get(error.error_type)
            if detail is None:
                return PhoneError(RejectionCode.INVALID_FORMAT, "not a phone number")
            return PhoneError(RejectionCode.INVALID_PHONE_NUMBER, detail)
    region = lib.region_code_for_number(number)
    number_type = lib.number_type(number)  # UNKNOWN exactly when the number is not valid (is_valid_number's test)
    if region is None or number_type == lib.PhoneNumberType.UNKNOWN:
        possible = lib.is_possible_number_with_reason(number)
        if possible in lengths:
            return PhoneError(RejectionCode.INVALID_PHONE_NUMBER, lengths[possible])
        return PhoneError(
            RejectionCode.INVALID_PHONE_NUMBER,
            "not a valid number in the numbering plan (unassigned or reserved area code or exchange, or wrong length)",
        )
    number.extension = None  # the number dialled; the extension is not kept anywhere
    return ParsedPhone(lib.format_number(number, lib.PhoneNumberFormat.E164), region, types.get(number_type, "unknown"))


_cached_parse = lru_cache(maxsize=PARSE_CACHE_SIZE)(_parse)


def _names(value: str | Iterable[str], argument: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.split(",")
    elif not isinstance(value, Iterable):
        raise ValueError(f"{argument} must be a list of names or comma-separated text, got {type(value).__name__}.")
    names = []
    for item in value:
        if not isinstance(item, str):
            raise ValueError(f"{argument} must hold text, got {type(item).__name__}.")
        if item.strip():
            names.append(item.strip())
    if not names:
        raise ValueError(f"{argument} must name at least one value.")
    return tuple(dict.fromkeys(names))


def check_allowed_regions(value: str | Iterable[str]) -> tuple[str, ...]:
    """A rendered ``allowed_regions``: region codes (``["US", "PR"]`` or ``"US,PR"``), each one that shares +1.

    :raises ValueError: naming the unknown codes, or the ones careCycle cannot dial (another country code).
    """
    lib = _library()[0]
    regions = tuple(name.upper() for name in _names(value, "allowed_regions"))
    unknown = [region for region in regions if region not in lib.SUPPORTED_REGIONS]
    if unknown:
        raise ValueError(f"allowed_regions: not region codes (ISO 3166-1 alpha-2): {', '.join(unknown)}.")
    foreign = [r for r in regions if lib.country_code_for_region(r) != CARECYCLE_COUNTRY_CODE]
    if foreign:
        raise ValueError(
            f"allowed_regions: careCycle dials +1 numbers only; {', '.join(foreign)} do not share +1 "
            "(allowed: the US, its territories, Canada and the Caribbean's +1 regions)."
        )
    return regions


def check_allowed_number_types(value: str | Iterable[str]) -> tuple[str, ...]:
    """A rendered ``allowed_number_types``: names of :data:`NUMBER_TYPES`.

    :raises ValueError: naming the unknown ones and listing the known.
    """
    types = tuple(name.lower() for name in _names(value, "allowed_number_types"))
    unknown = [name for name in types if name not in NUMBER_TYPES]
    if unknown:
        raise ValueError(
            f"allowed_number_types: unknown number types {', '.join(unknown)}; choose from {', '.join(NUMBER_TYPES)}."
        )
    return types


@dataclass(frozen=True)
class PhoneRule:
    """Which numbers may be dialled.

    :param allowed_regions: region codes a number may belong to (checked by :func:`check_allowed_regions`).
    :param allowed_number_types: the types a number may have (names of :data:`NUMBER_TYPES`).
    :param default_region: the region of a number written without a country code.
    """

    allowed_regions: tuple[str, ...] = DEFAULT_ALLOWED_REGIONS
    allowed_number_types: tuple[str, ...] = DEFAULT_ALLOWED_NUMBER_TYPES
    default_region: str = DEFAULT_REGION

    def __post_init__(self) -> None:
        object.__setattr__(self, "allowed_regions", check_allowed_regions(self.allowed_regions))
        object.__setattr__(self, "allowed_number_types", check_allowed_number_types(self.allowed_number_types))

    def normalize(self, text: str) -> str:
        """The E.164 form of a dialable number.

        :param text: the number as written.
        :raises PhoneError: with the rejection code and a reason that names no digit.
        """
        parsed = parse_phone(text, self.default_region)
        if isinstance(parsed, PhoneError):
            raise parsed
        if parsed.region not in self.allowed_regions:
            raise PhoneError(
                RejectionCode.REGION_NOT_ALLOWED,
                f"region {parsed.region} is not allowed (allowed_regions: {', '.join(self.allowed_regions)})",
            )
        if parsed.number_type not in self.allowed_number_types:
            raise PhoneError(
                RejectionCode.NUMBER_TYPE_NOT_ALLOWED,
                f"{_TYPE_WORDS.get(parsed.number_type, 'an unknown')} number is not dialled "
                f"(allowed_number_types: {', '.join(self.allowed_number_types)})",
            )
        return parsed.e164


@lru_cache(maxsize=1)
def default_phone_rule() -> PhoneRule:
    """The rule of :func:`~.validation.normalize_phone` and of a validator built without one (made at first use: a
    rule checks its regions against the metadata, which imports ``phonenumbers``)."""
    return PhoneRule()


__all__ = [
    "DEFAULT_ALLOWED_NUMBER_TYPES",
    "DEFAULT_ALLOWED_REGIONS",
    "NUMBER_TYPES",
    "ParsedPhone",
    "PhoneError",
    "PhoneRule",
    "check_allowed_number_types",
    "check_allowed_regions",
    "default_phone_rule",
    "parse_phone",
]
