"""The CareCloud emulator's consents, account state, consent catalogue, channels and whole-record PUT."""

from __future__ import annotations

import copy

import pytest
import requests

from carecycle_emulator.carecloud.seed import CONSENT_IDS
from carecycle_emulator.carecloud.server import DEFAULT_APP_ID, DEFAULT_LOGIN, DEFAULT_PASSWORD

CREDENTIALS = {"user_external_application_id": DEFAULT_APP_ID, "login": DEFAULT_LOGIN, "password": DEFAULT_PASSWORD}


@pytest.fixture
def session(carecloud_emulator):
    answer = requests.post(f"{carecloud_emulator.base_url}/users/actions/login", json=CREDENTIALS, timeout=5)
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {answer.json()['data']['bearer_token']}"
    s.base = carecloud_emulator.base_url  # type: ignore[attr-defined]
    return s


def get_customer(session, customer_id):
    answer = session.get(f"{session.base}/customers/{customer_id}", timeout=5)
    assert answer.status_code == 200
    return answer.json()["data"]


def put_customer(session, customer_id, customer, **extra):
    return session.put(f"{session.base}/customers/{customer_id}", json={"customer": customer, **extra}, timeout=5)


def marketing(customer):
    consent_id = CONSENT_IDS["marketing_communication"]
    return next(c for c in customer["personal_information"]["consents"] if c["consent_id"] == consent_id)


def with_consents(emu):
    return next(c for c in emu.customers() if "consents" in c["personal_information"])


def test_customers_carry_state_doi_phone_and_consents_or_the_deprecated_agreement(carecloud_emulator):
    customers = carecloud_emulator.customers()
    assert {c["state"] for c in customers} == {1, 2}
    assert any(c["doi_phone"] is None for c in customers) and any(c["doi_phone"] for c in customers)
    listed = [c for c in customers if "consents" in c["personal_information"]]
    legacy = [c for c in customers if "agreement" in c["personal_information"]]
    assert listed and legacy and not set(map(id, listed)) & set(map(id, legacy))
    assert all({x["consent_value"] for x in c["personal_information"]["consents"]} <= {1, 2} for c in listed)
    assert any(marketing(c)["consent_value"] == 2 for c in listed)  # "not set" occurs
    assert set(legacy[0]["personal_information"]["agreement"]) >= {"agreement_marketing_communication"}


def test_consent_catalogue_and_channels(carecloud_emulator, session):
    body = session.get(f"{session.base}/agreements", timeout=5).json()["data"]
    text_ids = {c["text_id"] for c in body["agreements"]}
    assert {"personal_data_processing", "marketing_communication", "profiling"} <= text_ids
    assert body["total_items"] == len(body["agreements"])
    assert session.get(f"{session.base}/consents", timeout=5).json() == {"data": body}
    channels = session.get(f"{session.base}/communication-channels", timeout=5).json()["data"]
    by_text = {c["text_id"]: c["communication_channel_id"] for c in channels["communication_channels"]}
    assert {"email", "sms", "white_post"} <= set(by_text) and not {"phone", "call", "telephone"} & set(by_text)
    sms = session.get(f"{session.base}/agreements", params={"communication_channel_id": by_text["sms"]}, timeout=5)
    assert [c["text_id"] for c in sms.json()["data"]["agreements"]] == ["sms_offers"]
    paged = session.get(f"{session.base}/agreements", params={"count": 2, "offset": 1}, timeout=5).json()["data"]
    assert len(paged["agreements"]) == 2 and paged["total_items"] == len(body["agreements"])


def test_set_consent_and_state_bump_last_change(carecloud_emulator):
    emu = carecloud_emulator
    customer = with_consents(emu)
    after = emu.set_consent(customer["customer_id"], "marketing_communication", 0)
    assert marketing(after)["consent_value"] == 0
    assert after["last_change"] > customer["last_change"] and marketing(after)["last_change"] == after["last_change"]
    legacy = next(c for c in emu.customers() if "agreement" in c["personal_information"])
    changed = emu.set_consent(legacy["customer_id"], "marketing_communication", 0)
    assert changed["personal_information"]["agreement"]["agreement_marketing_communication"] == 0
    assert "consents" not in changed["personal_information"]
    deleted = emu.set_state(customer["customer_id"], 0)
    assert deleted["state"] == 0 and deleted["last_change"] >= after["last_change"]
    assert any(c["customer_id"] == customer["customer_id"] for c in emu.customers())  # still listed


def test_put_replaces_the_whole_record_and_bumps_last_change(carecloud_emulator, session):
    customer = with_consents(carecloud_emulator)
    customer_id = customer["customer_id"]
    read = get_customer(session, customer_id)
    changed = copy.deepcopy(read)
    marketing(changed)["consent_value"] = 0
    assert put_customer(session, customer_id, changed).status_code == 204
    again = get_customer(session, customer_id)
    assert marketing(again)["consent_value"] == 0
    assert again["last_change"] > read["last_change"] and marketing(again)["last_change"] == again["last_change"]
    unchanged = {c["consent_id"]: c for c in read["personal_information"]["consents"]}
    for consent in again["personal_information"]["consents"]:
        if consent["consent_id"] != CONSENT_IDS["marketing_communication"]:
            assert consent == unchanged[consent["consent_id"]]  # untouched consents keep their last_change
    assert again["personal_information"]["email"] == read["personal_information"]["email"]
    # a field the body leaves out is lost: the replace semantics the client must respect
    partial = {"personal_information": {"first_name": "Only"}}
    assert put_customer(session, customer_id, partial).status_code == 204
    lost = get_customer(session, customer_id)
    assert lost["personal_information"].get("email") is None and "consents" not in lost["personal_information"]
    assert lost["doi_phone"] is None and carecloud_emulator.counts()["puts"] == 2


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"nope": 1}, 400),
        ({"customer": {"personal_information": {"consents": [{"consent_id": "x", "consent_value": 0}]}}}, 400),
        ({"customer": {"personal_information": {"consents": [{"consent_id": CONSENT_IDS["profiling"],
                                                              "consent_value": 7}]}}}, 400),
    ],
)  # fmt: skip
def test_put_refuses_malformed_bodies(carecloud_emulator, session, body, status):
    customer_id = with_consents(carecloud_emulator)["customer_id"]
    answer = session.put(f"{session.base}/customers/{customer_id}", json=body, timeout=5)
    assert answer.status_code == status and "error" in answer.json()
    assert session.put(f"{session.base}/customers/nobody", json={"customer": {}}, timeout=5).status_code == 404


def test_edit_after_gets_is_a_concurrent_crm_user(carecloud_emulator, session):
    emu = carecloud_emulator
    customer_id = with_consents(emu)["customer_id"]
    emu.edit_after_gets(customer_id, gets=1, last_name="Edited")
    first = get_customer(session, customer_id)  # answered before the edit
    assert first["personal_information"]["last_name"] != "Edited"
    second = get_customer(session, customer_id)
    assert second["personal_information"]["last_name"] == "Edited"
    assert second["last_change"] > first["last_change"]


def test_control_routes_over_http(carecloud_emulator):
    emu = carecloud_emulator
    customer_id = with_consents(emu)["customer_id"]
    url = f"{emu.url}/_emulator/customers/{customer_id}"
    consent = requests.post(f"{url}/consent", json={"text_id": "marketing_communication", "value": 0}, timeout=5)
    assert consent.status_code == 200 and marketing(consent.json())["consent_value"] == 0
    assert requests.post(f"{url}/state", json={"state": 0}, timeout=5).json()["state"] == 0
