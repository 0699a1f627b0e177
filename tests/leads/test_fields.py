"""ZIP codes, e-mails and dates of birth (issue 23), and the policy for invalid optional fields (``invalid_optional``).

The rules' other cases are in ``test_validation.py``; the phone's in ``test_phone.py``.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from airflow_provider_carecycle.leads import LeadValidator, normalize_date_of_birth, normalize_field
from airflow_provider_carecycle.leads.validation import DROPPABLE_FIELDS, LeadFieldError

BASE: dict[str, Any] = {"phoneNumber": "2125550142", "timezone": "EST"}

ZIP_TABLE: list[tuple[Any, str | None, str | None]] = [
    # (written, ZIP sent, or the rejection code)
    ("10001", "10001", None),
    (" 10001 ", "10001", None),
    ("10001-1234", "10001", None),  # ZIP+4: its first five
    ("100011234", "10001", None),
    ("\uff11\uff10\uff10\uff10\uff11", "10001", None),  # full-width
    ("\uff11\uff10\uff10\uff10\uff11-\uff11\uff12\uff13\uff14", "10001", None),
    ("\u0661\u0660\u0660\u0660\u0661", "10001", None),  # Arabic-Indic
    ("00501", "00501", None),  # the lowest ZIP in use (Holtsville NY)
    ("00601", "00601", None),  # Puerto Rico
    ("99950", "99950", None),  # Ketchikan AK
    (2134, "02134", None),  # an int that lost its leading zero
    (100011234, "10001", None),
    ("00000", None, "invalid_postal_code"),
    ("00000-0000", None, "invalid_postal_code"),
    ("00123", None, "invalid_postal_code"),
    ("00499", None, "invalid_postal_code"),
    (100, None, "invalid_postal_code"),
    ("1234", None, "invalid_format"),
    ("123456", None, "invalid_format"),
    ("1000I", None, "invalid_format"),
    ("10001-12", None, "invalid_format"),
    ("SW1A 1AA", None, "invalid_format"),
    ("\u00b9\u00b2\u00b3\u2074\u2075", None, "invalid_format"),  # superscripts are not decimal digits
    (12, None, "invalid_format"),
]


@pytest.mark.parametrize(("written", "sent", "code"), ZIP_TABLE)
def test_zip_codes(written: Any, sent: str | None, code: str | None) -> None:
    result = LeadValidator().validate({**BASE, "postalCode": written})
    if code is None:
        assert result.ok and result.lead is not None and result.lead["postalCode"] == sent
        assert result.lead["postalCode"].isascii()
        return
    [rejection] = result.rejections
    assert (rejection.field, rejection.code) == ("postalCode", code)
    assert str(written) not in rejection.reason


EMAIL_TABLE: list[tuple[str, str | None]] = [
    # (written, e-mail sent or None for invalid)
    ("jane@example.com", "jane@example.com"),
    ("Jane.Doe@Example.COM", "Jane.Doe@example.com"),  # the domain in lower case
    ("  jane@example.com ", "jane@example.com"),
    ("jane+crm@mail.example.org", "jane+crm@mail.example.org"),
    ("o'brien@example.ie", "o'brien@example.ie"),
    ("jos\u00e9@ex\u00e4mple.com", "jos\u00e9@ex\u00e4mple.com"),  # internationalised
    ("a..b@x.com", None),
    ("jane,doe@x.com", None),
    (".jane@x.com", None),
    ("jane.@x.com", None),
    ("jane doe@x.com", None),
    ("jane@x..com", None),
    ("jane@x", None),
    ("jane@localhost", None),
    ("jane@mail.test", None),  # special-use domain
    ("jane@@x.com", None),
    ("jane@", None),
    ("@x.com", None),
    ("jane", None),
    ("jane@-x.com", None),
]


@pytest.mark.parametrize(("written", "sent"), EMAIL_TABLE)
def test_emails(written: str, sent: str | None) -> None:
    if sent is not None:
        assert normalize_field("email", written) == sent
        return
    with pytest.raises(LeadFieldError) as caught:
        normalize_field("email", written)
    assert (caught.value.field, caught.value.code) == ("email", "invalid_format")
    assert str(caught.value) == "email: not a valid e-mail address (syntax checked by email-validator)"


TODAY = date(2026, 3, 15)
DOB_TABLE: list[tuple[Any, str | None]] = [
    ("03-15-1950", "03-15-1950"),
    ("3/5/1950", "03-05-1950"),
    ("1950-03-15", "03-15-1950"),
    ("1950-03-15T00:00:00", "03-15-1950"),
    (date(1950, 3, 15), "03-15-1950"),
    ("\u0660\u0663-\u0661\u0665-\u0661\u0669\u0665\u0660", "03-15-1950"),  # Arabic-Indic digits
    ("03-15-2026", "03-15-2026"),  # born today
    ("03-15-1906", "03-15-1906"),  # 120 years ago to the day
    ("03-14-1906", None),  # a day more
    ("01-01-1899", None),
    ("03-16-2026", None),  # tomorrow
    ("01-01-2999", None),
    ("02-30-1950", None),
    ("13-01-1950", None),
    ("1950/03/15", None),
]


@pytest.mark.parametrize(("written", "sent"), DOB_TABLE)
def test_dates_of_birth(written: Any, sent: str | None) -> None:
    if sent is not None:
        assert normalize_date_of_birth(written, today=TODAY) == sent
        return
    with pytest.raises(LeadFieldError) as caught:
        normalize_date_of_birth(written, today=TODAY)
    assert caught.value.code in ("out_of_range", "invalid_format")


def test_a_date_of_birth_too_long_ago_says_so() -> None:
    with pytest.raises(LeadFieldError, match=r"^dateOfBirth: date is more than 120 years ago$"):
        normalize_date_of_birth("03-14-1906", today=TODAY)


def test_the_oldest_date_on_the_29th_of_february() -> None:
    assert normalize_date_of_birth("02-28-1900", today=date(2020, 2, 29)) == "02-28-1900"  # no 29 February 1900
    with pytest.raises(LeadFieldError):
        normalize_date_of_birth("02-27-1900", today=date(2020, 2, 29))


# ---------------------------------------------------------------------------------------- invalid_optional


def test_the_droppable_fields() -> None:
    assert DROPPABLE_FIELDS == ("email", "dateOfBirth", "gender", "maritalStatus")


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("email", "jane,doe@x.com", "invalid_format"),
        ("email", "x" * 250 + "@x.com", "too_long"),
        ("dateOfBirth", "01-01-2999", "out_of_range"),
        ("gender", "robot", "not_allowed_value"),
        ("maritalStatus", "engaged", "not_allowed_value"),
    ],
)
def test_an_invalid_optional_field_is_dropped_and_the_lead_kept(field: str, value: str, code: str) -> None:
    result = LeadValidator().validate({**BASE, "firstName": "Ada", field: value})
    assert result.ok and result.rejections == []
    assert result.lead == {"phoneNumber": "+12125550142", "firstName": "Ada", "timezone": "EST"}
    [dropped] = result.dropped
    assert (dropped.field, dropped.code) == (field, code)
    assert value not in dropped.reason


def test_invalid_optional_reject_rejects_the_lead() -> None:
    result = LeadValidator(invalid_optional="reject").validate({**BASE, "email": "a..b@x.com"})
    assert result.lead is None and result.dropped == []
    assert [(r.field, r.code) for r in result.rejections] == [("email", "invalid_format")]


def test_a_lead_rejected_anyway_lists_its_droppable_problems_too() -> None:
    result = LeadValidator().validate({**BASE, "phoneNumber": "(911) 555-0142", "email": "a..b@x.com"})
    assert result.lead is None and result.dropped == []
    assert [(r.field, r.code) for r in result.rejections] == [
        ("phoneNumber", "invalid_phone_number"),
        ("email", "invalid_format"),
    ]


def test_fields_that_are_never_dropped() -> None:
    """A bad ZIP, time zone or consent flag rejects the lead whatever the policy: calling hours and consent."""
    for extra in ({"postalCode": "00000"}, {"timezone": "Mars/Base"}, {"doNotCall": "maybe"}, {"firstName": "\x1b"}):
        result = LeadValidator().validate({**BASE, **extra})
        assert result.lead is None and result.dropped == [], extra


@pytest.mark.parametrize("value", ["drop ", "DROP", "ignore", None, True])
def test_a_bad_invalid_optional_is_an_error(value: Any) -> None:
    with pytest.raises(ValueError, match="invalid_optional must be 'drop' or 'reject'"):
        LeadValidator(invalid_optional=value)
