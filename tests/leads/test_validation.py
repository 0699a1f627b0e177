"""Tests for the careCycle lead validation and normalisation module (pure Python, fast)."""

from __future__ import annotations

import dataclasses
import re
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from airflow_provider_carecycle.leads import (
    LEAD_FIELDS,
    LEAD_FIELDS_BY_NAME,
    REJECTION_CODES,
    FieldKind,
    LeadFieldError,
    LeadValidator,
    Rejection,
    ValidationResult,
    normalize_date_of_birth,
    normalize_field,
    normalize_phone,
)
from airflow_provider_carecycle.leads import validation as validation_module
from airflow_provider_carecycle.storage import EXTRA_VALUES_KEY, MalformedRow

PHONE = "2125550142"
BASE: dict[str, Any] = {"phoneNumber": PHONE, "postalCode": "10001"}
DOCS = Path(__file__).resolve().parents[2] / "docs" / "lead-fields.md"
_TODAY = date.today()
#: the oldest plausible date of birth today (120 years ago; 29 February gives the 28th)
OLDEST = _TODAY.replace(year=_TODAY.year - 120, day=28 if (_TODAY.month, _TODAY.day) == (2, 29) else _TODAY.day)


def _validate(**fields: Any) -> ValidationResult:
    """Every problem rejects the record here (the rules' tests); ``tests/leads/test_fields.py`` has the drop policy."""
    return LeadValidator(invalid_optional="reject").validate({**BASE, **fields})


def _only_rejection(result: ValidationResult) -> Rejection:
    assert result.lead is None
    assert not result.ok
    assert len(result.rejections) == 1, result.rejections
    return result.rejections[0]


# ------------------------------------------------------------------------------------------ the table


def test_field_table_is_consistent() -> None:
    names = [spec.name for spec in LEAD_FIELDS]
    assert len(names) == len(set(names))
    assert set(LEAD_FIELDS_BY_NAME) == set(names)
    assert len(names) == 35
    for spec in LEAD_FIELDS:
        assert spec.kind in validation_module._NORMALIZERS
        if spec.kind is FieldKind.ENUM:
            assert spec.choices
        if spec.kind is FieldKind.INT32:
            assert (spec.minimum, spec.maximum) == (-2147483648, 2147483647)


def test_docs_cover_every_field() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for spec in LEAD_FIELDS:
        assert f"`{spec.name}`" in text, spec.name
    for code in REJECTION_CODES:
        assert f"`{code}`" in text, code


def test_rejection_is_frozen() -> None:
    rejection = Rejection("phoneNumber", "phoneNumber: x", "required")
    with pytest.raises(dataclasses.FrozenInstanceError):
        rejection.code = "other"  # type: ignore[misc]


# ------------------------------------------------------------------------------------ good values per rule

GOOD_CASES: list[tuple[str, Any, Any]] = [
    # phone
    ("phoneNumber", "+12125550142", "+12125550142"),
    ("phoneNumber", "2125550142", "+12125550142"),
    ("phoneNumber", "(212) 555-0142", "+12125550142"),
    ("phoneNumber", "212.555.0142", "+12125550142"),
    ("phoneNumber", "212-555-0142", "+12125550142"),
    ("phoneNumber", "1 212 555 0142", "+12125550142"),
    ("phoneNumber", "+1 (212) 555-0142", "+12125550142"),
    ("phoneNumber", "1-212-555-0142", "+12125550142"),
    ("phoneNumber", "  2125550142  ", "+12125550142"),
    ("phoneNumber", 2125550142, "+12125550142"),
    ("phoneNumber", 12125550142, "+12125550142"),
    ("phoneNumber", 2125550142.0, "+12125550142"),
    # postal code
    ("postalCode", "02134", "02134"),
    ("postalCode", " 10001 ", "10001"),
    ("postalCode", "12345-6789", "12345"),
    ("postalCode", "123456789", "12345"),
    ("postalCode", 90210, "90210"),
    ("postalCode", 2134, "02134"),
    ("postalCode", 501, "00501"),
    ("postalCode", 21341234, "02134"),
    ("postalCode", 902101234, "90210"),
    ("postalCode", 2134.0, "02134"),
    # timezone
    ("timezone", "America/New_York", "America/New_York"),
    ("timezone", "america/chicago", "America/Chicago"),
    ("timezone", "Pacific/Honolulu", "Pacific/Honolulu"),
    ("timezone", "est", "EST"),
    ("timezone", " Pst ", "PST"),
    ("timezone", "CST", "CST"),
    ("timezone", "mst", "MST"),
    # date of birth
    ("dateOfBirth", "03-15-1950", "03-15-1950"),
    ("dateOfBirth", "03/15/1950", "03-15-1950"),
    ("dateOfBirth", "3/5/1950", "03-05-1950"),
    ("dateOfBirth", "1950-03-15", "03-15-1950"),
    ("dateOfBirth", "1950-03-15T00:00:00Z", "03-15-1950"),
    ("dateOfBirth", "1950-03-15 10:30:00", "03-15-1950"),
    ("dateOfBirth", date(1950, 3, 15), "03-15-1950"),
    ("dateOfBirth", datetime(1950, 3, 15, 12, 0), "03-15-1950"),
    ("dateOfBirth", "02-29-1952", "02-29-1952"),
    ("dateOfBirth", OLDEST.strftime("%m-%d-%Y"), OLDEST.strftime("%m-%d-%Y")),  # 120 years ago to the day
    # strings
    ("firstName", "  Ada ", "Ada"),
    ("lastName", "x" * 255, "x" * 255),
    ("state", "x" * 50, "x" * 50),
    ("language", "Spanish", "Spanish"),
    ("filingStatus", "Single", "Single"),
    ("mbiNumber", "1EG4-TE5-MK73", "1EG4-TE5-MK73"),
    ("externalId", 12345, "12345"),
    ("externalId", "crm-77", "crm-77"),
    ("sourceId", 42, "42"),
    ("carrierAssignedCustomerId", 987, "987"),
    ("healthSherpaCustomerId", "hs-1", "hs-1"),
    ("email", " ada@example.com ", "ada@example.com"),
    ("email", "a.b+c@mail.example.co.uk", "a.b+c@mail.example.co.uk"),
    # enums
    ("gender", "Male", "Male"),
    ("gender", "female", "Female"),
    ("gender", "M", "Male"),
    ("gender", "f", "Female"),
    ("gender", "non_binary", "Non-Binary"),
    ("gender", "NON BINARY", "Non-Binary"),
    ("gender", "prefer not to say", "Prefer Not to Say"),
    ("gender", "Prefer_Not_To_Say", "Prefer Not to Say"),
    ("maritalStatus", "married", "Married"),
    ("maritalStatus", "domestic-partnership", "Domestic Partnership"),
    ("maritalStatus", "DOMESTIC_PARTNERSHIP", "Domestic Partnership"),
    # int32
    ("dependentCount", 3, 3),
    ("dependentCount", "3", 3),
    ("dependentCount", 3.0, 3),
    ("dependentCount", " 0 ", 0),
    ("householdIncome", "50,000", 50000),
    ("householdIncome", "-5", -5),
    ("householdIncome", "42000.00", 42000),
    ("householdIncome", Decimal("42000"), 42000),
    ("householdIncome", 2147483647, 2147483647),
    ("householdIncome", -2147483648, -2147483648),
    # number
    ("leadCost", 12.5, 12.5),
    ("leadCost", "12.50", 12.5),
    ("leadCost", "12", 12),
    ("leadCost", 0, 0),
    ("leadCost", Decimal("7.25"), 7.25),
    # booleans
    ("doNotCall", True, True),
    ("doNotSMS", False, False),
    ("doNotEmail", "yes", True),
    ("doNotMail", "No", False),
    ("medicaid", "Y", True),
    ("veteran", "n", False),
    ("isDecisionMaker", "TRUE", True),
    ("socialSecurityDisability", "false", False),
    ("medicaid", "1", True),
    ("medicaid", "0", False),
    ("veteran", 1, True),
    ("veteran", 0, False),
    ("veteran", 1.0, True),
]


@pytest.mark.parametrize(("name", "raw", "expected"), GOOD_CASES)
def test_good_values_are_normalised(name: str, raw: Any, expected: Any) -> None:
    result = _validate(**{name: raw})
    assert result.ok, result.rejections
    assert result.rejections == []
    assert result.lead is not None
    assert result.lead[name] == expected
    assert type(result.lead[name]) is type(expected)


# ------------------------------------------------------------------------------------- bad values per rule

BAD_CASES: list[tuple[str, Any, str, str]] = [
    # phone
    ("phoneNumber", "+44 20 7946 0958", "region_not_allowed", "phoneNumber"),
    ("phoneNumber", "+420 601 123 456", "region_not_allowed", "phoneNumber"),
    ("phoneNumber", "212555014", "invalid_phone_number", "phoneNumber"),
    ("phoneNumber", "212555014299", "invalid_phone_number", "phoneNumber"),
    ("phoneNumber", "22125550142", "invalid_phone_number", "phoneNumber"),
    ("phoneNumber", "+2125550142", "invalid_phone_number", "phoneNumber"),
    ("phoneNumber", "0125550142", "invalid_phone_number", "phoneNumber"),
    ("phoneNumber", "1125550142", "invalid_phone_number", "phoneNumber"),
    ("phoneNumber", "2120550142", "invalid_phone_number", "phoneNumber"),
    ("phoneNumber", "2121550142", "invalid_phone_number", "phoneNumber"),
    ("phoneNumber", "call me maybe", "invalid_format", "phoneNumber"),
    ("phoneNumber", "011 44 20 7946 0958", "region_not_allowed", "phoneNumber"),
    ("phoneNumber", True, "invalid_type", "phoneNumber"),
    ("phoneNumber", ["2125550142"], "invalid_type", "phoneNumber"),
    ("phoneNumber", -2125550142, "invalid_format", "phoneNumber"),
    # postal code
    ("postalCode", "2134", "invalid_format", "postalCode"),
    ("postalCode", "1234567", "invalid_format", "postalCode"),
    ("postalCode", "ABCDE", "invalid_format", "postalCode"),
    ("postalCode", "SW1A 1AA", "invalid_format", "postalCode"),
    ("postalCode", "12345-67", "invalid_format", "postalCode"),
    ("postalCode", 12, "invalid_format", "postalCode"),
    ("postalCode", 1234567, "invalid_format", "postalCode"),
    ("postalCode", -2134, "invalid_format", "postalCode"),
    ("postalCode", 2134.5, "invalid_type", "postalCode"),
    ("postalCode", True, "invalid_type", "postalCode"),
    # timezone
    ("timezone", "Mars/Olympus_Mons", "not_allowed_value", "timezone"),
    ("timezone", "EDT", "not_allowed_value", "timezone"),
    ("timezone", "Eastern", "not_allowed_value", "timezone"),
    ("timezone", 5, "invalid_type", "timezone"),
    # date of birth
    ("dateOfBirth", "13-01-1950", "invalid_format", "dateOfBirth"),
    ("dateOfBirth", "02-30-1950", "invalid_format", "dateOfBirth"),
    ("dateOfBirth", "02-29-1951", "invalid_format", "dateOfBirth"),
    ("dateOfBirth", "00-10-1950", "invalid_format", "dateOfBirth"),
    ("dateOfBirth", "1950-13-01", "invalid_format", "dateOfBirth"),
    ("dateOfBirth", "03-15-50", "invalid_format", "dateOfBirth"),
    ("dateOfBirth", "03-15/1950", "invalid_format", "dateOfBirth"),
    ("dateOfBirth", "March 15, 1950", "invalid_format", "dateOfBirth"),
    ("dateOfBirth", "12-31-1899", "out_of_range", "dateOfBirth"),
    ("dateOfBirth", date.today() + timedelta(days=1), "out_of_range", "dateOfBirth"),
    ("dateOfBirth", "01-01-2999", "out_of_range", "dateOfBirth"),
    ("dateOfBirth", 19500315, "invalid_type", "dateOfBirth"),
    # strings
    ("firstName", "x" * 256, "too_long", "firstName"),
    ("lastName", "x" * 256, "too_long", "lastName"),
    ("city", "x" * 256, "too_long", "city"),
    ("county", "x" * 256, "too_long", "county"),
    ("address", "x" * 256, "too_long", "address"),
    ("address2", "x" * 256, "too_long", "address2"),
    ("medicaidNumber", "x" * 256, "too_long", "medicaidNumber"),
    ("vaNumber", "x" * 256, "too_long", "vaNumber"),
    ("carrierAssignedCustomerId", "x" * 256, "too_long", "carrierAssignedCustomerId"),
    ("healthSherpaCustomerId", "x" * 256, "too_long", "healthSherpaCustomerId"),
    ("mbiNumber", "x" * 256, "too_long", "mbiNumber"),
    ("externalId", "x" * 256, "too_long", "externalId"),
    ("email", "x" * 250 + "@ex.com", "too_long", "email"),
    ("state", "x" * 51, "too_long", "state"),
    ("language", "x" * 51, "too_long", "language"),
    ("filingStatus", "x" * 51, "too_long", "filingStatus"),
    ("firstName", 123, "invalid_type", "firstName"),
    ("mbiNumber", 123, "invalid_type", "mbiNumber"),
    ("externalId", True, "invalid_type", "externalId"),
    ("externalId", 1.5, "invalid_type", "externalId"),
    ("sourceId", ["a"], "invalid_type", "sourceId"),
    ("email", "ada.example.com", "invalid_format", "email"),
    ("email", "ada@@example.com", "invalid_format", "email"),
    ("email", "a@b@example.com", "invalid_format", "email"),
    ("email", "ada@localhost", "invalid_format", "email"),
    ("email", "ada@example.", "invalid_format", "email"),
    ("email", "ada @example.com", "invalid_format", "email"),
    # enums
    ("gender", "Unknown", "not_allowed_value", "gender"),
    ("gender", "X", "not_allowed_value", "gender"),
    ("gender", 1, "invalid_type", "gender"),
    ("maritalStatus", "Engaged", "not_allowed_value", "maritalStatus"),
    ("maritalStatus", "M", "not_allowed_value", "maritalStatus"),
    # int32
    ("dependentCount", 3.5, "invalid_type", "dependentCount"),
    ("dependentCount", "3.5", "invalid_type", "dependentCount"),
    ("dependentCount", "three", "invalid_type", "dependentCount"),
    ("dependentCount", True, "invalid_type", "dependentCount"),
    ("dependentCount", float("inf"), "invalid_type", "dependentCount"),
    ("householdIncome", 2147483648, "out_of_range", "householdIncome"),
    ("householdIncome", -2147483649, "out_of_range", "householdIncome"),
    ("householdIncome", "9,999,999,999", "out_of_range", "householdIncome"),
    # number
    ("leadCost", -0.01, "out_of_range", "leadCost"),
    ("leadCost", "-3", "out_of_range", "leadCost"),
    ("leadCost", "free", "invalid_type", "leadCost"),
    ("leadCost", True, "invalid_type", "leadCost"),
    ("leadCost", float("inf"), "invalid_type", "leadCost"),
    # booleans
    ("doNotCall", "maybe", "invalid_type", "doNotCall"),
    ("doNotSMS", 2, "invalid_type", "doNotSMS"),
    ("doNotEmail", "2", "invalid_type", "doNotEmail"),
    ("doNotMail", ["yes"], "invalid_type", "doNotMail"),
    ("medicaid", 0.5, "invalid_type", "medicaid"),
    # customFields
    ("customFields", "lead_source=tv", "invalid_type", "customFields"),
    ("customFields", [{"fieldKey": "k" * 101, "value": 1}], "too_long", "customFields[0].fieldKey"),
    ("customFields", [{"fieldKey": "  ", "value": 1}], "required", "customFields[0].fieldKey"),
    ("customFields", [{"value": 1}], "required", "customFields[0].fieldKey"),
    ("customFields", [{"fieldKey": 7, "value": 1}], "invalid_type", "customFields[0].fieldKey"),
    ("customFields", [{"fieldKey": "a", "value": {"nested": 1}}], "invalid_type", "customFields[0].value"),
    ("customFields", [{"fieldKey": "a", "value": ["x", 2]}], "invalid_type", "customFields[0].value"),
    ("customFields", ["lead_source"], "invalid_type", "customFields[0]"),
    ("customFields", [{"fieldKey": "a", "value": 1, "extra": 2}], "invalid_format", "customFields[0]"),
    ("customFields", [{"fieldKey": "a", "value": 1}, {"fieldKey": "a", "value": 2}], "invalid_format",
     "customFields[1].fieldKey"),
    ("customFields", {f"k{i}": i for i in range(51)}, "too_many", "customFields"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "raw", "code", "field"), BAD_CASES)
def test_bad_values_are_rejected(name: str, raw: Any, code: str, field: str) -> None:
    rejection = _only_rejection(_validate(**{name: raw}))
    assert (rejection.code, rejection.field) == (code, field)
    assert rejection.code in REJECTION_CODES
    assert rejection.reason.startswith(f"{field}: ")


def test_enum_rejection_lists_the_valid_values() -> None:
    rejection = _only_rejection(_validate(gender="Unknown"))
    assert "Male, Female, Non-Binary, Other, Prefer Not to Say" in rejection.reason
    rejection = _only_rejection(_validate(maritalStatus="Engaged"))
    assert "Single, Married, Divorced, Widowed, Separated, Domestic Partnership" in rejection.reason


def test_phone_reasons_say_what_is_wrong() -> None:
    def reason(phone: str) -> str:
        return _only_rejection(_validate(phoneNumber=phone)).reason

    assert "region GB is not allowed" in reason("+44 20 7946 0958")
    assert "too short" in reason("212555014")
    assert "area code" in reason("0125550142")
    assert "numbering plan" in reason("2120550142")


# ------------------------------------------------------------------------------------------ required rules


@pytest.mark.parametrize("missing", [None, "", "   ", float("nan")])
def test_phone_is_required(missing: Any) -> None:
    rejection = _only_rejection(LeadValidator().validate({"phoneNumber": missing, "timezone": "EST"}))
    assert (rejection.field, rejection.code) == ("phoneNumber", "required")


def test_postal_code_or_timezone_is_required() -> None:
    rejection = _only_rejection(LeadValidator().validate({"phoneNumber": PHONE, "postalCode": " "}))
    assert (rejection.field, rejection.code) == ("postalCode|timezone", "required")
    assert "TCPA" in rejection.reason


def test_timezone_alone_is_enough() -> None:
    result = LeadValidator().validate({"phoneNumber": PHONE, "timezone": "America/Denver"})
    assert result.lead == {"phoneNumber": "+12125550142", "timezone": "America/Denver"}


def test_invalid_postal_code_is_not_also_reported_missing() -> None:
    result = LeadValidator().validate({"phoneNumber": PHONE, "postalCode": "ABCDE"})
    assert [r.code for r in result.rejections] == ["invalid_format"]


def test_timezone_falls_back_to_a_pattern_without_tzdata() -> None:
    validation_module._iana_timezones.cache_clear()
    try:
        with mock.patch.object(validation_module, "available_timezones", return_value=set()):
            assert _validate(timezone="America/Boise").lead["timezone"] == "America/Boise"  # type: ignore[index]
            assert _only_rejection(_validate(timezone="Eastern")).code == "not_allowed_value"
    finally:
        validation_module._iana_timezones.cache_clear()


# ------------------------------------------------------------------------------------------ absent values


def test_absent_values_are_omitted() -> None:
    result = _validate(firstName="", lastName="   ", email=None, dependentCount=float("nan"), customFields=[])
    assert result.lead == {"phoneNumber": "+12125550142", "postalCode": "10001"}


# --------------------------------------------------------------------------------------------- customFields


def test_custom_fields_list_and_dict_forms() -> None:
    items = [
        {"fieldKey": " lead_source ", "value": "tv"},
        {"fieldKey": "score", "value": 7.5},
        {"fieldKey": "vip", "value": True},
        {"fieldKey": "tags", "value": ["a", "b"]},
        {"fieldKey": "note", "value": None},
        {"key": "legacy", "value": 1},
    ]
    assert _validate(customFields=items).lead["customFields"] == [  # type: ignore[index]
        {"fieldKey": "lead_source", "value": "tv"},
        {"fieldKey": "score", "value": 7.5},
        {"fieldKey": "vip", "value": True},
        {"fieldKey": "tags", "value": ["a", "b"]},
        {"fieldKey": "note", "value": None},
        {"fieldKey": "legacy", "value": 1},
    ]
    as_dict = {"utm_campaign": "spring", "visits": 3, "seen": date(2024, 5, 1)}
    assert _validate(customFields=as_dict).lead["customFields"] == [  # type: ignore[index]
        {"fieldKey": "utm_campaign", "value": "spring"},
        {"fieldKey": "visits", "value": 3},
        {"fieldKey": "seen", "value": "2024-05-01"},
    ]


def test_custom_fields_fifty_is_the_limit() -> None:
    assert _validate(customFields={f"k{i}": i for i in range(50)}).ok


def test_custom_fields_item_errors_are_all_collected() -> None:
    result = _validate(customFields=[{"fieldKey": "", "value": 1}, {"fieldKey": "ok", "value": {}}])
    assert [(r.field, r.code) for r in result.rejections] == [
        ("customFields[0].fieldKey", "required"),
        ("customFields[1].value", "invalid_type"),
    ]


# ----------------------------------------------------------------------------------------------- mapping


def test_mapping_with_dotted_paths_and_defaults() -> None:
    validator = LeadValidator(
        field_mapping={"phoneNumber": "phone", "postalCode": "address.zip", "firstName": "person.name.first"},
        defaults={"sourceId": "crm-feed"},
    )
    record = {"phone": "(212) 555-0142", "address": {"zip": "10001-2345"}, "person": {"name": {"first": "Ada"}}}
    result = validator.validate(record)
    assert result.ok, result.rejections
    assert result.lead == {
        "phoneNumber": "+12125550142",
        "firstName": "Ada",
        "postalCode": "10001",
        "sourceId": "crm-feed",
    }


def test_missing_dotted_path_counts_as_absent() -> None:
    validator = LeadValidator(field_mapping={"postalCode": "address.zip"})
    for record in ({"phoneNumber": PHONE}, {"phoneNumber": PHONE, "address": "not a dict"}):
        rejection = _only_rejection(validator.validate(record))
        assert (rejection.field, rejection.code) == ("postalCode|timezone", "required")


def test_literal_dotted_key_wins_over_nested_walk() -> None:
    validator = LeadValidator(field_mapping={"postalCode": "address.zip"})
    result = validator.validate({"phoneNumber": PHONE, "address.zip": "10001", "address": {"zip": "90210"}})
    assert result.lead == {"phoneNumber": "+12125550142", "postalCode": "10001"}


def test_identity_mapping_without_field_mapping() -> None:
    record = {"phoneNumber": PHONE, "timezone": "EST", "firstName": "Ada", "externalId": "e1"}
    assert LeadValidator().validate(record).lead == {
        "phoneNumber": "+12125550142",
        "firstName": "Ada",
        "timezone": "EST",
        "externalId": "e1",
    }


def test_mapping_source_key_named_like_a_field_is_not_passed_through() -> None:
    # "address" is a careCycle field, but here it is the source of postalCode: not a street address.
    validator = LeadValidator(field_mapping={"postalCode": "address.zip"})
    result = validator.validate({"phoneNumber": PHONE, "address": {"zip": "10001"}})
    assert result.lead == {"phoneNumber": "+12125550142", "postalCode": "10001"}


def test_mapped_field_wins_over_same_named_source_key() -> None:
    validator = LeadValidator(field_mapping={"phoneNumber": "mobile"})
    result = validator.validate({"mobile": "2125550142", "phoneNumber": "3125550142", "timezone": "CST"})
    assert result.lead["phoneNumber"] == "+12125550142"  # type: ignore[index]


def test_defaults_fill_absent_values_only() -> None:
    validator = LeadValidator(defaults={"sourceId": "crm-feed", "timezone": "EST"})
    assert validator.validate({"phoneNumber": PHONE, "sourceId": ""}).lead == {
        "phoneNumber": "+12125550142",
        "timezone": "EST",
        "sourceId": "crm-feed",
    }
    lead = validator.validate({"phoneNumber": PHONE, "sourceId": "web", "timezone": "PST"}).lead
    assert lead is not None
    assert (lead["sourceId"], lead["timezone"]) == ("web", "PST")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"field_mapping": {"phone": "phone"}}, "field_mapping: not careCycle lead fields: phone"),
        ({"defaults": {"source": "x"}}, "defaults: not careCycle lead fields: source"),
        ({"field_mapping": {"postalCode": "address..zip"}}, "source path"),
        ({"field_mapping": {"postalCode": ""}}, "source path"),
        ({"defaults": {"timezone": "Nowhere"}}, "defaults: timezone: not an IANA"),
    ],
)
def test_bad_configuration_fails_at_construction(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        LeadValidator(**kwargs)


def test_unknown_fields_rejected_by_default() -> None:
    result = LeadValidator().validate({**BASE, "crm_id": 1, "notes": "x"})
    assert [(r.field, r.code) for r in result.rejections] == [
        ("crm_id", "unknown_field"),
        ("notes", "unknown_field"),
    ]
    assert result.lead is None


def test_unknown_fields_dropped_on_request() -> None:
    result = LeadValidator(drop_unknown_fields=True).validate({**BASE, "crm_id": 1, "notes": "x"})
    assert result.ok
    assert result.lead == {"phoneNumber": "+12125550142", "postalCode": "10001"}


def test_non_mapping_record_is_rejected() -> None:
    rejection = _only_rejection(LeadValidator().validate(["2125550142"]))  # type: ignore[arg-type]
    assert (rejection.field, rejection.code) == (None, "invalid_type")


# ----------------------------------------------------------------------------------- multiple rejections


def test_all_rejections_of_a_record_are_collected() -> None:
    record = {
        "phoneNumber": "+44 20 7946 0958",
        "dateOfBirth": "02-30-1950",
        "gender": "robot",
        "dependentCount": 3.5,
        "doNotCall": "maybe",
        "email": "nope",
        "favourite_colour": "blue",
    }
    result = LeadValidator().validate(record)
    assert result.lead is None
    assert [(r.field, r.code) for r in result.rejections] == [
        ("favourite_colour", "unknown_field"),
        ("phoneNumber", "region_not_allowed"),
        ("email", "invalid_format"),
        ("dateOfBirth", "invalid_format"),
        ("gender", "not_allowed_value"),
        ("dependentCount", "invalid_type"),
        ("doNotCall", "invalid_type"),
        ("postalCode|timezone", "required"),
    ]


# ---------------------------------------------------------------------------------------- CSV-style rows


def test_csv_style_row_of_strings() -> None:
    row = {
        "Phone": "(212) 555-0142",
        "Zip": "02134-1234",
        "First": " Ada ",
        "Last": "Lovelace",
        "DOB": "3/15/1950",
        "Gender": "F",
        "Dependents": "2",
        "Income": "48,500",
        "Medicaid": "no",
        "Veteran": "Y",
        "DNC": "0",
        "Cost": "4.75",
        "CRM ID": "1007",
        "Email": "",
    }
    mapping = {
        "phoneNumber": "Phone",
        "postalCode": "Zip",
        "firstName": "First",
        "lastName": "Last",
        "dateOfBirth": "DOB",
        "gender": "Gender",
        "dependentCount": "Dependents",
        "householdIncome": "Income",
        "medicaid": "Medicaid",
        "veteran": "Veteran",
        "doNotCall": "DNC",
        "leadCost": "Cost",
        "externalId": "CRM ID",
        "email": "Email",
    }
    result = LeadValidator(field_mapping=mapping, defaults={"sourceId": "csv-import"}).validate(row)
    assert result.ok, result.rejections
    assert result.lead == {
        "phoneNumber": "+12125550142",
        "firstName": "Ada",
        "lastName": "Lovelace",
        "postalCode": "02134",
        "dateOfBirth": "03-15-1950",
        "gender": "Female",
        "dependentCount": 2,
        "householdIncome": 48500,
        "medicaid": False,
        "veteran": True,
        "doNotCall": False,
        "externalId": "1007",
        "sourceId": "csv-import",
        "leadCost": 4.75,
    }


# ---------------------------------------------------------------------------------------------- identity


@pytest.mark.parametrize(
    ("lead", "expected"),
    [
        ({"externalId": "crm-7", "phoneNumber": "+12125550142"}, "ext:crm-7"),
        ({"externalId": 7, "phoneNumber": "+12125550142"}, "ext:7"),
        ({"externalId": "", "phoneNumber": "+12125550142"}, "phone:+12125550142"),
        ({"phoneNumber": "+12125550142"}, "phone:+12125550142"),
        ({"phoneNumber": "(212) 555-0142"}, "phone:+12125550142"),
    ],
)
def test_identity(lead: dict[str, Any], expected: str) -> None:
    assert LeadValidator().identity(lead) == expected


def test_identity_needs_an_identifier() -> None:
    with pytest.raises(ValueError, match="neither externalId nor phoneNumber"):
        LeadValidator().identity({"firstName": "Ada"})


def test_identity_of_validated_leads_dedupes_phone_variants() -> None:
    validator = LeadValidator()
    leads = [validator.validate({**BASE, "phoneNumber": p}).lead for p in ("212-555-0142", "+1 212 555 0142")]
    assert {validator.identity(lead) for lead in leads if lead} == {"phone:+12125550142"}


# --------------------------------------------------------------------------------------- public helpers


def test_normalize_phone_and_date_of_birth_directly() -> None:
    assert normalize_phone("(212) 555-0142") == "+12125550142"
    assert normalize_date_of_birth("1950-03-15") == "03-15-1950"
    assert normalize_date_of_birth("03-15-2020", today=date(2021, 1, 1)) == "03-15-2020"
    with pytest.raises(ValueError, match=r"^phoneNumber: region GB is not allowed"):
        normalize_phone("+44 20 7946 0958")
    with pytest.raises(LeadFieldError) as excinfo:
        normalize_date_of_birth("03-15-2020", today=date(2019, 1, 1))
    assert (excinfo.value.field, excinfo.value.code) == ("dateOfBirth", "out_of_range")
    for absent in (" ", None, float("nan")):
        with pytest.raises(LeadFieldError, match="required") as excinfo:
            normalize_phone(absent)
        assert excinfo.value.code == "required"
        with pytest.raises(LeadFieldError, match="required"):
            normalize_date_of_birth(absent)


def test_normalize_field() -> None:
    assert normalize_field("gender", "non-binary") == "Non-Binary"
    with pytest.raises(KeyError):
        normalize_field("nope", 1)


# --------------------------------------------------------------------------------------------- no PHI leaks

PHI_VALUES: dict[str, Any] = {
    "phoneNumber": "+44 7911 123456",
    "firstName": "Bartholomew" * 30,
    "lastName": 90210123,
    "email": "jane.doe.at.example.com",
    "postalCode": "SW1A 1AA",
    "timezone": "Margaretville/Smith",
    "dateOfBirth": "13-45-1950",
    "gender": "Gertrude-Smith",
    "maritalStatus": "Engaged-To-Bob",
    "dependentCount": "7.25",
    "householdIncome": "98765432109",
    "leadCost": "-18.75",
    "medicaidNumber": "MCD" + "9" * 300,
    "mbiNumber": "1EG4TE5MK73" * 30,
    "vaNumber": 55512345,
    "doNotCall": "perhaps-Jane",
    "externalId": "EXT-" + "8" * 300,
    "customFields": [
        {"fieldKey": "ssn", "value": {"ssn": "078-05-1120"}},
        {"fieldKey": "diagnosis" * 20, "value": "diabetes"},
        {"fieldKey": "member_ref", "value": ["1EG4-TE5-MK73", 19500315]},
    ],
}


def _fragments(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [piece for item in value.values() for piece in _fragments(item)]
    if isinstance(value, list):
        return [piece for item in value for piece in _fragments(item)]
    text = str(value).strip()
    return [text, *re.findall(r"[A-Za-z0-9]{4,}", text)]


def test_no_rejection_reason_contains_the_raw_value() -> None:
    result = LeadValidator().validate(PHI_VALUES)
    fields_rejected = {r.field.split("[")[0] for r in result.rejections if r.field}
    assert fields_rejected == set(PHI_VALUES)
    allowed_words = {"customFields", "fieldKey", "value"}
    for rejection in result.rejections:
        for piece in _fragments(PHI_VALUES):
            if piece in allowed_words:
                continue
            assert piece not in rejection.reason, (rejection.field, rejection.code)


@pytest.mark.parametrize("value", ["+44 7911 123456", "555-1234", "(212) 055-0142", "Jane Doe", 42.5, True])
def test_normalize_phone_errors_are_phi_free(value: Any) -> None:
    with pytest.raises(ValueError) as excinfo:
        normalize_phone(value)
    for piece in _fragments(value):
        assert piece not in str(excinfo.value)


@pytest.mark.parametrize("value", ["13-45-1950", "02-30-1950", "1890-01-01", "01-01-2999", "Jan 5 1950", 1950])
def test_normalize_date_of_birth_errors_are_phi_free(value: Any) -> None:
    with pytest.raises(ValueError) as excinfo:
        normalize_date_of_birth(value)
    for piece in _fragments(value):
        assert piece not in str(excinfo.value)


# ------------------------------------------------------------------------------- rows and plain-text names


def test_only_names_are_plain_text_fields() -> None:
    assert [spec.name for spec in LEAD_FIELDS if spec.plain_text] == ["firstName", "lastName"]


def test_a_malformed_file_row_is_one_record_rejection_whatever_else_it_holds() -> None:
    row = MalformedRow(
        [*_validate().lead.items(), (EXTRA_VALUES_KEY, ["x"])], "the CSV row has 3 values, the header has 2"
    )
    for validator in (LeadValidator(), LeadValidator(drop_unknown_fields=True)):
        result = validator.validate(row)
        assert result.lead is None
        assert result.rejections == [
            Rejection(None, "record: the CSV row has 3 values, the header has 2", "invalid_format")
        ]


def test_a_default_name_with_a_bidi_override_is_refused_when_the_validator_is_built() -> None:
    with pytest.raises(ValueError, match=r"defaults: firstName: contains the invisible bidirectional .*U\+202E"):
        LeadValidator(defaults={"firstName": "\u202eabc"})


def test_a_nul_in_a_custom_field_value_is_rejected_with_its_path() -> None:
    rejection = _only_rejection(_validate(customFields={"plan": "gold\x00"}))
    assert (rejection.field, rejection.code) == ("customFields[0].value", "invalid_format")
    assert "U+0000" in rejection.reason and "gold" not in rejection.reason
