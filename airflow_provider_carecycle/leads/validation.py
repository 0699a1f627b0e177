"""Validate and normalise careCycle lead records before ``POST /v2/leads/upload``.

Pure Python (no Airflow, no network). The rules come from the declarative table in
:mod:`airflow_provider_carecycle.leads.fields`; this module holds one normaliser per :class:`FieldKind`.

Leads carry PHI. No message produced here (rejection reasons, :class:`LeadFieldError` texts) ever contains a
field's value: they name the field and say what is wrong with it.

Why one module of this size: one normaliser per :class:`FieldKind`, driven by the table in ``fields.py``; they share
the rejection vocabulary and the PHI-free reason wording, which is what a reviewer checks in one place.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from functools import cache, lru_cache, partial
from typing import Any
from zoneinfo import available_timezones

from airflow_provider_carecycle.leads.fields import (
    AT_LEAST_ONE_OF,
    CUSTOM_FIELD_KEY_MAX_LENGTH,
    DATE_OF_BIRTH_MAX_AGE_YEARS,
    LEAD_FIELDS,
    LEAD_FIELDS_BY_NAME,
    FieldKind,
    FieldSpec,
)
from airflow_provider_carecycle.leads.phone import PhoneError, PhoneRule, default_phone_rule
from airflow_provider_carecycle.leads.rejection import Rejection, RejectionCode
from airflow_provider_carecycle.leads.text import ascii_digits
from airflow_provider_carecycle.records import MalformedRow, lookup_path
from airflow_provider_carecycle.vocabulary import MAX_CUSTOM_FIELDS, TIMEZONE_ABBREVIATIONS


@dataclass(frozen=True)
class ValidationResult:
    """The outcome of :meth:`LeadValidator.validate`.

    :param lead: the normalised careCycle record, or ``None`` when there is any rejection.
    :param rejections: every problem found in the record (empty when the record is valid).
    :param dropped: for a valid record, the problems of the optional fields left out of :attr:`lead` (see
        ``invalid_optional``); each is a warning, not a rejection.
    """

    lead: dict[str, Any] | None
    rejections: list[Rejection] = field(default_factory=list)
    dropped: list[Rejection] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the record is valid and :attr:`lead` is ready to upload."""
        return self.lead is not None and not self.rejections


class LeadFieldError(ValueError):
    """A value broke a lead field rule. The message names the field and the problem, never the value.

    :param field: the field (or item path) at fault.
    :param code: one of :data:`~airflow_provider_carecycle.leads.rejection.REJECTION_CODES`.
    :param detail: what is wrong, without the value.
    """

    def __init__(self, field: str | None, code: str, detail: str) -> None:
        self.field = field
        self.code = code
        self.detail = detail
        super().__init__(f"{field}: {detail}" if field else detail)

    def to_rejection(self) -> Rejection:
        """:return: this error as a :class:`Rejection`."""
        return Rejection(field=self.field, reason=str(self), code=self.code)


class _LeadFieldErrors(ValueError):
    """Several problems in one field (``customFields`` items)."""

    def __init__(self, errors: list[LeadFieldError]) -> None:
        self.errors = errors
        super().__init__("; ".join(str(error) for error in errors))


# --------------------------------------------------------------------------------------------- helpers


def _is_absent(value: Any) -> bool:
    """None, blank text and NaN (a missing cell in pandas) count as absent: the API treats them as null."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    return isinstance(value, float) and math.isnan(value)


_TYPE_NAMES: dict[type, str] = {
    bool: "a boolean",
    int: "an integer",
    float: "a float",
    Decimal: "a decimal",
    str: "text",
    list: "a list",
    tuple: "a tuple",
    dict: "a mapping",
    date: "a date",
    datetime: "a datetime",
}


def _type_name(value: Any) -> str:
    """A human name for the value's type (never the value itself)."""
    return _TYPE_NAMES.get(type(value), f"a {type(value).__name__}")


def _integral(value: Any) -> int | None:
    """``value`` as an int when it is an int or a whole, finite float/Decimal (never a bool), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        return int(value)
    return None


def _format_bound(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


# ----------------------------------------------------------------------------------------------- phone


def _phone(value: Any, name: str = "phoneNumber", rule: PhoneRule | None = None) -> str:
    if _is_absent(value):
        raise LeadFieldError(name, RejectionCode.REQUIRED, "required but missing or empty")
    if isinstance(value, str):
        text = value
    elif (number := _integral(value)) is not None:
        if number < 0:
            raise LeadFieldError(name, RejectionCode.INVALID_FORMAT, "a phone number cannot be negative")
        text = str(number)
    else:
        raise LeadFieldError(name, RejectionCode.INVALID_TYPE, f"expected text or digits, got {_type_name(value)}")
    try:
        return (rule or default_phone_rule()).normalize(text)
    except PhoneError as error:
        raise LeadFieldError(name, error.code, error.detail) from None


def normalize_phone(value: Any, *, rule: PhoneRule | None = None) -> str:
    """Normalise a phone number careCycle may dial to its E.164 form ``+1XXXXXXXXXX``.

    Accepts every form ``phonenumbers`` reads with the US as the default region (``(212) 555-0142``,
    ``212/555-0142``, ``+1 212 555 0142``, ``212-555-0142 x12``: the extension is dropped, ``tel:+1-212-555-0142``),
    Unicode digits (converted to ASCII first) and non-negative ints. See :mod:`~.phone` for what is refused.

    :param value: the phone number.
    :param rule: the regions and number types allowed (default: the US and its territories; fixed-line and mobile).
    :return: the number in E.164 form.
    :raises LeadFieldError: (a ``ValueError``) with a message that never contains a digit of the value.
    """
    return _phone(value, rule=rule)


# -------------------------------------------------------------------------------------------- date of birth

_US_DATE = re.compile(r"^([0-9]{1,2})([-/])([0-9]{1,2})\2([0-9]{4})$")
_ISO_DATE = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})(?:[T ][0-9]{2}:[0-9]{2}.*)?$")


def _parse_date_text(text: str, name: str) -> date:
    text = ascii_digits(text)
    if match := _US_DATE.match(text):
        month, day, year = int(match[1]), int(match[3]), int(match[4])
    elif match := _ISO_DATE.match(text):
        year, month, day = int(match[1]), int(match[2]), int(match[3])
    else:
        raise LeadFieldError(name, RejectionCode.INVALID_FORMAT, "expected MM-DD-YYYY, MM/DD/YYYY or YYYY-MM-DD")
    if not 1 <= month <= 12:
        raise LeadFieldError(name, RejectionCode.INVALID_FORMAT, "not a real date (month is not 01-12)")
    try:
        return date(year, month, day)
    except ValueError:
        raise LeadFieldError(
            name, RejectionCode.INVALID_FORMAT, "not a real date (no such day in that month)"
        ) from None


def _years_before(day: date, years: int) -> date:
    """The same day ``years`` years before ``day`` (29 February: the 28th)."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return day.replace(year=day.year - years, day=28)


def _date_of_birth(value: Any, name: str = "dateOfBirth", today: date | None = None) -> str:
    if _is_absent(value):
        raise LeadFieldError(name, RejectionCode.REQUIRED, "required but missing or empty")
    if isinstance(value, datetime):
        born = value.date()
    elif isinstance(value, date):
        born = value
    elif isinstance(value, str):
        born = _parse_date_text(value.strip(), name)
    else:
        raise LeadFieldError(name, RejectionCode.INVALID_TYPE, f"expected a date or text, got {_type_name(value)}")
    today = today or date.today()
    if born > today:
        raise LeadFieldError(name, RejectionCode.OUT_OF_RANGE, "date is in the future")
    if born < _years_before(today, DATE_OF_BIRTH_MAX_AGE_YEARS):
        raise LeadFieldError(
            name, RejectionCode.OUT_OF_RANGE, f"date is more than {DATE_OF_BIRTH_MAX_AGE_YEARS} years ago"
        )
    return f"{born.month:02d}-{born.day:02d}-{born.year:04d}"


def normalize_date_of_birth(value: Any, *, today: date | None = None) -> str:
    """Normalise a date of birth to careCycle's ``MM-DD-YYYY``.

    Accepts ``MM-DD-YYYY``, ``MM/DD/YYYY`` (one-digit month/day too), ISO ``YYYY-MM-DD`` or the date part of an
    ISO datetime, and ``datetime.date``/``datetime.datetime``; Unicode digits are read as ASCII. Impossible dates,
    dates more than 120 years ago and dates in the future are rejected.

    :param value: the date of birth.
    :param today: the reference date for "in the future" (default: the local date today).
    :return: the date as ``MM-DD-YYYY``.
    :raises LeadFieldError: (a ``ValueError``) with a message that never contains the value.
    """
    return _date_of_birth(value, today=today)


# --------------------------------------------------------------------------------------- field normalisers


_BIDI_CONTROLS = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_BIDI_CONTROL = re.compile(f"[{_BIDI_CONTROLS}]")
"""Unicode's Bidi_Control characters: ALM, LRM/RLM, the embeddings and overrides, the isolates."""
_NOT_PLAIN = re.compile(f"[\\x00-\\x1f\\x7f-\\x9f{_BIDI_CONTROLS}]")
"""What a name must not hold: C0/C1 control characters (NUL, escape, line breaks, ...) and bidi controls."""
_NUL = re.compile("\x00")


def _check_characters(text: str, name: str, plain: bool) -> None:
    """Reject NUL in any text, and control and bidi control characters in ``plain`` text (names).

    The reason names the code point and the rule, never the text around it.
    """
    match = (_NOT_PLAIN if plain else _NUL).search(text)
    if match is None:
        return
    kind = "invisible bidirectional control character" if _BIDI_CONTROL.match(match[0]) else "control character"
    rule = "; names must be plain text" if plain else ""
    raise LeadFieldError(name, RejectionCode.INVALID_FORMAT, f"contains the {kind} U+{ord(match[0]):04X}{rule}")


def _text(value: Any, spec: FieldSpec) -> str:
    if isinstance(value, str):
        text = value.strip()
        _check_characters(text, spec.name, spec.plain_text)
        return text
    if spec.accepts_int and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise LeadFieldError(spec.name, RejectionCode.INVALID_TYPE, f"expected text, got {_type_name(value)}")


def _string(value: Any, spec: FieldSpec) -> str:
    text = _text(value, spec)
    if spec.max_length is not None and len(text) > spec.max_length:
        raise LeadFieldError(
            spec.name,
            RejectionCode.TOO_LONG,
            f"longer than {spec.max_length} characters (has {len(text)})",
        )
    return text


def _email(value: Any, spec: FieldSpec) -> str:
    text = _string(value, spec)
    return _checked_email(text, spec.name)


@lru_cache(maxsize=1)
def _email_validator() -> Callable[..., Any]:
    """``email_validator.validate_email``, imported at the first e-mail (not when a DAG file imports the operators)."""
    from email_validator import validate_email

    return validate_email


def _checked_email(text: str, name: str) -> str:
    """The address as ``email-validator`` normalises it (the domain in lower case), checked for syntax only: no DNS
    lookup, so the same input gives the same answer offline. The library's own message may quote characters of the
    address, so the reason is ours."""
    validate = _email_validator()
    try:
        return str(validate(text, check_deliverability=False).normalized)
    except ValueError:  # email_validator.EmailNotValidError
        raise LeadFieldError(
            name, RejectionCode.INVALID_FORMAT, "not a valid e-mail address (syntax checked by email-validator)"
        ) from None


def _enum_key(text: str) -> str:
    return re.sub(r"[\s_\-]+", "", text).casefold()


@cache
def _enum_lookup(spec: FieldSpec) -> dict[str, str]:
    lookup = {_enum_key(choice): choice for choice in spec.choices}
    lookup.update({_enum_key(alias): canonical for alias, canonical in spec.aliases})
    return lookup


def _enum(value: Any, spec: FieldSpec) -> str:
    if not isinstance(value, str):
        raise LeadFieldError(spec.name, RejectionCode.INVALID_TYPE, f"expected text, got {_type_name(value)}")
    canonical = _enum_lookup(spec).get(_enum_key(value))
    if canonical is None:
        raise LeadFieldError(
            spec.name,
            RejectionCode.NOT_ALLOWED_VALUE,
            f"not an allowed value; expected one of: {', '.join(spec.choices)}",
        )
    return canonical


def _check_range(number: float, spec: FieldSpec) -> None:
    low, high = spec.minimum, spec.maximum
    if (low is None or number >= low) and (high is None or number <= high):
        return
    if high is None:
        detail = "must not be negative" if low == 0 else f"must be at least {_format_bound(low or 0)}"
    elif low is None:
        detail = f"must be at most {_format_bound(high)}"
    else:
        detail = f"outside the allowed range {_format_bound(low)}..{_format_bound(high)}"
    raise LeadFieldError(spec.name, RejectionCode.OUT_OF_RANGE, detail)


_NUMBER_TEXT = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
_INT_TEXT = re.compile(r"^[+-]?(\d+|\d{1,3}(,\d{3})+)(\.0*)?$")


def _int32(value: Any, spec: FieldSpec) -> int:
    number = _integral(value)
    if number is None and isinstance(value, str) and _INT_TEXT.match(value.strip()):
        number = int(value.strip().replace(",", "").split(".")[0])
    if number is None:
        raise LeadFieldError(
            spec.name, RejectionCode.INVALID_TYPE, f"expected a whole number, got {_describe_number(value)}"
        )
    _check_range(number, spec)
    return number


def _describe_number(value: Any) -> str:
    if isinstance(value, (float, Decimal)) and not math.isfinite(value):
        return "a non-finite number"
    if isinstance(value, (float, Decimal)) or (isinstance(value, str) and _NUMBER_TEXT.match(value.strip())):
        return "a fractional number"
    return "text that is not a number" if isinstance(value, str) else _type_name(value)


def _number(value: Any, spec: FieldSpec) -> int | float:
    number: int | float | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, (float, Decimal)) and math.isfinite(value):
        number = float(value)
    elif isinstance(value, str) and _NUMBER_TEXT.match(value.strip()):
        number = float(value.strip())
    if number is None:
        detail = f"expected a number, got {_describe_number(value)}"
        raise LeadFieldError(spec.name, RejectionCode.INVALID_TYPE, detail)
    _check_range(number, spec)
    return int(number) if isinstance(number, float) and number.is_integer() else number


_TRUE_TEXT = frozenset({"true", "yes", "y", "1"})
_FALSE_TEXT = frozenset({"false", "no", "n", "0"})


def _bool(value: Any, spec: FieldSpec) -> bool:
    if isinstance(value, bool):
        return value
    if _integral(value) in (0, 1) and not isinstance(value, str):
        return bool(value)
    if isinstance(value, str) and value.strip().casefold() in _TRUE_TEXT | _FALSE_TEXT:
        return value.strip().casefold() in _TRUE_TEXT
    raise LeadFieldError(
        spec.name,
        RejectionCode.INVALID_TYPE,
        f"expected a boolean (true/false, yes/no, y/n or 1/0), got {_describe_bool(value)}",
    )


def _describe_bool(value: Any) -> str:
    if isinstance(value, str):
        return "other text"
    return "another number" if isinstance(value, (int, float, Decimal)) else _type_name(value)


_ZIP5 = re.compile(r"^[0-9]{5}$")
_ZIP9 = re.compile(r"^([0-9]{5})-?[0-9]{4}$")
#: no ZIP code starts with these three digits (the lowest in use is 005, Holtsville NY's IRS codes)
_NO_ZIP_PREFIXES = frozenset({"000", "001", "002", "003", "004"})


def _postal(value: Any, spec: FieldSpec) -> str:
    if isinstance(value, str):
        text = ascii_digits(value.strip())
        if _ZIP5.match(text):
            return _assigned_zip(text, spec)
        if match := _ZIP9.match(text):
            return _assigned_zip(match[1], spec)
        raise LeadFieldError(
            spec.name,
            RejectionCode.INVALID_FORMAT,
            "expected a 5-digit ZIP code or ZIP+4 (text is not zero-padded: give all 5 digits)",
        )
    number = _integral(value)
    if number is None:
        raise LeadFieldError(spec.name, RejectionCode.INVALID_TYPE, f"expected text, got {_type_name(value)}")
    if 100 <= number <= 99_999:  # an int lost its leading zeros (e.g. a 4-digit New England ZIP)
        return _assigned_zip(f"{number:05d}", spec)
    if 10_000_000 <= number <= 999_999_999:  # ZIP+4 as an int
        return _assigned_zip(f"{number:09d}"[:5], spec)
    raise LeadFieldError(spec.name, RejectionCode.INVALID_FORMAT, "number is not a 5-digit ZIP code or ZIP+4")


def _assigned_zip(zip5: str, spec: FieldSpec) -> str:
    if zip5[:3] in _NO_ZIP_PREFIXES:
        raise LeadFieldError(
            spec.name, RejectionCode.INVALID_POSTAL_CODE, "not a ZIP code in use (all zeros, or a prefix no ZIP has)"
        )
    return zip5


_TIMEZONE_PATTERN = re.compile(r"^[A-Za-z_]+(/[A-Za-z0-9_+\-]+)+$")


@lru_cache(maxsize=1)
def _iana_timezones() -> dict[str, str]:
    """Lower-cased IANA name -> canonical name; empty when the machine has no tz database."""
    try:
        names = available_timezones()
    except Exception:  # pragma: no cover - a broken tz install; fall back to the pattern
        names = set()
    return {name.casefold(): name for name in names}


def _timezone(value: Any, spec: FieldSpec) -> str:
    if not isinstance(value, str):
        raise LeadFieldError(spec.name, RejectionCode.INVALID_TYPE, f"expected text, got {_type_name(value)}")
    text = value.strip()
    if text.upper() in TIMEZONE_ABBREVIATIONS:
        return text.upper()
    known = _iana_timezones()
    if known and text.casefold() in known:
        return known[text.casefold()]
    if not known and _TIMEZONE_PATTERN.match(text):
        return text
    raise LeadFieldError(
        spec.name,
        RejectionCode.NOT_ALLOWED_VALUE,
        f"not an IANA time zone (e.g. America/New_York) or one of {', '.join(TIMEZONE_ABBREVIATIONS)}",
    )


def _date_field(value: Any, spec: FieldSpec) -> str:
    return _date_of_birth(value, spec.name)


def _phone_field(value: Any, spec: FieldSpec, rule: PhoneRule | None = None) -> str:
    return _phone(value, spec.name, rule)


# ------------------------------------------------------------------------------------------ custom fields

_CUSTOM_ITEM_KEYS = frozenset({"fieldKey", "key", "value"})


def _custom_value(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, str):
        _check_characters(value, where, plain=False)
        return value.strip()
    if isinstance(value, (float, Decimal)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        return [item.strip() for item in value]
    raise LeadFieldError(
        where,
        RejectionCode.INVALID_TYPE,
        f"expected text, a number, a boolean, a list of text or null, got {_describe_custom(value)}",
    )


def _describe_custom(value: Any) -> str:
    return "a list with non-text items" if isinstance(value, (list, tuple)) else _type_name(value)


def _custom_key(item: Mapping[Any, Any], where: str) -> str:
    if set(item) - _CUSTOM_ITEM_KEYS or ("fieldKey" in item and "key" in item):
        raise LeadFieldError(where, RejectionCode.INVALID_FORMAT, "only fieldKey and value are allowed")
    key = item.get("fieldKey", item.get("key"))
    name = f"{where}.fieldKey"
    if not isinstance(key, str):
        code = RejectionCode.REQUIRED if key is None else RejectionCode.INVALID_TYPE
        detail = "required but missing" if key is None else f"expected text, got {_type_name(key)}"
        raise LeadFieldError(name, code, detail)
    key = key.strip()
    if not key:
        raise LeadFieldError(name, RejectionCode.REQUIRED, "required but empty")
    if len(key) > CUSTOM_FIELD_KEY_MAX_LENGTH:
        raise LeadFieldError(
            name, RejectionCode.TOO_LONG, f"longer than {CUSTOM_FIELD_KEY_MAX_LENGTH} characters (has {len(key)})"
        )
    return key


def _custom_item(item: Any, index: int, seen: dict[str, int]) -> dict[str, Any]:
    where = f"customFields[{index}]"
    if not isinstance(item, Mapping):
        raise LeadFieldError(
            where, RejectionCode.INVALID_TYPE, f"expected an object with fieldKey and value, got {_type_name(item)}"
        )
    key = _custom_key(item, where)
    if key in seen:
        raise LeadFieldError(
            f"{where}.fieldKey", RejectionCode.INVALID_FORMAT, f"duplicate fieldKey (also at index {seen[key]})"
        )
    seen[key] = index
    return {"fieldKey": key, "value": _custom_value(item.get("value"), f"{where}.value")}


def _custom_fields(value: Any, spec: FieldSpec) -> list[dict[str, Any]]:
    if isinstance(value, Mapping):
        items: list[Any] = [{"fieldKey": key, "value": item} for key, item in value.items()]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise LeadFieldError(
            spec.name,
            RejectionCode.INVALID_TYPE,
            f"expected a list of {{fieldKey, value}} objects or a {{key: value}} mapping, got {_type_name(value)}",
        )
    errors: list[LeadFieldError] = []
    if len(items) > MAX_CUSTOM_FIELDS:
        errors.append(
            LeadFieldError(
                spec.name, RejectionCode.TOO_MANY, f"{len(items)} entries, at most {MAX_CUSTOM_FIELDS} allowed"
            )
        )
    result: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        try:
            result.append(_custom_item(item, index, seen))
        except LeadFieldError as error:
            errors.append(error)
    if errors:
        raise _LeadFieldErrors(errors)
    return result


Normalizer = Callable[[Any, FieldSpec], Any]

_NORMALIZERS: dict[FieldKind, Normalizer] = {
    FieldKind.STRING: _string,
    FieldKind.EMAIL: _email,
    FieldKind.ENUM: _enum,
    FieldKind.INT32: _int32,
    FieldKind.NUMBER: _number,
    FieldKind.BOOL: _bool,
    FieldKind.DATE: _date_field,
    FieldKind.PHONE: _phone_field,
    FieldKind.POSTAL: _postal,
    FieldKind.TIMEZONE: _timezone,
    FieldKind.CUSTOM_FIELDS: _custom_fields,
}


def normalize_field(name: str, value: Any) -> Any:
    """Normalise one present value of careCycle lead field ``name``.

    :param name: the careCycle field name (see :data:`~airflow_provider_carecycle.leads.fields.LEAD_FIELDS`).
    :param value: the raw value; must not be absent (None/blank).
    :return: the value in the form sent to careCycle.
    :raises KeyError: when ``name`` is not a careCycle lead field.
    :raises ValueError: (a :class:`LeadFieldError` for one problem) with a PHI-free message.
    """
    spec = LEAD_FIELDS_BY_NAME[name]
    return _NORMALIZERS[spec.kind](value, spec)


# ---------------------------------------------------------------------------------------------- validator


def check_field_names(names: Mapping[str, Any], argument: str) -> None:
    """Raise ``ValueError`` naming ``argument`` and every key of ``names`` that is not a careCycle lead field.

    :param names: a mapping keyed by careCycle lead fields (a field mapping, defaults).
    :param argument: the argument's name, for the message.
    """
    unknown = sorted(str(name) for name in names if name not in LEAD_FIELDS_BY_NAME)
    if unknown:
        raise ValueError(
            f"{argument}: not careCycle lead fields: {', '.join(unknown)}. "
            f"Valid fields: {', '.join(LEAD_FIELDS_BY_NAME)}."
        )


def check_field_mapping(field_mapping: Mapping[str, Any], argument: str) -> None:
    """Raise ``ValueError`` for a field mapping keyed by something other than careCycle lead fields, or with a path
    that is not non-empty dotted text; the message names ``argument`` and the bad key, never a path.

    :param field_mapping: careCycle field -> source key or dotted path.
    :param argument: the argument's name, for the message.
    """
    check_field_names(field_mapping, argument)
    for target, path in field_mapping.items():
        if not isinstance(path, str) or not path or "" in path.split("."):
            kind = "text with an empty part" if isinstance(path, str) else f"a {type(path).__name__}"
            raise ValueError(f"{argument}[{target!r}]: the source path must be non-empty dotted text, got {kind}.")


#: how :meth:`LeadValidator.identity` starts for a lead with an ``externalId`` (the rest is the ``externalId``)
EXTERNAL_ID_IDENTITY = "ext:"
#: ``invalid_optional`` values: leave an invalid optional field out and send the lead, or reject the lead
INVALID_OPTIONAL_DROP = "drop"
INVALID_OPTIONAL_REJECT = "reject"
INVALID_OPTIONAL_CHOICES = (INVALID_OPTIONAL_DROP, INVALID_OPTIONAL_REJECT)
#: the fields ``invalid_optional`` applies to (``droppable`` in the field table)
DROPPABLE_FIELDS: tuple[str, ...] = tuple(spec.name for spec in LEAD_FIELDS if spec.droppable)


def check_invalid_optional(value: Any) -> str:
    """A rendered ``invalid_optional``: ``"drop"`` or ``"reject"``.

    :raises ValueError: naming the argument.
    """
    if value not in INVALID_OPTIONAL_CHOICES:
        raise ValueError(f"invalid_optional must be 'drop' or 'reject', got {value!r}.")
    return str(value)


#: how it starts for a lead identified by its phone number (the rest is the number in E.164 form, ``+1XXXXXXXXXX``)
PHONE_IDENTITY = "phone:"


class LeadValidator:
    """Map, validate and normalise source records into careCycle lead records.

    :param field_mapping: careCycle field -> source key or dotted path into nested mappings (``"address.zip"``).
        A literal key equal to the whole path wins over the dotted walk. Unmapped careCycle fields are taken
        from source keys with the same name (identity mapping), unless that key is the source of a mapping.
        When a careCycle field is mapped, a same-named source key is ignored (the mapping wins).
    :param defaults: careCycle field -> value used when the mapped record lacks the field or it is absent
        (None, blank text, NaN). Defaults are validated once, here.
    :param drop_unknown_fields: silently drop top-level source keys that are neither mapped nor careCycle
        fields, instead of rejecting the record with ``unknown_field``.
    :param phone_rule: the regions and number types a phone number may have (default
        :func:`~airflow_provider_carecycle.leads.phone.default_phone_rule`: the US and its territories; fixed-line,
        mobile, fixed-line-or-mobile).
    :param invalid_optional: what an invalid value of an optional field of :data:`DROPPABLE_FIELDS` (``email``,
        ``dateOfBirth``, ``gender``, ``maritalStatus``) does: ``"drop"`` (default) leaves the field out and the lead
        valid, with the problem in :attr:`ValidationResult.dropped`, so a bad e-mail does not cost the call;
        ``"reject"`` rejects the lead as any other problem does.
    :raises ValueError: when ``field_mapping`` or ``defaults`` name unknown careCycle fields, a mapping path is
        empty, or a default breaks its field's rule.
    """

    def __init__(
        self,
        field_mapping: Mapping[str, str] | None = None,
        defaults: Mapping[str, Any] | None = None,
        drop_unknown_fields: bool = False,
        phone_rule: PhoneRule | None = None,
        invalid_optional: str = INVALID_OPTIONAL_DROP,
    ) -> None:
        self.field_mapping: dict[str, str] = dict(field_mapping or {})
        self.invalid_optional = check_invalid_optional(invalid_optional)
        self.phone_rule = phone_rule or default_phone_rule()
        self._normalizers: dict[FieldKind, Normalizer] = {
            **_NORMALIZERS,
            FieldKind.PHONE: partial(_phone_field, rule=self.phone_rule),
        }
        self.defaults: dict[str, Any] = dict(defaults or {})
        self.drop_unknown_fields = drop_unknown_fields
        check_field_mapping(self.field_mapping, "field_mapping")
        check_field_names(self.defaults, "defaults")
        self._sources = frozenset(self.field_mapping.values()) | {
            path.split(".", 1)[0] for path in self.field_mapping.values()
        }
        for name, value in self.defaults.items():
            if not _is_absent(value):
                self._normalize_one(LEAD_FIELDS_BY_NAME[name], value, raise_errors=True)
        #: careCycle fields taken from a same-named source key: neither mapped nor the source of a mapping
        self._direct = frozenset(
            spec.name for spec in LEAD_FIELDS if spec.name not in self.field_mapping and spec.name not in self._sources
        )
        self._present_defaults = {name: value for name, value in self.defaults.items() if not _is_absent(value)}

    def validate(self, record: Mapping[str, Any]) -> ValidationResult:
        """Validate one source record and build the careCycle lead.

        :param record: the source record (e.g. a CSV row or a CRM customer as a dict).
        :return: the normalised lead, or ``lead=None`` with every rejection found.
        """
        if not isinstance(record, Mapping):
            rejection = Rejection(
                None, f"record: expected a mapping, got {_type_name(record)}", RejectionCode.INVALID_TYPE
            )
            return ValidationResult(lead=None, rejections=[rejection])
        if isinstance(record, MalformedRow):  # a file row the reader could not turn into a record, values kept
            rejection = Rejection(None, f"record: {record.problem}", RejectionCode.INVALID_FORMAT)
            return ValidationResult(lead=None, rejections=[rejection])
        rejections = [] if self.drop_unknown_fields else self._unknown_fields(record)
        lead, field_rejections, dropped = self._normalize(self._extract(record))
        rejections.extend(field_rejections)
        if len(rejections) == len(dropped):  # nothing but droppable problems: the lead goes without those fields
            return ValidationResult(lead=lead, dropped=dropped)
        return ValidationResult(lead=None, rejections=rejections)

    def identity(self, lead: Mapping[str, Any]) -> str:
        """The dedupe key of a lead: ``"ext:<externalId>"`` when it has one, else ``"phone:<E.164 number>"``, so every
        written form of one number is one lead.

        The key contains identifiers (PHI): use it for deduplication, do not log it.

        :param lead: a lead (normalised or not) with an ``externalId`` or a ``phoneNumber``.
        :return: the dedupe key.
        :raises ValueError: when the lead has neither, or its phone number is invalid.
        """
        external_id = lead.get("externalId")
        if not _is_absent(external_id):
            return f"{EXTERNAL_ID_IDENTITY}{str(external_id).strip()}"
        phone = lead.get("phoneNumber")
        if _is_absent(phone):
            raise ValueError("lead has neither externalId nor phoneNumber: no identity")
        return f"{PHONE_IDENTITY}{normalize_phone(phone, rule=self.phone_rule)}"

    def _unknown_fields(self, record: Mapping[Any, Any]) -> list[Rejection]:
        return [
            Rejection(
                field=str(key),
                reason=f"{key}: not a careCycle lead field and not mapped "
                "(map it in field_mapping or set drop_unknown_fields=True)",
                code=RejectionCode.UNKNOWN_FIELD,
            )
            for key in record
            if key not in LEAD_FIELDS_BY_NAME and key not in self._sources
        ]

    def _extract(self, record: Mapping[Any, Any]) -> dict[str, Any]:
        """Each careCycle field's raw value: mapped path, else same-named source key, else default; absent dropped.

        Visits the record's own keys rather than every careCycle field: a record has a few of them.
        """
        values: dict[str, Any] = {}
        for name, path in self.field_mapping.items():
            value = lookup_path(record, path)
            if not _is_absent(value):
                values[name] = value
        direct = self._direct
        for key, value in record.items():
            if key in direct and not _is_absent(value):
                values[key] = value
        for name, value in self._present_defaults.items():
            if name not in values:
                values[name] = value
        return values

    def _normalize(self, values: Mapping[str, Any]) -> tuple[dict[str, Any], list[Rejection], list[Rejection]]:
        """The lead, every rejection in table order, and those of them that only drop their field."""
        lead: dict[str, Any] = {}
        rejections: list[Rejection] = []
        dropped: list[Rejection] = []
        drop = self.invalid_optional == INVALID_OPTIONAL_DROP
        for spec in LEAD_FIELDS:
            if spec.name not in values:
                if spec.required:
                    detail = "required but missing or empty"
                    rejections.append(LeadFieldError(spec.name, RejectionCode.REQUIRED, detail).to_rejection())
                continue
            normalized, errors = self._normalize_one(spec, values[spec.name])
            found = [error.to_rejection() for error in errors]
            rejections.extend(found)
            if drop and spec.droppable:
                dropped.extend(found)
            if not errors and normalized != []:
                lead[spec.name] = normalized
        for group in AT_LEAST_ONE_OF:
            if not any(name in values for name in group.fields):
                error = LeadFieldError(group.label, RejectionCode.REQUIRED, group.reason)
                rejections.append(error.to_rejection())
        return lead, rejections, dropped

    def _normalize_one(
        self, spec: FieldSpec, value: Any, raise_errors: bool = False
    ) -> tuple[Any, list[LeadFieldError]]:
        try:
            return self._normalizers[spec.kind](value, spec), []
        except LeadFieldError as error:
            errors = [error]
        except _LeadFieldErrors as many:
            errors = many.errors
        if raise_errors:
            raise ValueError("defaults: " + "; ".join(str(error) for error in errors))
        return None, errors
