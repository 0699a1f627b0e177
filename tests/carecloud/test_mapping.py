"""The CareCloud customer -> careCycle lead source mapping, checked through the real lead validator."""

from __future__ import annotations

from datetime import datetime

import pytest

from airflow_provider_carecycle.carecloud import mapping as crm_mapping
from airflow_provider_carecycle.carecloud.hook import CareCloudCrmHook
from airflow_provider_carecycle.carecloud.mapping import (
    CARECLOUD_FIELD_MAPPING,
    CrmMapping,
    customer_to_lead_source,
    international_phone,
    validate_customer,
)
from airflow_provider_carecycle.leads import LeadValidator, RejectionCode
from carecycle_emulator.carecloud.seed import seed_customers


def customer(phone="12025550143", zip_code="10001", **info):
    personal = {
        "first_name": "Mary",
        "last_name": "Smith",
        "email": "mary@example.com",
        "phone": phone,
        "birthdate": "1950-04-30",
        "address": {"zip": zip_code, "city": "New York", "country_code": "US"},
        **info,
    }
    return {"customer_id": "8ea2591121e636086a4a9c0992", "personal_information": personal, "state": 1}


def test_us_customer_becomes_a_lead():
    result = validate_customer(customer())
    assert result.rejections == []
    assert result.lead == {
        "phoneNumber": "+12025550143",
        "firstName": "Mary",
        "lastName": "Smith",
        "email": "mary@example.com",
        "postalCode": "10001",
        "city": "New York",
        "dateOfBirth": "04-30-1950",
        "externalId": "8ea2591121e636086a4a9c0992",
    }


def test_first_level_state_does_not_leak_into_carecycle_state():
    assert "state" not in customer_to_lead_source(customer())


def test_czech_phone_is_rejected_by_the_validator_with_a_reason():
    result = validate_customer(customer(phone="420601123456", zip_code="10001"))
    assert result.lead is None
    [rejection] = result.rejections
    assert rejection.field == "phoneNumber"
    assert rejection.code == RejectionCode.REGION_NOT_ALLOWED
    assert "region CZ is not allowed" in rejection.reason
    assert "601123456" not in rejection.reason


def test_missing_zip_is_rejected_unless_a_timezone_default_is_given():
    rejected = validate_customer(customer(zip_code=None))
    assert [r.field for r in rejected.rejections] == ["postalCode|timezone"]
    accepted = validate_customer(customer(zip_code=None), LeadValidator(defaults={"timezone": "America/New_York"}))
    assert accepted.lead is not None and accepted.lead["timezone"] == "America/New_York"


def test_missing_values_are_left_out_of_the_source_record():
    record = customer_to_lead_source({"customer_id": "abc", "personal_information": {"email": ""}})
    assert record == {"externalId": "abc"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("12025550143", "+12025550143"),
        (" 420523828931 ", "+420523828931"),
        (12025550143, "+12025550143"),
        ("+12025550143", "+12025550143"),
        ("(202) 555-0143", "(202) 555-0143"),
        ("", ""),
    ],
)
def test_international_phone(value, expected):
    assert international_phone(value) == expected


def test_mapping_and_transforms_can_be_overridden():
    mapping = {**CARECLOUD_FIELD_MAPPING, "address": "personal_information.address.country_code"}
    record = customer_to_lead_source(customer(), mapping, transforms={})
    assert record["address"] == "US"
    assert record["phoneNumber"] == "12025550143"  # no transform: raw CareCloud digits


def test_unknown_target_field_is_refused():
    with pytest.raises(ValueError, match="not careCycle lead fields: zip"):
        customer_to_lead_source(customer(), {"zip": "personal_information.address.zip"})


def test_seeded_customers_split_into_leads_and_reasoned_rejections():
    outcomes = [validate_customer(c) for c in seed_customers(50, 0, datetime(2026, 3, 2), 14)]
    czech = [o for o in outcomes if any(r.field == "phoneNumber" for r in o.rejections)]
    no_zip = [o for o in outcomes if [r.field for r in o.rejections] == ["postalCode|timezone"]]
    leads = [o for o in outcomes if o.ok]
    assert len(czech) == 7 and len(no_zip) == 5 and len(leads) == 38
    assert all(o.lead["phoneNumber"].startswith("+1") for o in leads)


def test_changed_customers_from_the_emulator_map_end_to_end(carecloud_emulator):
    hook = CareCloudCrmHook()
    start, end = datetime(2026, 2, 20), datetime(2026, 3, 1)
    outcomes = [validate_customer(c) for c in hook.iter_changed_customers(start, end)]
    expected = [c for c in carecloud_emulator.customers() if start <= datetime.fromisoformat(c["last_change"]) < end]
    assert len(outcomes) == len(expected) > 0
    ids = {o.lead["externalId"] for o in outcomes if o.ok}
    assert ids <= {c["customer_id"] for c in expected}
    assert any(not o.ok for o in outcomes)


@pytest.mark.parametrize(
    ("mapping", "transforms", "message"),
    [
        ({"zip": "personal_information.address.zip"}, {}, r"field_mapping: not careCycle lead fields: zip\. Valid"),
        ({"postalCode": ""}, {}, r"field_mapping\['postalCode'\]: the source path must be non-empty dotted text"),
        ({"postalCode": "a..zip"}, {}, r"field_mapping\['postalCode'\]: .*got text with an empty part"),
        ({"postalCode": ["a"]}, {}, r"field_mapping\['postalCode'\]: .*got a list"),
        (CARECLOUD_FIELD_MAPPING, {"phoneNumber": "+1"}, r"transforms\['phoneNumber'\]: must be a function"),
    ],
)
def test_a_bad_mapping_fails_when_built_naming_the_key(mapping, transforms, message):
    with pytest.raises(ValueError, match=message):
        CrmMapping(mapping, transforms)


def test_a_built_mapping_maps_every_customer_without_checking_again(monkeypatch):
    checks = []
    real_check = crm_mapping.check_field_mapping
    monkeypatch.setattr(crm_mapping, "check_field_mapping", lambda *a: checks.append(a) or real_check(*a))
    field_mapping = {**CARECLOUD_FIELD_MAPPING, "address": "personal_information.address.country_code"}
    mapping = CrmMapping(field_mapping)
    customers = seed_customers(50, 0, datetime(2026, 3, 2), 14)
    records = [mapping(c) for c in customers]

    assert len(checks) == 1
    assert records == [customer_to_lead_source(c, field_mapping) for c in customers]  # the one-off form: same
    assert len(checks) == 51 and any("address" in r for r in records)
