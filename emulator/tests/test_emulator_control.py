"""Emulator control: dialer simulation, admin HTTP API, CLI process, seed determinism, Python API."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from carecycle_emulator import CareCycleEmulator

H = {"x-api-key": "cc_test_key"}


def campaign_members(emu, campaign_id):
    return emu.query_customers({"campaignIds": campaign_id, "includeTestNumbers": True})


def member_status(customer, campaign_id):
    return next(x for x in customer["campaigns"] if x["id"] == campaign_id)["status"]


# -- dialer -----------------------------------------------------------------------------------------------------


def test_dialer_progresses_active_campaign(carecycle_emulator):
    emu = carecycle_emulator
    camp = emu.add_campaign(name="Dial me", status="active", takes_new_leads=True)
    records = [{"phoneNumber": f"555777{i:04d}", "postalCode": "85001", "externalId": f"d-{i}"} for i in range(6)]
    assert requests.post(f"{emu.url}/v2/leads/upload", headers=H, json={"records": records}, timeout=10).ok
    members = campaign_members(emu, camp["id"])
    assert len(members) == 6 and {member_status(c, camp["id"]) for c in members} == {"pending"}
    calls_before = emu.counts()["calls"]
    placed = emu.tick_dialer(40)
    assert placed > 0 and emu.counts()["calls"] == calls_before + placed
    final = {member_status(c, camp["id"]) for c in campaign_members(emu, camp["id"])}
    # every lead reached an end state ("skipped": a "Do Not Call" heard in another campaign stops this one too)
    assert final <= {"completed", "failed", "exceeded_max_calls", "skipped"}
    stats = requests.get(f"{emu.url}/v2/campaigns/{camp['id']}", headers=H, timeout=10).json()["campaign"]
    assert stats["customerStats"]["total"] == 6
    assert stats["customerStats"]["statusCounts"]["pending"] == 0
    assert stats["customerStats"]["todayCalls"] >= 6
    called = campaign_members(emu, camp["id"])[0]
    assert called["totalCalls"] >= 1 and called["lastCallDate"] and called["lastCallDisposition"]
    calls = requests.get(f"{emu.url}/v2/customers/{called['id']}/calls", headers=H, timeout=10).json()
    assert calls["itemsTotal"] == called["totalCalls"]
    assert camp["id"] in {c["campaignId"] for c in calls["items"]}


def test_dialer_places_calls_on_given_days_that_never_change_and_the_last_call_filters_see_them(carecycle_emulator):
    emu = carecycle_emulator
    for camp in emu.list_campaigns():
        emu.set_campaign_status(camp["id"], "paused")
    camp = emu.add_campaign(name="History", status="active", max_attempts=9)
    records = [{"phoneNumber": f"555888{i:04d}", "postalCode": "85001", "externalId": f"h-{i}"} for i in range(12)]
    assert requests.post(f"{emu.url}/v2/leads/upload", headers=H, json={"records": records}, timeout=10).ok
    ids = {c["id"] for c in campaign_members(emu, camp["id"])}

    def calls_of(cid):
        return requests.get(f"{emu.url}/v2/customers/{cid}/calls", headers=H, timeout=10).json()["items"]

    assert emu.tick_dialer(2, at="2031-05-03T09:00:00Z") > 0  # day 3 first ...
    before = {cid: calls_of(cid) for cid in ids}
    assert emu.tick_dialer(2, at="2031-05-01T10:00:00Z") > 0  # ... then day 1, back in time
    requests.post(f"{emu.url}/_emulator/dialer/tick", json={"steps": 1, "at": "2031-05-02T11:00:00Z"}, timeout=10)
    history = {cid: calls_of(cid) for cid in ids}
    for cid, calls in history.items():
        stamps = [c["createdAt"] for c in calls]
        assert stamps == sorted(stamps, reverse=True)  # newest first, by default
        assert {s[:10] for s in stamps} <= {"2031-05-01", "2031-05-02", "2031-05-03"}
        assert [c for c in calls if c["id"] in {b["id"] for b in before[cid]}] == before[cid]  # unchanged
    last = {cid: max((c["createdAt"] for c in calls), default=None) for cid, calls in history.items()}
    customers = {c["id"]: c for c in campaign_members(emu, camp["id"])}
    assert {cid: customers[cid]["lastCallDate"] for cid in ids} == last  # a call back in time does not move it

    def listed(**params):
        found = emu.query_customers({"campaignIds": camp["id"], **params})
        over_http = requests.get(
            f"{emu.url}/v2/customers", headers=H, params={"campaignIds": camp["id"], **params}, timeout=10
        ).json()["items"]
        assert {c["id"] for c in over_http} == {c["id"] for c in found}
        return {c["id"] for c in found}

    assert listed(lastCallStartDate="2031-05-03") == {cid for cid, at in last.items() if at and at >= "2031-05-03"}
    assert listed(lastCallEndDate="2031-05-02") == {cid for cid, at in last.items() if at and at < "2031-05-03"}
    assert listed(lastCallStartDate="2031-05-04") == set()


def test_paused_and_cancelled_campaigns_do_not_dial(carecycle_emulator):
    emu = carecycle_emulator
    for camp in emu.list_campaigns():
        emu.set_campaign_status(camp["id"], "paused")
    camp = emu.add_campaign(name="Cancel me", status="active")
    requests.post(
        f"{emu.url}/v2/leads/upload",
        headers=H,
        timeout=10,
        json={"records": [{"phoneNumber": f"555888{i:04d}", "timezone": "EST"} for i in range(20)]},
    )
    emu.tick_dialer(1)
    calls = emu.counts()["calls"]
    assert calls > 0
    emu.set_campaign_status(camp["id"], "cancelled")
    assert emu.tick_dialer(5) == 0
    assert emu.counts()["calls"] == calls
    with pytest.raises(ValueError):
        emu.set_campaign_status(camp["id"], "stopped")


def test_dialer_is_deterministic(carecycle_emulator):
    emu = carecycle_emulator

    def run():
        emu.reset(seed=3)
        emu.tick_dialer(4)
        return sorted(
            (c["id"], c["totalCalls"], c["lastCallDisposition"]) for c in emu.query_customers({"includeTestNumbers": 1})
        )

    assert run() == run()


def test_background_dialer(carecycle_emulator):
    emu = carecycle_emulator
    before = emu.counts()["calls"]
    emu.configure(dialer_speed=50)
    deadline = time.monotonic() + 5
    while emu.counts()["calls"] == before and time.monotonic() < deadline:
        time.sleep(0.05)
    emu.configure(dialer_speed=0)
    assert emu.counts()["calls"] > before


# -- seeds ------------------------------------------------------------------------------------------------------


def test_seed_determinism_and_sizes():
    a = CareCycleEmulator(seed=11, customers=120, campaigns=5)
    b = CareCycleEmulator(seed=11, customers=120, campaigns=5)
    c = CareCycleEmulator(seed=12, customers=120, campaigns=5)
    everything = {"includeTestNumbers": "true"}
    assert a.query_customers(everything) == b.query_customers(everything)
    assert a.list_campaigns() == b.list_campaigns()
    assert a.query_customers(everything) != c.query_customers(everything)
    assert a.counts()["customers"] == 120 and a.counts()["campaigns"] == 5
    states = {x["state"] for x in a.query_customers(everything)}
    assert {"FL", "TX", "AZ", "CA"} <= states
    a.reset(seed=12)
    assert a.query_customers(everything) == c.query_customers(everything)


def test_reset_clears_log_rate_windows_and_uploads(carecycle_emulator):
    emu = carecycle_emulator
    emu.configure(rate_limit=1)
    requests.get(f"{emu.url}/v2/campaigns", headers=H, timeout=10)
    assert requests.get(f"{emu.url}/v2/campaigns", headers=H, timeout=10).status_code == 429
    emu.reset(customers=10, campaigns=2)
    assert emu.request_log() == []
    assert emu.counts() == {
        "customers": 10,
        "campaigns": 2,
        "calls": emu.counts()["calls"],
        "requests": 0,
        "rate_limited": 0,
        "faults": 0,
        "leads_uploaded": 0,
    }
    assert requests.get(f"{emu.url}/v2/campaigns", headers=H, timeout=10).status_code == 200


def test_context_manager_and_port():
    with CareCycleEmulator(api_keys=("cc_k",), customers=5) as emu:
        assert emu.url.startswith("http://127.0.0.1:") and emu.port > 0
        assert requests.get(f"{emu.url}/v2/customers", headers={"x-api-key": "cc_k"}, timeout=10).status_code == 200
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{emu.port}/v2/customers", timeout=2)


def test_fixture_sets_airflow_connection(carecycle_emulator):
    conn = json.loads(os.environ["AIRFLOW_CONN_CARECYCLE_DEFAULT"])
    assert conn == {
        "conn_type": "carecycle",
        "host": carecycle_emulator.url,
        "password": "cc_test_key",
        "extra": {"requests_per_minute": 6000},
    }


# -- admin HTTP API ---------------------------------------------------------------------------------------------


def test_admin_api(carecycle_emulator):
    emu = carecycle_emulator
    base = f"{emu.url}/_emulator"
    assert requests.post(f"{base}/reset", json={"customers": 7, "campaigns": 2, "seed": 5}, timeout=10).ok
    counts = requests.get(f"{base}/counts", timeout=10).json()
    assert counts["customers"] == 7 and counts["campaigns"] == 2
    assert requests.post(f"{base}/config", json={"rate_limit": 2, "rate_window_s": 30}, timeout=10).ok
    codes = [requests.get(f"{emu.url}/v2/campaigns", headers=H, timeout=10).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    log = requests.get(f"{base}/requests", timeout=10).json()
    assert [e["status"] for e in log] == [200, 200, 429] and log[-1]["rate_limited"] is True
    camp = requests.post(
        f"{base}/campaigns", json={"name": "Admin camp", "status": "active", "takesNewLeads": True}, timeout=10
    ).json()
    assert camp["name"] == "Admin camp" and camp["takesNewLeads"] is True
    r = requests.post(f"{base}/campaigns/{camp['id']}/status", json={"status": "paused"}, timeout=10)
    assert r.ok and r.json()["status"] == "paused"
    assert (
        requests.post(f"{base}/campaigns/{camp['id']}/status", json={"status": "bogus"}, timeout=10).status_code == 400
    )
    tick = requests.post(f"{base}/dialer/tick", json={"steps": 2}, timeout=10).json()
    assert tick["calls"] >= 0 and "counts" in tick
    assert requests.post(f"{base}/config", json={"no_such_setting": 1}, timeout=10).status_code == 400
    assert requests.get(f"{base}/nope", timeout=10).status_code == 404
    assert requests.get(f"{base}/counts", timeout=10).json()["requests"] == 3  # admin calls are not logged


# -- CLI --------------------------------------------------------------------------------------------------------


def test_cli_port_file_and_sigterm(tmp_path):
    port_file = tmp_path / "port"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from carecycle_emulator.carecycle.cli import main; raise SystemExit(main())",
            "--port",
            "0",
            "--port-file",
            str(port_file),
            "--customers",
            "20",
            "--api-key",
            "cc_cli_key",
            "--api-key",
            "cc_cli_ro:read",
            "--rate-limit",
            "100",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while not port_file.exists() and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.05)
        port = int(port_file.read_text())
        url = f"http://127.0.0.1:{port}"
        r = requests.get(f"{url}/v2/customers", headers={"x-api-key": "cc_cli_key"}, timeout=10)
        assert r.status_code == 200 and r.json()["itemsTotal"] > 0
        assert (
            requests.get(f"{url}/v2/customers", headers={"x-api-key": "cc_emulator_key"}, timeout=10).status_code == 401
        )
        assert requests.get(f"{url}/_emulator/counts", timeout=10).json()["customers"] == 20
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -- deleting rows while a client pages ---------------------------------------------------------------------------


def list_page(emu, page, per_page=10, path="/v2/customers", **params):
    query = {"page": page, "perPage": per_page, "sortBy": "createdAt", "sortDirection": "asc", **params}
    return requests.get(f"{emu.url}{path}", headers=H, params=query, timeout=10).json()


def test_nothing_is_deleted_unless_asked(carecycle_emulator):
    emu = carecycle_emulator
    totals = [list_page(emu, page)["itemsTotal"] for page in (1, 2, 3)]
    assert totals == [emu.counts()["customers"] - 1] * 3  # one seeded customer is a test number, not listed


def test_delete_between_pages_shifts_the_pages_still_to_come(carecycle_emulator):
    emu = carecycle_emulator
    everyone = [c["id"] for p in range(1, 6) for c in list_page(emu, p)["items"]]
    emu.delete_between_pages(after=1, customers=everyone[:3])  # rows already read by page 1
    page1 = list_page(emu, 1)
    assert page1["itemsTotal"] == len(everyone) and [c["id"] for c in page1["items"]] == everyone[:10]
    page2 = list_page(emu, 2)  # answered after the deletion: starts three rows later
    assert page2["itemsTotal"] == len(everyone) - 3 and [c["id"] for c in page2["items"]] == everyone[13:23]
    assert emu.get_customer(everyone[0]) is None


def test_delete_between_pages_over_the_admin_api_and_for_calls(carecycle_emulator):
    emu = carecycle_emulator
    customer = max(emu.query_customers({"includeTestNumbers": True}), key=lambda c: c["totalCalls"])
    path = f"/v2/customers/{customer['id']}/calls"
    calls = [c["id"] for c in list_page(emu, 1, per_page=100, path=path, sortDirection="desc")["items"]]
    assert len(calls) >= 2
    answer = requests.post(
        f"{emu.url}/_emulator/delete-between-pages", json={"after": 1, "calls": calls[:1], "path": path}, timeout=10
    )
    assert answer.ok
    assert list_page(emu, 1, per_page=1, path=path)["itemsTotal"] == len(calls)
    assert list_page(emu, 2, per_page=1, path=path)["itemsTotal"] == len(calls) - 1
    assert emu.get_customer(customer["id"])["totalCalls"] == len(calls) - 1
    deleted = requests.post(f"{emu.url}/_emulator/delete", json={"customers": [customer["id"]]}, timeout=10).json()
    assert deleted == {"customers": 1, "calls": 0}
    assert requests.get(f"{emu.url}{path}", headers=H, timeout=10).status_code == 404


def test_reset_drops_deletions_not_done_yet(carecycle_emulator):
    emu = carecycle_emulator
    emu.delete_between_pages(after=1, customers=[c["id"] for c in list_page(emu, 1)["items"]])
    emu.reset()
    total = list_page(emu, 1)["itemsTotal"]
    assert list_page(emu, 2)["itemsTotal"] == total
