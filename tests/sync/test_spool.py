"""One lead item from validation to the spool, the request and the ledger: every form of a lead made once."""

from __future__ import annotations

import json
from typing import Any

from airflow_provider_carecycle.leads import LeadValidator
from airflow_provider_carecycle.sync.engine import LeadUploader
from airflow_provider_carecycle.sync.ledger import LeadHasher, SyncLedger
from airflow_provider_carecycle.sync.spool import LeadItem, LeadSpool, lead_text, record_text

HASHER = LeadHasher("destination-a")


def item(row: int, lead: dict[str, Any], hasher: LeadHasher | None = HASHER) -> LeadItem:
    identity = LeadValidator().identity(lead)
    return LeadItem.of(row, identity, lead, record_text({"source": row}), hasher)


def test_an_item_holds_the_compact_sorted_text_its_identity_and_its_ledger_hashes():
    lead = {"phoneNumber": "+12125550142", "firstName": "Zoë", "externalId": "e1"}
    made = item(3, lead)
    assert made.text == '{"externalId":"e1","firstName":"Zoë","phoneNumber":"+12125550142"}' == lead_text(lead)
    assert (made.row, made.identity, made.external_id) == (3, "ext:e1", "e1")
    assert made.hashes == HASHER("ext:e1", made.text)
    assert made.original == '{"source":3}'
    by_phone = item(4, {"phoneNumber": "+12125550143"}, hasher=None)
    assert (by_phone.identity, by_phone.external_id, by_phone.hashes) == ("phone:+12125550143", None, None)


def test_the_spool_gives_back_the_very_values_it_was_given_in_first_seen_order():
    spool = LeadSpool(HASHER)
    made = [item(row, {"externalId": f"e{row}", "phoneNumber": f"+1212555{row:04d}"}) for row in range(1, 6)]
    try:
        assert not any(spool.add(m) for m in made)
        assert [list(batch) for batch in spool.batches(2)] == [made[0:2], made[2:4], made[4:5]]
        assert list(spool.hashes_to_send()) == [m.hashes for m in made]
    finally:
        spool.close()


def test_a_duplicate_is_merged_into_the_earlier_lead_and_hashed_again():
    spool = LeadSpool(HASHER)
    try:
        assert not spool.add(item(1, {"externalId": "e1", "phoneNumber": "+12125550142", "city": "Albany"}))
        assert spool.add(item(2, {"externalId": "e1", "firstName": "Ann"}))
        ((merged,),) = spool.batches(10)
        lead = {"externalId": "e1", "phoneNumber": "+12125550142", "city": "Albany", "firstName": "Ann"}
        assert merged == LeadItem.of(2, "ext:e1", lead, record_text({"source": 2}), HASHER)
        assert spool.count == 1
    finally:
        spool.close()


class RecordingHook:
    destination_id = "destination-a"

    def __init__(self) -> None:
        self.sent: list[list[str]] = []

    def upload_lead_texts(self, texts: list[str]) -> dict[str, Any]:
        self.sent.append(list(texts))
        return {"succeeded": len(texts), "failed": 0, "errors": []}


def test_the_request_carries_the_spooled_texts_and_the_ledger_the_hashes_of_exactly_those(tmp_path):
    records = [
        {"externalId": f"e{i}", "phoneNumber": f"(212) 555-{i:04d}", "city": " Albany ", "postalCode": 10001}
        for i in range(5)
    ]
    hook = RecordingHook()
    ledger = tmp_path / "ledger"
    LeadUploader(hook, LeadValidator(), batch_size=2, sync_state_path=str(ledger)).run(records)

    validator = LeadValidator()
    expected = [lead_text(validator.validate(record).lead or {}) for record in records]
    assert [text for request in hook.sent for text in request] == expected
    assert json.loads(expected[0]) == {
        "city": "Albany",
        "externalId": "e0",
        "phoneNumber": "+12125550000",
        "postalCode": "10001",
    }
    with SyncLedger(str(ledger), destination="destination-a") as opened:
        probe = [(n, *opened.hasher(f"ext:e{n}", text)) for n, text in enumerate(expected)]
        assert list(opened.unchanged(probe)) == list(range(5))


def test_the_hook_sends_the_texts_as_the_request_body_byte_for_byte(carecycle_connection, requests_mock):
    from airflow_provider_carecycle.hooks.carecycle import CareCycleHook

    carecycle_connection(host="https://api.test", extra={"requests_per_minute": 100000})
    requests_mock.post("https://api.test/v2/leads/upload", json={"succeeded": 2, "failed": 0, "errors": []})
    texts = ['{"externalId":"e1","firstName":"Zoë"}', '{"externalId":"e2","phoneNumber":"+12125550142"}']

    assert CareCycleHook().upload_lead_texts(texts)["succeeded"] == 2
    (request,) = requests_mock.request_history
    assert request.body == ('{"records":[' + ",".join(texts) + "]}").encode()
    assert request.headers["Content-Type"] == "application/json"


def test_the_emulator_stores_leads_sent_as_texts(carecycle_emulator):
    from airflow_provider_carecycle.hooks.carecycle import CareCycleHook

    text = lead_text({"phoneNumber": "+13055550100", "postalCode": "33101", "externalId": "text-1", "city": "Doral"})
    answer = CareCycleHook().upload_lead_texts([text])
    assert (answer["succeeded"], answer["failed"]) == (1, 0)
    (stored,) = carecycle_emulator.get_customers_by_external_id()["text-1"]
    assert stored["city"] == "Doral"
