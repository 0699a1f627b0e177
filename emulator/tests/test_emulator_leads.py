"""Lead upload on the careCycle emulator: schema validation, per-record rejections, upsert identity, request log."""

from __future__ import annotations

import hashlib
import json

import pytest
import requests

from carecycle_emulator import batch_fingerprint

H = {"x-api-key": "cc_test_key"}


def upload(emu, body) -> requests.Response:
    return requests.post(f"{emu.url}/v2/leads/upload", headers=H, json=body, timeout=10)


def lead(i: int, **extra) -> dict:
    return {"phoneNumber": f"+1555000{i:04d}", "postalCode": "33101", "firstName": f"F{i}", "lastName": "Doe", **extra}


def test_upload_creates_leads_joining_new_lead_campaigns(carecycle_emulator):
    emu = carecycle_emulator
    before = emu.counts()["customers"]
    r = upload(emu, {"records": [lead(1, externalId="crm-1"), lead(2, externalId="crm-2")]})
    assert r.status_code == 200
    body = r.json()
    assert (body["succeeded"], body["failed"], body["errors"]) == (2, 0, [])
    assert [c["externalId"] for c in body["results"]] == ["crm-1", "crm-2"]
    assert all(c["status"] == "Lead" for c in body["results"])
    new_lead_camps = [c["id"] for c in emu.list_campaigns() if c["takesNewLeads"]]
    assert new_lead_camps
    assert [x["id"] for x in body["results"][0]["campaigns"]] == new_lead_camps
    assert body["results"][0]["campaigns"][0]["status"] == "pending"
    assert emu.counts()["customers"] == before + 2
    assert emu.counts()["leads_uploaded"] == 2
    fetched = requests.get(f"{emu.url}/v2/customers/{body['results'][0]['id']}", headers=H, timeout=10).json()
    assert fetched["phoneNumber"] == "+15550000001" and fetched["postalCode"] == "33101"


def test_upsert_by_external_id_updates_provided_fields_only(carecycle_emulator):
    emu = carecycle_emulator
    first = upload(emu, {"records": [lead(1, externalId="crm-1", email="a@x.com")]}).json()["results"][0]
    second = upload(
        emu,
        {
            "records": [
                {"phoneNumber": "(555) 000-9999", "timezone": "EST", "externalId": "crm-1", "firstName": "Changed"}
            ]
        },
    ).json()
    assert second["succeeded"] == 1
    updated = second["results"][0]
    assert updated["id"] == first["id"]
    assert updated["firstName"] == "Changed"
    assert updated["lastName"] == "Doe" and updated["email"] == "a@x.com"  # not provided: kept
    assert updated["phoneNumber"] == "+15550009999"
    assert [c["id"] for c in emu.get_customers_by_external_id()["crm-1"]] == [first["id"]]


def test_upsert_by_phone_when_no_external_id(carecycle_emulator):
    emu = carecycle_emulator
    a = upload(emu, {"records": [lead(5)]}).json()["results"][0]
    b = upload(emu, {"records": [{"phoneNumber": "5550000005", "timezone": "America/Chicago", "city": "Austin"}]})
    assert b.json()["results"][0]["id"] == a["id"]
    assert b.json()["results"][0]["city"] == "Austin"
    assert len(emu.query_customers({"search": "5550000005"})) == 1


def test_duplicates_within_one_batch_are_stored_once(carecycle_emulator):
    emu = carecycle_emulator
    body = upload(emu, {"records": [lead(1, externalId="dup"), lead(2, externalId="dup")]}).json()
    assert body["succeeded"] == 2
    assert len(emu.get_customers_by_external_id()["dup"]) == 1


def test_unknown_source_is_rejected_per_record(carecycle_emulator):
    emu = carecycle_emulator
    body = upload(
        emu,
        {
            "records": [
                lead(1, externalId="ok-1", sourceId="src_web"),
                lead(2, externalId="bad-1", sourceId="no_such_source"),
                lead(3, externalId="ok-2", sourceId="crm-feed"),
            ]
        },
    ).json()
    assert (body["succeeded"], body["failed"]) == (2, 1)
    assert body["errors"] == [{"id": None, "externalId": "bad-1", "error": "Source not found"}]
    by_ext = emu.get_customers_by_external_id()
    assert "bad-1" not in by_ext
    assert by_ext["ok-1"][0]["source"]["sourceId"] == "src_web"
    source_uuid = next(s["id"] for s in emu.sources() if s["sourceId"] == "crm-feed")
    assert upload(emu, {"records": [lead(4, sourceId=source_uuid)]}).json()["succeeded"] == 1


@pytest.mark.parametrize(
    ("record", "field", "code"),
    [
        ({"postalCode": "33101"}, "phoneNumber", "invalid_type"),
        ({"phoneNumber": "555-000-1234", "postalCode": "33101"}, "phoneNumber", "invalid_string"),
        ({"phoneNumber": "+15550001234"}, "postalCode", "custom"),
        ({"phoneNumber": "+15550001234", "postalCode": "3310"}, "postalCode", "too_small"),
        ({"phoneNumber": "+15550001234", "timezone": "Mars/Olympus"}, "timezone", "invalid_string"),
        (
            {"phoneNumber": "+15550001234", "timezone": "EST", "dateOfBirth": "1955-01-02"},
            "dateOfBirth",
            "invalid_string",
        ),
        ({"phoneNumber": "+15550001234", "timezone": "EST", "gender": "male"}, "gender", "invalid_enum_value"),
        (
            {"phoneNumber": "+15550001234", "timezone": "EST", "maritalStatus": "Engaged"},
            "maritalStatus",
            "invalid_enum_value",
        ),
        ({"phoneNumber": "+15550001234", "timezone": "EST", "firstName": "x" * 256}, "firstName", "too_big"),
        ({"phoneNumber": "+15550001234", "timezone": "EST", "state": "x" * 51}, "state", "too_big"),
        ({"phoneNumber": "+15550001234", "timezone": "EST", "householdIncome": 2**31}, "householdIncome", "too_big"),
        ({"phoneNumber": "+15550001234", "timezone": "EST", "dependentCount": "2"}, "dependentCount", "invalid_type"),
        ({"phoneNumber": "+15550001234", "timezone": "EST", "veteran": "yes"}, "veteran", "invalid_type"),
        (
            {"phoneNumber": "+15550001234", "timezone": "EST", "favouriteColour": "red"},
            "favouriteColour",
            "unrecognized_keys",
        ),
        (
            {"phoneNumber": "+15550001234", "timezone": "EST", "customFields": [{"fieldKey": "k", "value": 1}] * 51},
            "customFields",
            "too_big",
        ),
    ],
)
def test_schema_violation_rejects_whole_request(carecycle_emulator, record, field, code):
    emu = carecycle_emulator
    before = emu.counts()["customers"]
    good = lead(1, externalId="good-1")
    r = upload(emu, {"records": [good, {**record, "externalId": "bad-1"}]})
    assert r.status_code == 400
    body = r.json()
    assert body["code"] == "VALIDATION_ERROR"
    assert [(e["path"], e["code"]) for e in body["errors"]] == [(["records", 1, field], code)]
    assert body["failedRecords"] == [
        {
            "index": 1,
            "phoneNumber": record.get("phoneNumber"),
            "firstName": record.get("firstName"),
            "lastName": None,
            "externalId": "bad-1",
        }
    ]
    assert emu.counts()["customers"] == before
    assert "good-1" not in emu.get_customers_by_external_id()


def test_valid_edge_values_are_accepted(carecycle_emulator):
    record = {
        "phoneNumber": "(555) 123-4567",
        "timezone": "PST",
        "dateOfBirth": "02/29/1960",
        "gender": "Prefer Not to Say",
        "maritalStatus": "Domestic Partnership",
        "householdIncome": 2**31 - 1,
        "dependentCount": -(2**31),
        "doNotCall": None,
        "veteran": False,
        "leadCost": 12.5,
        "customFields": [{"fieldKey": "k" * 100, "value": ["a", "b"]}, {"fieldKey": "n", "value": None}],
        "firstName": "x" * 255,
    }
    r = upload(carecycle_emulator, {"records": [record]})
    assert r.status_code == 200, r.text
    item = r.json()["results"][0]
    assert item["dateOfBirth"] == "1960-02-29"
    assert item["customFields"][0]["value"] == ["a", "b"]


@pytest.mark.parametrize("count", [0, 201])
def test_record_count_limits(carecycle_emulator, count):
    r = upload(carecycle_emulator, {"records": [lead(i) for i in range(count)]})
    assert r.status_code == 400
    assert r.json()["errors"][0]["path"] == ["records"]
    assert carecycle_emulator.counts()["leads_uploaded"] == 0


def test_two_hundred_records_accepted(carecycle_emulator):
    r = upload(carecycle_emulator, {"records": [lead(i, externalId=f"b-{i}") for i in range(200)]})
    assert r.status_code == 200 and r.json()["succeeded"] == 200


def test_body_must_be_json_object_with_records(carecycle_emulator):
    emu = carecycle_emulator
    r = requests.post(
        f"{emu.url}/v2/leads/upload", headers={**H, "Content-Type": "application/json"}, data="{nope", timeout=10
    )
    assert r.status_code == 400 and r.json()["code"] == "VALIDATION_ERROR"
    assert upload(emu, {"leads": []}).status_code == 400
    assert upload(emu, [lead(1)]).status_code == 400


def test_request_log_records_batch(carecycle_emulator):
    emu = carecycle_emulator
    body = {"records": [lead(1, externalId="e1"), lead(2)]}
    upload(emu, body)
    entry = emu.request_log()[-1]
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    assert entry["batch"] == {
        "size": 2,
        "external_ids": ["e1", None],
        "fingerprint": hashlib.sha256(canonical).hexdigest(),
    }
    assert batch_fingerprint(body) == entry["batch"]["fingerprint"]
    assert entry["method"] == "POST" and entry["path"] == "/v2/leads/upload" and entry["status"] == 200
    assert entry["api_key_suffix"] == "_key" and entry["fault"] is None and entry["rate_limited"] is False
