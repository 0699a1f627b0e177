"""careCycle -> CareCloud CRM: a do-not-call said on a call withdraws the consent in the CRM (real HTTP, emulators).

The write is read-modify-write over a whole-record PUT: nothing another CRM user changed meanwhile may be lost.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from airflow_provider_carecycle._compat import AirflowException
from airflow_provider_carecycle.transfers.carecloud_consent import CareCycleDoNotCallToCareCloudOperator
from carecycle_emulator.carecloud.seed import CONSENT_IDS
from carecycle_emulator.carecycle.vocabulary import DO_NOT_CALL_DISPOSITION
from tests.transfers.test_carecloud_consent import feed, held, leadable

H = {"x-api-key": "cc_test_key"}


def write_back(tmp_path, **kwargs):
    kwargs.setdefault("incremental", False)
    return CareCycleDoNotCallToCareCloudOperator(task_id="write_back", **kwargs).execute({})


def marketing(customer):
    info = customer["personal_information"]
    if "consents" not in info:
        return info["agreement"]["agreement_marketing_communication"]
    return next(c for c in info["consents"] if c["consent_id"] == CONSENT_IDS["marketing_communication"])[
        "consent_value"
    ]


def crm(carecloud_emulator, customer_id):
    return next(c for c in carecloud_emulator.customers() if c["customer_id"] == customer_id)


def said_do_not_call(carecloud_emulator, carecycle_emulator, tmp_path, *, legacy=False):
    """Feed the CRM's customers to careCycle; one of them says "do not call" on a call. Return its CRM record."""
    feed(tmp_path)
    customer = leadable(carecloud_emulator, legacy=legacy)[0]
    carecycle_emulator.record_call(held(carecycle_emulator, customer["customer_id"])["id"], DO_NOT_CALL_DISPOSITION)
    return crm(carecloud_emulator, customer["customer_id"])


def same_but_consent(before, after):
    """Everything but the marketing consent (and the times the CRM stamps) is exactly as before."""

    def strip(c):
        c = {**c, "personal_information": dict(c["personal_information"])}
        c.pop("last_change")
        info = c["personal_information"]
        if "consents" in info:
            info["consents"] = [
                {k: v for k, v in x.items() if k != "last_change"}
                for x in info["consents"]
                if x["consent_id"] != CONSENT_IDS["marketing_communication"]
            ]
        else:
            info["agreement"] = {k: v for k, v in info["agreement"].items() if k != "agreement_marketing_communication"}
        return c

    return strip(before) == strip(after)


def test_a_do_not_call_heard_on_a_call_withdraws_the_consent_and_nothing_else(
    carecloud_emulator, carecycle_emulator, tmp_path
):
    before = said_do_not_call(carecloud_emulator, carecycle_emulator, tmp_path)
    result = write_back(tmp_path)
    assert result["withdrawn"] == 1 and result["failed"] == 0 and result["conflicts_retried"] == 0
    after = crm(carecloud_emulator, before["customer_id"])
    assert marketing(before) == 1 and marketing(after) == 0
    assert same_but_consent(before, after) and after["last_change"] > before["last_change"]
    assert carecloud_emulator.counts()["puts"] == 1
    again = write_back(tmp_path)  # already withdrawn: no write
    assert again["withdrawn"] == 0 and again["already_withdrawn"] == 1 and carecloud_emulator.counts()["puts"] == 1


def test_the_deprecated_agreement_block_is_written_in_its_own_shape(carecloud_emulator, carecycle_emulator, tmp_path):
    before = said_do_not_call(carecloud_emulator, carecycle_emulator, tmp_path, legacy=True)
    assert write_back(tmp_path)["withdrawn"] == 1
    after = crm(carecloud_emulator, before["customer_id"])
    assert marketing(after) == 0 and "consents" not in after["personal_information"]
    assert same_but_consent(before, after)


def test_a_concurrent_crm_edit_during_the_write_back_is_not_lost(carecloud_emulator, carecycle_emulator, tmp_path):
    before = said_do_not_call(carecloud_emulator, carecycle_emulator, tmp_path)
    # a CRM user saves the customer right after the write-back first read it
    carecloud_emulator.edit_after_gets(before["customer_id"], gets=1, last_name="Edited", email="new@example.com")
    result = write_back(tmp_path)
    assert result["withdrawn"] == 1 and result["conflicts_retried"] == 1 and result["failed"] == 0
    after = crm(carecloud_emulator, before["customer_id"])
    assert marketing(after) == 0
    assert after["personal_information"]["last_name"] == "Edited"
    assert after["personal_information"]["email"] == "new@example.com"
    assert carecloud_emulator.counts()["puts"] == 1  # the stale record was never written


def test_a_customer_that_keeps_changing_fails_after_bounded_attempts(carecloud_emulator, carecycle_emulator, tmp_path):
    before = said_do_not_call(carecloud_emulator, carecycle_emulator, tmp_path)
    for n in range(1, 20):  # every read is followed by another user's save
        carecloud_emulator.edit_after_gets(before["customer_id"], gets=n, last_name=f"Edit{n}")
    operator = CareCycleDoNotCallToCareCloudOperator(task_id="write_back", incremental=False, max_attempts=3)
    with pytest.raises(AirflowException, match="1 do-not-call"):
        operator.execute({})
    assert operator.outcome.failed == 1 and operator.outcome.conflicts_retried == 3
    assert carecloud_emulator.counts()["puts"] == 0 and marketing(crm(carecloud_emulator, before["customer_id"])) == 1


def test_dry_run_lists_and_writes_nothing(carecloud_emulator, carecycle_emulator, tmp_path):
    before = said_do_not_call(carecloud_emulator, carecycle_emulator, tmp_path)
    result = write_back(tmp_path, dry_run=True)
    assert result["dry_run"] is True and result["to_withdraw"] == [before["customer_id"]]
    assert carecloud_emulator.counts()["puts"] == 0 and marketing(crm(carecloud_emulator, before["customer_id"])) == 1


def test_customers_not_from_the_crm_and_deleted_ones_cost_no_write(carecloud_emulator, carecycle_emulator, tmp_path):
    import requests

    records = [
        {"phoneNumber": "5557770001", "postalCode": "85001", "externalId": "sql-row-1", "doNotCall": True},
        {"phoneNumber": "5557770002", "postalCode": "85001", "doNotCall": True},
    ]
    assert requests.post(f"{carecycle_emulator.url}/v2/leads/upload", headers=H, json={"records": records}).ok
    before = said_do_not_call(carecloud_emulator, carecycle_emulator, tmp_path)
    carecloud_emulator.set_state(before["customer_id"], 0)
    result = write_back(tmp_path)
    assert result["not_from_crm"] >= 2 and result["already_withdrawn"] == 1 and result["withdrawn"] == 0
    assert carecloud_emulator.counts()["puts"] == 0


def test_incremental_reads_only_customers_called_since_the_last_run(carecloud_emulator, carecycle_emulator, tmp_path):
    feed(tmp_path)
    old, new = leadable(carecloud_emulator)[:2]
    five_days_ago = datetime.now(timezone.utc) - timedelta(days=5)
    for customer, when in ((old, five_days_ago), (new, None)):
        lead = held(carecycle_emulator, customer["customer_id"])
        carecycle_emulator.record_call(lead["id"], DO_NOT_CALL_DISPOSITION, when=when)
    state = str(tmp_path / "write-back.json")
    first = write_back(tmp_path, incremental=True, state_path=state)  # no state yet: every customer
    assert first["withdrawn"] == 2 and first["watermark"] == datetime.now(timezone.utc).date().isoformat()
    third = leadable(carecloud_emulator)[2]
    carecycle_emulator.record_call(held(carecycle_emulator, third["customer_id"])["id"], DO_NOT_CALL_DISPOSITION)
    second = write_back(tmp_path, incremental=True, state_path=state)
    # the call of five days ago is not read again; today's two are (one already withdrawn: no write)
    assert second["candidates"] == 2 and second["withdrawn"] == 1 and second["already_withdrawn"] == 1
    assert marketing(crm(carecloud_emulator, third["customer_id"])) == 0
    queries = [e for e in carecycle_emulator.request_log() if e["path"] == "/v2/customers"]
    assert "lastCallStartDate" in str(queries[-1]) and "lastCallStartDate" not in str(queries[0])


def test_arguments_are_checked(carecloud_emulator, carecycle_emulator, tmp_path):
    with pytest.raises(ValueError, match="state_path"):
        CareCycleDoNotCallToCareCloudOperator(task_id="w")
    with pytest.raises(ValueError, match="max_attempts"):
        CareCycleDoNotCallToCareCloudOperator(task_id="w", incremental=False, max_attempts=0)
    with pytest.raises(ValueError, match="'phone_consent' is not in the CRM's consent catalogue"):
        write_back(tmp_path, consent_text_id="phone_consent")


def test_no_patient_data_in_logs_or_xcom(carecloud_emulator, carecycle_emulator, tmp_path, captured_logs):
    from carecycle_emulator.carecloud.seed import FIRST_NAMES, LAST_NAMES

    before = said_do_not_call(carecloud_emulator, carecycle_emulator, tmp_path)
    carecloud_emulator.edit_after_gets(before["customer_id"], gets=1, last_name="Edited")
    result = write_back(tmp_path, dry_run=False)
    text = captured_logs() + repr(result)
    info = before["personal_information"]
    assert not [v for v in (*FIRST_NAMES, *LAST_NAMES, "Edited", info["email"], info["phone"]) if v in text]
    assert before["customer_id"] not in repr(result)  # ids only in a dry run's to_withdraw
