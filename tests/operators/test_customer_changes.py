"""The customers export's ``changed`` modes against the careCycle emulator: ``touched`` (created or called in the
interval, each once) and ``diff`` (new, changed and disappeared customers through a state of hashes)."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat

import pytest
import requests

from airflow_provider_carecycle.customer_changes import STATE_FORMAT, CustomerDiff
from airflow_provider_carecycle.operators.customers import CareCycleExtractCustomersOperator
from airflow_provider_carecycle.storage import iter_records

FAST = {"requests_per_minute": 6000}
H = {"x-api-key": "cc_test_key"}
FIELDS = ["id", "status", "state", "totalCalls", "lastCallDate", "lastCallDisposition"]


def export(tmp_path, name, **kwargs):
    op = CareCycleExtractCustomersOperator(
        task_id="customers", output_path=str(tmp_path / name), hook_params=FAST, fields=FIELDS, **kwargs
    )
    summary = op.execute({})
    return summary, list(iter_records(summary["path"]))


def upload(emu, prefix, count):
    records = [
        {"phoneNumber": f"555{prefix}{i:04d}", "postalCode": "85001", "externalId": f"{prefix}-{i}"}
        for i in range(count)
    ]
    assert requests.post(f"{emu.url}/v2/leads/upload", headers=H, json={"records": records}, timeout=10).ok


def in_window(value, start, end):
    return value is not None and start.isoformat()[:19] <= value[:19] < end.isoformat()[:19]


def test_touched_exports_each_customer_created_or_called_in_the_interval_once(carecycle_emulator, tmp_path):
    emu = carecycle_emulator
    today = dt.datetime.now(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    tomorrow = today + dt.timedelta(days=1)
    emu.add_campaign(name="New leads", status="active", takes_new_leads=True)
    upload(emu, "444", 12)  # created today; some of them called today too
    assert emu.tick_dialer(3, at=today + dt.timedelta(minutes=1)) > 0  # older customers in the seeded campaigns too
    emu.tick_dialer(1, at=tomorrow + dt.timedelta(hours=1))  # called after the interval: not "touched" in it

    summary, rows = export(tmp_path, "touched.jsonl", changed="touched", since=today, until=tomorrow)

    everyone = emu.query_customers({})
    expected = {
        c["id"]
        for c in everyone
        if in_window(c["createdAt"], today, tomorrow) or in_window(c["lastCallDate"], today, tomorrow)
    }
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)) and set(ids) == expected
    assert summary["created"] == 12 and summary["called"] > 0 and summary["count"] == len(expected)
    assert summary["changed"] == "touched"
    assert {tuple(r) for r in rows} == {(*FIELDS, "extractedAt")}
    stamps = {r["extractedAt"] for r in rows}
    assert len(stamps) == 1 and stamps.pop().endswith("Z")


def test_diff_writes_new_changed_and_disappeared_customers_and_keeps_no_value_in_clear(carecycle_emulator, tmp_path):
    emu = carecycle_emulator
    state = tmp_path / "state" / "customers.jsonl.gz"
    everyone = {c["id"]: c for c in emu.query_customers({})}

    first, rows = export(tmp_path, "day1.jsonl", changed="diff", state_path=str(state))
    assert {r["id"] for r in rows} == set(everyone) and {r["changeType"] for r in rows} == {"new"}
    assert (first["new"], first["changed"], first["disappeared"]) == (len(everyone), 0, 0)
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o600

    second, rows = export(tmp_path, "day2.jsonl", changed="diff", state_path=str(state))
    assert rows == [] and second["unchanged"] == len(everyone) and second["count"] == 0

    emu.add_campaign(name="New leads", status="active", takes_new_leads=True)
    upload(emu, "445", 3)
    assert emu.tick_dialer(2) > 0
    gone = sorted(everyone)[:2]
    emu.delete_customers(gone)
    after = {c["id"]: c for c in emu.query_customers({})}
    new = set(after) - set(everyone)
    changed = {
        cid
        for cid in set(after) & set(everyone)
        if [after[cid][f] for f in FIELDS] != [everyone[cid][f] for f in FIELDS]
    }
    assert new and changed

    third, rows = export(tmp_path, "day3.jsonl", changed="diff", state_path=str(state))
    by_type = {kind: {r["id"] for r in rows if r["changeType"] == kind} for kind in ("new", "changed", "deleted")}
    assert by_type == {"new": new, "changed": changed, "deleted": set(gone)}
    assert (third["new"], third["changed"], third["disappeared"]) == (len(new), len(changed), 2)
    assert third["unchanged"] == len(after) - len(new) - len(changed)
    deleted = [r for r in rows if r["changeType"] == "deleted"]
    assert all(set(r.values()) - {r["id"], "deleted", r["extractedAt"]} == {None} for r in deleted)
    changed_rows = {r["id"]: r for r in rows if r["changeType"] == "changed"}
    assert all([row[f] for f in FIELDS] == [after[cid][f] for f in FIELDS] for cid, row in changed_rows.items())

    # the state: a header and, per customer, its id and a hash; no exported value in clear
    entries = list(iter_records(str(state)))
    assert entries[0]["format"] == STATE_FORMAT and len(entries) == len(after) + 1
    assert all(set(e) == {"id", "hash"} and len(e["hash"]) == 32 for e in entries[1:])
    text = json.dumps(entries)
    for customer in after.values():
        for field in ("lastCallDate", "lastCallDisposition"):
            assert customer[field] is None or customer[field] not in text


def test_a_failed_diff_export_keeps_the_previous_state_so_the_changes_come_again(carecycle_emulator, tmp_path):
    emu = carecycle_emulator
    state = tmp_path / "customers.jsonl.gz"
    export(tmp_path, "day1.jsonl", changed="diff", state_path=str(state))
    before = state.read_bytes()
    emu.add_campaign(name="New leads", status="active", takes_new_leads=True)
    upload(emu, "446", 2)
    emu.configure(fault_rate=1.0, fault_kinds=["500"])
    with pytest.raises(Exception):  # noqa: B017 (the hook's retries give up on the server error)
        export(tmp_path, "day2.jsonl", changed="diff", state_path=str(state), hook_params={**FAST, "max_retries": 0})
    assert state.read_bytes() == before and not (tmp_path / "day2.jsonl").exists()
    emu.configure(fault_rate=0.0)
    summary, rows = export(tmp_path, "day2.jsonl", changed="diff", state_path=str(state))
    assert summary["new"] == 2 and len(rows) == 2


def test_a_state_of_another_careCycle_is_not_diffed_against(carecycle_emulator, tmp_path, captured_logs):
    state = tmp_path / "customers.jsonl.gz"
    other = CustomerDiff(state, "another-destination", FIELDS)
    other.change("00000000-0000-4000-8000-000000000001", {"id": "x"})
    other.save()
    summary, rows = export(tmp_path, "day1.jsonl", changed="diff", state_path=str(state))
    assert summary["disappeared"] == 0 and summary["new"] == summary["count"] > 0
    assert "belongs to another careCycle connection" in captured_logs()


def test_a_file_that_is_not_a_diff_state_fails_clearly(carecycle_emulator, tmp_path):
    state = tmp_path / "customers.jsonl"
    state.write_text('{"id": "x"}\n')
    with pytest.raises(ValueError, match="not a customer diff state"):
        export(tmp_path, "day1.jsonl", changed="diff", state_path=str(state))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"changed": "edited"}, "changed must be one of"),
        ({"changed": "touched", "since": "2031-05-01"}, "needs since and until"),
        ({"changed": "diff"}, "needs state_path"),
        ({"state_path": "/s.jsonl"}, "needs state_path"),
        ({"since": "2031-05-01", "until": "2031-05-02"}, "since and until choose the interval"),
    ],
)
def test_changed_arguments_are_checked_in_the_constructor(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CareCycleExtractCustomersOperator(task_id="t", output_path="/x.jsonl", **kwargs)


def test_touched_refuses_date_filters_it_sets_itself(carecycle_emulator, tmp_path):
    with pytest.raises(ValueError, match="sets start_date itself"):
        export(
            tmp_path,
            "x.jsonl",
            changed="touched",
            since="2031-05-01",
            until="2031-05-02",
            filters={"start_date": "2031-01-01"},
        )
    assert not [r for r in carecycle_emulator.request_log() if r["path"].startswith("/v2/")]
