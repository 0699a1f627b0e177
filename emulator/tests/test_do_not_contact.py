"""careCycle's do-not-contact flags in the emulator: stored from uploads, returned on customers, obeyed by the dialer,
set by a "Do Not Call" disposition."""

from __future__ import annotations

import requests

from carecycle_emulator.carecycle.vocabulary import DO_NOT_CALL_DISPOSITION

H = {"x-api-key": "cc_test_key"}
FLAGS = ("doNotCall", "doNotSMS", "doNotEmail", "doNotMail")


def upload(emu, records):
    answer = requests.post(f"{emu.url}/v2/leads/upload", headers=H, json={"records": records}, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["succeeded"] == len(records)
    return answer.json()


def by_external_id(emu, external_id):
    (customer,) = emu.get_customers_by_external_id()[external_id]
    return customer


def lead(i, **flags):
    return {"phoneNumber": f"555888{i:04d}", "postalCode": "85001", "externalId": f"dnc-{i}", **flags}


def test_upload_stores_every_flag_and_returns_it(carecycle_emulator):
    emu = carecycle_emulator
    upload(
        emu, [lead(0), lead(1, doNotCall=True, doNotSMS=True, doNotEmail=True, doNotMail=True), lead(2, doNotSMS=True)]
    )
    assert {f: by_external_id(emu, "dnc-0")[f] for f in FLAGS} == dict.fromkeys(FLAGS, False)
    assert {f: by_external_id(emu, "dnc-1")[f] for f in FLAGS} == dict.fromkeys(FLAGS, True)
    assert {f: by_external_id(emu, "dnc-2")[f] for f in FLAGS} == {**dict.fromkeys(FLAGS, False), "doNotSMS": True}
    # the public API returns them too, on the list and on the single customer
    customer_id = by_external_id(emu, "dnc-1")["id"]
    single = requests.get(f"{emu.url}/v2/customers/{customer_id}", headers=H, timeout=10).json()
    assert single["doNotCall"] is True and single["doNotMail"] is True


def test_flag_left_out_keeps_its_value_and_false_clears_it(carecycle_emulator):
    emu = carecycle_emulator
    upload(emu, [lead(0, doNotCall=True)])
    upload(emu, [lead(0, firstName="Mary")])  # an upsert without the flag keeps it
    assert by_external_id(emu, "dnc-0")["doNotCall"] is True
    upload(emu, [lead(0, doNotCall=False)])  # an explicit false is the sender's word
    assert by_external_id(emu, "dnc-0")["doNotCall"] is False


def test_dialer_never_dials_a_do_not_call_customer(carecycle_emulator):
    emu = carecycle_emulator
    camp = emu.add_campaign(name="Respect DNC", status="active", takes_new_leads=True)
    upload(emu, [lead(i, doNotCall=i % 2 == 0) for i in range(6)])
    assert emu.tick_dialer(40) > 0
    for i in range(6):
        customer = by_external_id(emu, f"dnc-{i}")
        status = next(c["status"] for c in customer["campaigns"] if c["id"] == camp["id"])
        if i % 2 == 0:
            assert customer["totalCalls"] == 0 and status == "skipped"
            assert customer["lastCallDate"] is None
        else:
            assert customer["totalCalls"] > 0


def test_flag_uploaded_after_calls_started_stops_the_dialing(carecycle_emulator):
    emu = carecycle_emulator
    emu.add_campaign(name="Stop me", status="active", takes_new_leads=True, max_attempts=10)
    upload(emu, [lead(0)])
    emu.tick_dialer(1)
    calls = by_external_id(emu, "dnc-0")["totalCalls"]
    upload(emu, [lead(0, doNotCall=True)])
    emu.tick_dialer(20)
    assert by_external_id(emu, "dnc-0")["totalCalls"] == calls


def test_do_not_call_disposition_sets_the_flag_and_ends_the_dialing(carecycle_emulator):
    emu = carecycle_emulator
    camp = emu.add_campaign(name="Heard it", status="active", takes_new_leads=True, max_attempts=10)
    upload(emu, [lead(0)])
    customer = by_external_id(emu, "dnc-0")
    assert customer["doNotCall"] is False
    after = emu.record_call(customer["id"], DO_NOT_CALL_DISPOSITION, campaign_id=camp["id"])
    assert after["doNotCall"] is True and after["lastCallDisposition"] == DO_NOT_CALL_DISPOSITION
    calls = after["totalCalls"]
    emu.tick_dialer(20)
    assert by_external_id(emu, "dnc-0")["totalCalls"] == calls
    # another disposition leaves the flag alone
    upload(emu, [lead(1)])
    other = emu.record_call(by_external_id(emu, "dnc-1")["id"], "Not Interested")
    assert other["doNotCall"] is False


def test_seeded_customers_with_a_do_not_call_call_carry_the_flag(carecycle_emulator):
    emu = carecycle_emulator
    customers = emu.query_customers({"includeTestNumbers": True})
    flagged = [c for c in customers if c["lastCallDisposition"] == DO_NOT_CALL_DISPOSITION]
    assert flagged and all(c["doNotCall"] for c in flagged)
    assert not any(c["doNotCall"] for c in customers if c["totalCalls"] == 0)
