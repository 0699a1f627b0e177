"""The CRM lead feed run twice: the second run reads from the watermark and sends only the leads that changed.

Both runs go through ``dag.test()`` against the careCycle and CareCloud CRM emulators; what reached careCycle is
read from the emulator's request log, not from the operator's own figures.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from dev.dag_loader import task_states

# crm_feed_setup: the CRM feed's fixture (a fresh campaign, a fast dialer, CRM changes inside DAY), shared
from tests.example_dags.test_example_dags import CRM_FEED, DAY, crm_feed_setup, manual_run  # noqa: F401

NEXT_DAY = DAY + timedelta(days=1)


def upload_batches(emulator, since: int) -> list[list[str]]:
    """The ``externalId`` lists of the lead uploads the careCycle emulator received after its ``since``-th request."""
    return [
        r["batch"]["external_ids"]
        for r in emulator.request_log()[since:]
        if r["method"] == "POST" and r["path"].rstrip("/") == "/v2/leads/upload" and r.get("batch")
    ]


@pytest.mark.airflow_dag
def test_the_second_crm_feed_run_sends_only_the_changed_leads(
    run_dag_file,
    crm_feed_setup,  # noqa: F811 (the fixture imported above)
    carecycle_emulator,
    carecloud_emulator,
    tmp_path,
):
    campaign = crm_feed_setup
    conf = {"output_root": tmp_path.as_uri(), "campaign_id": campaign["id"]}
    first = run_dag_file(CRM_FEED, **manual_run(DAY, "with_logical_date"), run_conf=conf)
    assert set(task_states(first).values()) == {"success"}
    first_summary = first.get_task_instance("crm_to_leads").xcom_pull(task_ids="crm_to_leads")
    assert first_summary["uploaded"] > 3 and first_summary["unchanged"] == 0

    # the next day: two uploaded customers get a new email, a third only a newer last_change (a CRM edit to a field
    # careCycle does not receive), all after the watermark the first run left
    # (customers the fast dialer heard say "Do Not Call" are left out: the write-back changed them in the CRM, so the
    # next run sends them again, flagged, and they are neither "changed" nor "touched" here)
    in_carecycle = carecycle_emulator.get_customers_by_external_id()
    uploaded_ids = [
        c["customer_id"]
        for c in carecloud_emulator.customers()
        if c["customer_id"] in in_carecycle and not in_carecycle[c["customer_id"]][0]["doNotCall"]
    ]
    changed, touched = uploaded_ids[:2], uploaded_ids[2]
    when = NEXT_DAY.replace(tzinfo=None) + timedelta(hours=9)
    for n, customer_id in enumerate(changed):
        carecloud_emulator.touch_customer(customer_id, when=when, email=f"moved.{n}@example.com")
    carecloud_emulator.touch_customer(touched, when=when)
    mark = len(carecycle_emulator.request_log())

    second = run_dag_file(CRM_FEED, **manual_run(NEXT_DAY, "with_logical_date"), run_conf=conf)

    assert set(task_states(second).values()) == {"success"}
    summary = second.get_task_instance("crm_to_leads").xcom_pull(task_ids="crm_to_leads")
    # only the changed leads reached careCycle, in one request; and, when the fast dialer heard a "Do Not Call" in the
    # first run, the customers whose consent the first run's write-back withdrew in the CRM: the consent loop makes
    # them changed leads too, sent again with doNotCall (never with anything else)
    batches = upload_batches(carecycle_emulator, mark)
    after = carecycle_emulator.get_customers_by_external_id()
    assert len(batches) == 1 and set(changed) <= set(batches[0])
    assert all(after[c][0]["doNotCall"] for c in set(batches[0]) - set(changed))
    assert summary["uploaded"] == len(batches[0])
    # from the watermark: the three touched customers (plus the overlap before it), not the whole first day again
    assert 3 <= summary["crm_rows"] < first_summary["crm_rows"]
    assert summary["unchanged"] >= 1
    assert summary["crm_rows"] == sum(
        summary[key] for key in ("uploaded", "unchanged", "rejected", "duplicates", "suppressed")
    )
    assert [after[c][0]["email"] for c in changed] == ["moved.0@example.com", "moved.1@example.com"]
    assert summary["watermark"] == when.isoformat() + "+00:00"
