"""CareCloud CRM -> careCycle: consent and account state travel with every lead (over real HTTP, both emulators).

Never skip, always tell: a customer careCycle holds who may no longer be called is sent again with the flag; one
never sent is not sent at all and counted as ``suppressed``.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from airflow_provider_carecycle.carecloud.consent import ConsentRules
from airflow_provider_carecycle.carecloud.hook import CareCloudCrmHook
from carecycle_emulator import CARECLOUD_ANCHOR as ANCHOR
from carecycle_emulator.carecloud.seed import CONSENT_IDS
from tests.transfers.test_carecloud import END, START, make_operator, run_context

FLAGS = ("doNotCall", "doNotSMS", "doNotEmail", "doNotMail")
CONTACT = ("doNotCall", "doNotSMS", "doNotEmail")


def feed(tmp_path, *, ledger=True, **kwargs):
    if ledger:
        kwargs.setdefault("sync_state_path", str(tmp_path / "ledger"))
    return make_operator(tmp_path, **kwargs).execute(run_context())


def settled(result):
    parts = ("uploaded", "rejected", "duplicates", "unchanged", "suppressed")
    return result["total"] == sum(result[k] for k in parts)


def leadable(emu, *, legacy=False, state=1, marketing=1):
    """Seeded customers in the interval that become valid leads (US phone, a zip), by consent shape and state."""
    out = []
    for c in emu.customers():
        info = c["personal_information"]
        if not (c["state"] == state and info["phone"].startswith("1") and info["address"]["zip"]):
            continue
        if not START.replace(tzinfo=None) <= _wall(c["last_change"]) < END.replace(tzinfo=None):
            continue
        if legacy != ("consents" not in info):
            continue
        value = (
            info["agreement"]["agreement_marketing_communication"]
            if legacy
            else next(x for x in info["consents"] if x["consent_id"] == CONSENT_IDS["marketing_communication"])[
                "consent_value"
            ]
        )
        if value == marketing:
            out.append(c)
    assert out, "the seed has such customers"
    return out


def _wall(text):
    from datetime import datetime

    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S")


def held(carecycle_emulator, customer_id):
    """What careCycle holds for a CRM customer (None: nothing)."""
    found = carecycle_emulator.get_customers_by_external_id().get(customer_id)
    return found[0] if found else None


def flags_of(lead):
    return {f for f in FLAGS if lead[f]}


def test_withdrawal_after_upload_is_sent_again_with_the_flag(carecloud_emulator, carecycle_emulator, tmp_path):
    first = feed(tmp_path)
    assert first["suppressed"] == 0 and settled(first)
    customer = leadable(carecloud_emulator)[0]
    assert flags_of(held(carecycle_emulator, customer["customer_id"])) == set()

    carecloud_emulator.set_consent(customer["customer_id"], "marketing_communication", 0, when=ANCHOR)
    second = feed(tmp_path)
    assert second["uploaded"] == 1 and second["suppressed"] == 0 and second["unchanged"] == first["uploaded"] - 1
    assert flags_of(held(carecycle_emulator, customer["customer_id"])) == set(CONTACT)
    assert settled(second)


def test_withdrawal_before_first_upload_is_suppressed_not_sent(carecloud_emulator, carecycle_emulator, tmp_path):
    customer = leadable(carecloud_emulator)[0]
    carecloud_emulator.set_consent(customer["customer_id"], "marketing_communication", 0, when=ANCHOR)
    result = feed(tmp_path)
    assert result["suppressed"] == 1 and settled(result)
    assert held(carecycle_emulator, customer["customer_id"]) is None
    again = feed(tmp_path)  # still never held: still suppressed, never sent
    assert again["suppressed"] == 1 and held(carecycle_emulator, customer["customer_id"]) is None


def test_deletion_after_upload_flags_every_channel_and_before_is_suppressed(
    carecloud_emulator, carecycle_emulator, tmp_path
):
    sent, never = leadable(carecloud_emulator)[:2]
    carecloud_emulator.set_state(never["customer_id"], 0, when=ANCHOR)
    first = feed(tmp_path)
    assert first["suppressed"] == 1 and held(carecycle_emulator, never["customer_id"]) is None
    carecloud_emulator.set_state(sent["customer_id"], 0, when=ANCHOR)
    second = feed(tmp_path)
    assert second["uploaded"] == 1 and second["suppressed"] == 1
    assert flags_of(held(carecycle_emulator, sent["customer_id"])) == set(FLAGS)


def test_the_deprecated_agreement_block_is_read_when_consents_is_absent(
    carecloud_emulator, carecycle_emulator, tmp_path
):
    feed(tmp_path)
    customer = leadable(carecloud_emulator, legacy=True)[0]
    carecloud_emulator.set_consent(customer["customer_id"], "marketing_communication", 0, when=ANCHOR)
    result = feed(tmp_path)
    assert result["uploaded"] == 1
    assert flags_of(held(carecycle_emulator, customer["customer_id"])) == set(CONTACT)


@pytest.mark.parametrize("policy", ["call", "do_not_call"])
def test_unset_consent_policy(carecloud_emulator, carecycle_emulator, tmp_path, policy):
    ids = [c["customer_id"] for c in leadable(carecloud_emulator)[:2]]
    for customer_id in ids:
        carecloud_emulator.set_consent(customer_id, "marketing_communication", 2, when=ANCHOR)
    result = feed(tmp_path, unset_consent=policy)
    if policy == "call":
        assert result["suppressed"] == 0
        assert all(held(carecycle_emulator, i) is not None and not flags_of(held(carecycle_emulator, i)) for i in ids)
    else:
        assert result["suppressed"] == len(ids) and all(held(carecycle_emulator, i) is None for i in ids)


@pytest.mark.parametrize("policy", ["call", "do_not_call"])
def test_inactive_policy(carecloud_emulator, carecycle_emulator, tmp_path, policy):
    ids = [c["customer_id"] for c in leadable(carecloud_emulator)[:2]]
    for customer_id in ids:
        carecloud_emulator.set_state(customer_id, 2, when=ANCHOR)
    first = feed(tmp_path, inactive=policy)
    if policy == "call":
        assert first["suppressed"] == 0 and all(held(carecycle_emulator, i) is not None for i in ids)
    else:
        assert first["suppressed"] == len(ids) and all(held(carecycle_emulator, i) is None for i in ids)


def test_inactive_policy_flags_a_customer_carecycle_holds(carecloud_emulator, carecycle_emulator, tmp_path):
    ids = [c["customer_id"] for c in leadable(carecloud_emulator)[:2]]
    for customer_id in ids:
        carecloud_emulator.set_state(customer_id, 2, when=ANCHOR)
    feed(tmp_path)  # sent while inactive customers may be called
    result = feed(tmp_path, inactive="do_not_call")
    assert result["uploaded"] == len(ids) and result["suppressed"] == 0
    assert all(flags_of(held(carecycle_emulator, i)) == {"doNotCall"} for i in ids)


def test_a_channel_consent_sets_only_its_channel(carecloud_emulator, carecycle_emulator, tmp_path):
    feed(tmp_path)
    customer = leadable(carecloud_emulator)[0]
    carecloud_emulator.set_consent(customer["customer_id"], "sms_offers", 0, when=ANCHOR)
    result = feed(tmp_path)
    assert result["uploaded"] == 1 and flags_of(held(carecycle_emulator, customer["customer_id"])) == {"doNotSMS"}


def test_regiven_consent_never_clears_a_flag_carecycle_holds(carecloud_emulator, carecycle_emulator, tmp_path):
    customer = leadable(carecloud_emulator)[0]
    feed(tmp_path)
    carecloud_emulator.set_consent(customer["customer_id"], "marketing_communication", 0, when=ANCHOR)
    feed(tmp_path)
    carecloud_emulator.set_consent(customer["customer_id"], "marketing_communication", 1, when=ANCHOR)
    feed(tmp_path)  # the lead changed (no flag now), so it is sent; careCycle keeps its flag
    assert held(carecycle_emulator, customer["customer_id"])["doNotCall"] is True


def test_without_a_ledger_a_do_not_call_customer_is_sent_flagged(carecloud_emulator, carecycle_emulator, tmp_path):
    customer = leadable(carecloud_emulator)[0]
    carecloud_emulator.set_consent(customer["customer_id"], "marketing_communication", 0, when=ANCHOR)
    result = feed(tmp_path, ledger=False)
    assert result["suppressed"] == 0
    assert flags_of(held(carecycle_emulator, customer["customer_id"])) == set(CONTACT)


def test_the_incremental_read_catches_a_consent_change(carecloud_emulator, carecycle_emulator, tmp_path):
    def run(end):
        return make_operator(
            tmp_path, incremental=True, sync_state_path=str(tmp_path / "ledger"), changed_before=end.isoformat()
        ).execute(run_context())

    first = run(END)
    customer = leadable(carecloud_emulator)[0]
    carecloud_emulator.set_consent(
        customer["customer_id"], "marketing_communication", 0, when=ANCHOR + timedelta(hours=1)
    )
    second = run(END + timedelta(hours=2))
    assert second["crm_rows"] >= 1 and second["uploaded"] == 1 and second["watermark"] > first["watermark"]
    assert flags_of(held(carecycle_emulator, customer["customer_id"])) == set(CONTACT)


def test_the_catalogue_is_read_once_per_run(carecloud_emulator, carecycle_emulator, tmp_path):
    feed(tmp_path)
    paths = [e["path"] for e in carecloud_emulator.request_log()]
    assert sum(p.endswith("/agreements") for p in paths) == 1
    assert sum(p.endswith("/communication-channels") for p in paths) == 1


def test_a_consent_mapping_the_crm_does_not_list_is_a_clear_error(carecloud_emulator, carecycle_emulator, tmp_path):
    with pytest.raises(ValueError, match="'phone_marketing', which the CRM's consent catalogue"):
        feed(tmp_path, consent_mapping={"phone_marketing": "doNotCall"})
    with pytest.raises(ValueError, match="not a careCycle flag"):
        feed(tmp_path, consent_mapping={"marketing_communication": "doNotFax"})
    assert carecycle_emulator.counts()["leads_uploaded"] == 0


def test_a_custom_mapping_and_odd_values_fail_closed(carecloud_emulator):
    rules = ConsentRules.resolve(CareCloudCrmHook(), {"profiling": "doNotCall"}, unset_consent="call", inactive="call")
    consent = CONSENT_IDS["profiling"]
    assert rules.flags(
        {"state": 1, "personal_information": {"consents": [{"consent_id": consent, "consent_value": 0}]}}
    ) == ("doNotCall",)
    assert (
        rules.flags({"state": 1, "personal_information": {"consents": [{"consent_id": consent, "consent_value": 1}]}})
        == ()
    )
    odd = {"state": 1, "personal_information": {"consents": [{"consent_id": consent, "consent_value": "x"}]}}
    assert rules.flags(odd) == ("doNotCall",)  # in doubt about consent, do not call
    assert rules.flags({"state": 7}) == ("doNotCall",) and rules.flags({}) == ("doNotCall",)
    assert rules.flags({"state": 0}) == tuple(sorted(FLAGS))
