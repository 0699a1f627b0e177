"""The careCycle emulator over real HTTP: auth, rate limit, faults, pagination, filters, calls, campaigns."""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta, timezone

import pytest
import requests

from carecycle_emulator import CareCycleEmulator

KEY = "cc_test_key"
H = {"x-api-key": KEY}


def get(emu: CareCycleEmulator, path: str, **params: object) -> requests.Response:
    return requests.get(f"{emu.url}{path}", headers=H, params=params, timeout=10)


def all_customers(emu: CareCycleEmulator, **params: object) -> list[dict]:
    items, page = [], 1
    while page:
        body = get(emu, "/v2/customers", page=page, perPage=100, **params).json()
        items += body["items"]
        page = body["nextPage"]
    return items


# -- auth -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "cc_wrong"}, {"x-api-key": "test_key_without_prefix"}])
def test_bad_or_missing_key_is_401(carecycle_emulator, headers):
    r = requests.get(f"{carecycle_emulator.url}/v2/customers", headers=headers, timeout=10)
    assert r.status_code == 401
    assert r.json()["code"] == "UNAUTHORIZED"
    assert r.json()["message"]


def test_read_only_key_reads_but_cannot_upload(carecycle_emulator):
    ro = {"x-api-key": "cc_readonly_key"}
    assert requests.get(f"{carecycle_emulator.url}/v2/campaigns", headers=ro, timeout=10).status_code == 200
    r = requests.post(
        f"{carecycle_emulator.url}/v2/leads/upload",
        headers=ro,
        json={"records": [{"phoneNumber": "5551230000", "postalCode": "33101"}]},
        timeout=10,
    )
    assert r.status_code == 403
    assert r.json()["code"] == "FORBIDDEN"
    assert carecycle_emulator.counts()["leads_uploaded"] == 0


def test_configure_api_keys_at_runtime(carecycle_emulator):
    carecycle_emulator.configure(api_keys=("cc_other",))
    assert get(carecycle_emulator, "/v2/campaigns").status_code == 401
    r = requests.get(f"{carecycle_emulator.url}/v2/campaigns", headers={"x-api-key": "cc_other"}, timeout=10)
    assert r.status_code == 200


# -- rate limit -------------------------------------------------------------------------------------------------


def test_rate_limit_429_body_and_retry_after(carecycle_emulator):
    emu = carecycle_emulator
    emu.configure(rate_limit=3, rate_window_s=30)
    assert [get(emu, "/v2/campaigns").status_code for _ in range(3)] == [200, 200, 200]
    r = get(emu, "/v2/campaigns")
    assert r.status_code == 429
    assert r.json() == {"message": "Rate limit exceeded", "code": "RATE_LIMIT_EXCEEDED", "retryAfter": 30}
    assert "Retry-After" not in r.headers
    log = emu.request_log()
    assert [e["rate_limited"] for e in log] == [False, False, False, True]
    assert emu.counts()["rate_limited"] == 1
    # another key has its own window
    emu.configure(api_keys=(KEY, "cc_second"))
    r2 = requests.get(f"{emu.url}/v2/campaigns", headers={"x-api-key": "cc_second"}, timeout=10)
    assert r2.status_code == 200


def test_rate_limit_window_slides_and_rejections_do_not_consume(carecycle_emulator):
    emu = carecycle_emulator
    emu.configure(rate_limit=2, rate_window_s=1.0)
    assert get(emu, "/v2/campaigns").status_code == 200
    assert get(emu, "/v2/campaigns").status_code == 200
    for _ in range(5):  # rejected requests must not push the window forward
        r = get(emu, "/v2/campaigns")
        assert r.status_code == 429
        assert r.json()["retryAfter"] == 1
    time.sleep(1.05)
    assert get(emu, "/v2/campaigns").status_code == 200


def test_admin_routes_are_not_rate_limited_or_logged(carecycle_emulator):
    emu = carecycle_emulator
    emu.configure(rate_limit=1)
    for _ in range(5):
        assert requests.get(f"{emu.url}/_emulator/counts", timeout=10).status_code == 200
    assert emu.request_log() == []
    assert get(emu, "/v2/campaigns").status_code == 200


# -- faults -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "code"), [("503", 503, "SERVICE_UNAVAILABLE"), ("500", 500, "INTERNAL_ERROR")]
)
def test_http_faults(carecycle_emulator, kind, status, code):
    emu = carecycle_emulator
    emu.configure(fault_rate=1.0, fault_kinds=(kind,))
    r = get(emu, "/v2/customers")
    assert r.status_code == status
    assert r.json()["code"] == code
    assert emu.request_log()[-1]["fault"] == kind
    assert emu.counts()["faults"] == 1


def test_drop_fault_closes_socket(carecycle_emulator):
    emu = carecycle_emulator
    emu.configure(fault_rate=1.0, fault_kinds=("drop",))
    with pytest.raises(requests.ConnectionError):
        get(emu, "/v2/customers")
    assert emu.request_log()[-1]["fault"] == "drop"
    emu.configure(fault_rate=0.0)
    assert get(emu, "/v2/customers").status_code == 200


@pytest.mark.parametrize("kind", ["503", "500", "drop"])
def test_faulted_upload_has_no_side_effect(carecycle_emulator, kind):
    emu = carecycle_emulator
    before = emu.counts()["customers"]
    emu.configure(fault_rate=1.0, fault_kinds=(kind,))
    body = {"records": [{"phoneNumber": "5559990000", "postalCode": "33101", "externalId": "fault-1"}]}
    try:
        r = requests.post(f"{emu.url}/v2/leads/upload", headers=H, json=body, timeout=10)
        assert r.status_code in (500, 503)
    except requests.ConnectionError:
        assert kind == "drop"
    assert emu.counts()["customers"] == before
    assert "fault-1" not in emu.get_customers_by_external_id()
    entry = emu.request_log()[-1]
    assert entry["fault"] == kind
    assert entry["batch"]["external_ids"] == ["fault-1"]


def test_fault_sequence_is_seeded(carecycle_emulator):
    emu = carecycle_emulator

    def run() -> list:
        emu.reset(seed=7)
        emu.configure(fault_rate=0.5, fault_kinds=("503", "500"))
        return [get(emu, "/v2/campaigns").status_code for _ in range(20)]

    first = run()
    assert run() == first
    assert {200, 500, 503} & set(first) - {200}  # some faults happened


def test_latency(carecycle_emulator):
    carecycle_emulator.configure(latency_ms=150)
    t0 = time.monotonic()
    assert get(carecycle_emulator, "/v2/campaigns").status_code == 200
    assert time.monotonic() - t0 >= 0.15


# -- errors and pagination --------------------------------------------------------------------------------------


def test_unknown_route_and_unknown_ids_are_404(carecycle_emulator):
    emu = carecycle_emulator
    for path in (
        "/v2/nope",
        "/v2/customers/00000000-0000-0000-0000-000000000000",
        "/v2/campaigns/" + "1" * 8 + "-1111-4111-8111-" + "1" * 12,
    ):
        r = get(emu, path)
        assert r.status_code == 404, path
        assert r.json()["code"] == "NOT_FOUND"
    r = get(emu, "/v2/customers/00000000-0000-0000-0000-000000000000/calls")
    assert r.status_code == 404


@pytest.mark.parametrize(
    ("path", "params", "bad"),
    [
        ("/v2/customers", {"page": 0}, "page"),
        ("/v2/customers", {"perPage": 101}, "perPage"),
        ("/v2/customers", {"perPage": 0}, "perPage"),
        ("/v2/customers", {"page": "abc"}, "page"),
        ("/v2/customers", {"sortBy": "email"}, "sortBy"),
        ("/v2/customers", {"sortDirection": "up"}, "sortDirection"),
        ("/v2/customers", {"statuses": "Lead,Prospect"}, "statuses"),
        ("/v2/customers", {"policyTypes": "MA,XX"}, "policyTypes"),
        ("/v2/customers", {"policyStatuses": "Gone"}, "policyStatuses"),
        ("/v2/customers", {"customerCampaignStatuses": "done"}, "customerCampaignStatuses"),
        ("/v2/customers", {"dateField": "birthday"}, "dateField"),
        ("/v2/customers", {"agingInMonths": 9}, "agingInMonths"),
        ("/v2/customers", {"startDate": "2024-13-01"}, "startDate"),
        ("/v2/customers", {"endDate": "01/02/2024"}, "endDate"),
        ("/v2/customers", {"includeTestNumbers": "maybe"}, "includeTestNumbers"),
        ("/v2/customers/not-a-uuid", {}, "id"),
        ("/v2/customers/not-a-uuid/calls", {}, "id"),
        ("/v2/campaigns", {"status": "running"}, "status"),
        ("/v2/campaigns", {"sortBy": "foo"}, "sortBy"),
    ],
)
def test_validation_errors(carecycle_emulator, path, params, bad):
    r = get(carecycle_emulator, path, **params)
    assert r.status_code == 400
    body = r.json()
    assert body["code"] == "VALIDATION_ERROR"
    assert [e["path"] for e in body["errors"]] == [[bad]]
    assert set(body["errors"][0]) == {"path", "message", "expected", "received", "code"}


def test_pagination_envelope_and_edges(carecycle_emulator):
    emu = carecycle_emulator
    total = len(emu.query_customers({}))
    first = get(emu, "/v2/customers", perPage=20).json()
    assert set(first) == {"itemsTotal", "currentPage", "nextPage", "prevPage", "items"}
    assert (first["itemsTotal"], first["currentPage"], first["nextPage"], first["prevPage"]) == (total, 1, 2, None)
    assert len(first["items"]) == 20
    last_page = -(-total // 20)
    last = get(emu, "/v2/customers", perPage=20, page=last_page).json()
    assert last["nextPage"] is None and last["prevPage"] == last_page - 1
    assert len(last["items"]) == total - 20 * (last_page - 1)
    beyond = get(emu, "/v2/customers", perPage=20, page=last_page + 5).json()
    assert beyond["items"] == [] and beyond["nextPage"] is None
    default = get(emu, "/v2/customers").json()
    assert len(default["items"]) == min(50, total)
    ids = [c["id"] for c in all_customers(emu)]
    assert len(ids) == len(set(ids)) == total
    empty = get(emu, "/v2/customers", search="zzzz-no-such-customer").json()
    assert empty == {"itemsTotal": 0, "currentPage": 1, "nextPage": None, "prevPage": None, "items": []}


def test_exact_multiple_of_page_size(carecycle_emulator):
    emu = carecycle_emulator
    total = len(emu.query_customers({}))
    body = get(emu, "/v2/customers", perPage=total).json()
    assert body["nextPage"] is None and len(body["items"]) == total


# -- customers --------------------------------------------------------------------------------------------------


def test_customer_item_shape_and_get_by_id(carecycle_emulator):
    emu = carecycle_emulator
    item = get(emu, "/v2/customers", perPage=1).json()["items"][0]
    for key in (
        "id",
        "createdAt",
        "updatedAt",
        "status",
        "firstName",
        "lastName",
        "email",
        "phoneNumber",
        "callerId",
        "dateOfBirth",
        "gender",
        "postalCode",
        "timezone",
        "state",
        "city",
        "county",
        "mbiNumber",
        "externalId",
        "clientCustomerId",
        "totalCalls",
        "lastCallDate",
        "lastCallDisposition",
        "campaigns",
        "source",
        "policies",
        "customFields",
        "assignedMember",
        "testCustomer",
    ):
        assert key in item, key
    one = get(emu, f"/v2/customers/{item['id']}").json()
    assert one == item


def test_sorting(carecycle_emulator):
    emu = carecycle_emulator
    desc = [c["createdAt"] for c in all_customers(emu)]
    assert desc == sorted(desc, reverse=True)
    asc = [c["lastName"] for c in all_customers(emu, sortBy="lastName", sortDirection="asc")]
    assert asc == sorted(asc)
    callers = [c["callerId"] for c in all_customers(emu, sortBy="callerId", sortDirection="asc")]
    assert callers == sorted(callers)


def _check_filter(emu, params, predicate):
    everyone = emu.query_customers({"includeTestNumbers": "true"})
    expected = {c["id"] for c in everyone if predicate(c)}
    got = {c["id"] for c in all_customers(emu, includeTestNumbers="true", **params)}
    assert got == expected
    assert 0 < len(got) < len(everyone), params  # the filter narrows, on data that has matches
    assert {c["id"] for c in emu.query_customers({"includeTestNumbers": "true", **params})} == expected


def test_include_test_numbers(carecycle_emulator):
    emu = carecycle_emulator
    with_test = all_customers(emu, includeTestNumbers="true")
    without = all_customers(emu)
    assert any(c["testCustomer"] for c in with_test)
    assert not any(c["testCustomer"] for c in without)
    assert len(without) == len([c for c in with_test if not c["testCustomer"]])


def test_filter_states_counties_statuses(carecycle_emulator):
    emu = carecycle_emulator
    _check_filter(emu, {"states": "FL,TX"}, lambda c: c["state"] in ("FL", "TX"))
    county = emu.query_customers({})[0]["county"]
    _check_filter(emu, {"counties": county}, lambda c: c["county"] == county)
    _check_filter(emu, {"statuses": "Lead,Inactive"}, lambda c: c["status"] in ("Lead", "Inactive"))


def test_filter_search(carecycle_emulator):
    emu = carecycle_emulator
    target = emu.query_customers({})[3]
    _check_filter(
        emu,
        {"search": target["lastName"]},
        lambda c: (
            target["lastName"].lower()
            in (f"{c['firstName']} {c['lastName']} {c['email'] or ''} {c['city']} {c['county']}".lower())
        ),
    )
    digits = target["phoneNumber"][-7:]
    got = all_customers(emu, search=digits)
    assert target["id"] in [c["id"] for c in got]
    assert all(digits in c["phoneNumber"] for c in got)


def test_filter_sources_campaigns_members_pulse(carecycle_emulator):
    emu = carecycle_emulator
    _check_filter(emu, {"sourceIds": "src_web"}, lambda c: (c["source"] or {}).get("sourceId") == "src_web")
    web_uuid = next(s["id"] for s in emu.sources() if s["sourceId"] == "src_web")
    _check_filter(emu, {"sourceIds": web_uuid}, lambda c: (c["source"] or {}).get("sourceId") == "src_web")
    camp = emu.list_campaigns()[0]["id"]
    _check_filter(emu, {"campaignIds": camp}, lambda c: camp in [x["id"] for x in c["campaigns"]])
    member = emu.members()[0]["id"]
    _check_filter(
        emu,
        {"assignedMemberIds": f"{member},unassigned"},
        lambda c: c["assignedMember"] is None or c["assignedMember"]["id"] == member,
    )
    _check_filter(emu, {"assignedMemberIds": "unassigned"}, lambda c: c["assignedMember"] is None)
    node = next(c["pulseNodeId"] for c in emu.query_customers({}) if c["pulseNodeId"])
    _check_filter(emu, {"pulseNodeId": node}, lambda c: c["pulseNodeId"] == node)


def test_filter_campaign_status_and_prior_attempts(carecycle_emulator):
    emu = carecycle_emulator
    _check_filter(
        emu,
        {"customerCampaignStatuses": "pending,completed"},
        lambda c: any(x["status"] in ("pending", "completed") for x in c["campaigns"]),
    )
    _check_filter(emu, {"hasPriorAttempts": "true"}, lambda c: any(x["totalCalls"] > 0 for x in c["campaigns"]))
    _check_filter(emu, {"hasPriorAttempts": "false"}, lambda c: any(x["totalCalls"] == 0 for x in c["campaigns"]))


def test_filter_policies(carecycle_emulator):
    emu = carecycle_emulator
    _check_filter(
        emu, {"policyTypes": "MA,MAPD"}, lambda c: any(p["policyType"] in ("MA", "MAPD") for p in c["policies"])
    )
    _check_filter(emu, {"policyStatuses": "Active"}, lambda c: any(p["status"] == "Active" for p in c["policies"]))


def test_filter_dates(carecycle_emulator):
    emu = carecycle_emulator
    everyone = emu.query_customers({"includeTestNumbers": "true"})
    created = sorted(c["createdAt"][:10] for c in everyone)
    start, end = created[len(created) // 4], created[3 * len(created) // 4]
    _check_filter(emu, {"startDate": start, "endDate": end}, lambda c: start <= c["createdAt"][:10] <= end)
    _check_filter(
        emu,
        {"dateField": "effectiveDate", "startDate": start},
        lambda c: any(p["effectiveDate"] >= start for p in c["policies"]),
    )
    _check_filter(
        emu,
        {"dateField": "enrollmentDate", "endDate": end},
        lambda c: any(p["enrollmentDate"] <= end for p in c["policies"]),
    )
    called = sorted(c["lastCallDate"][:10] for c in everyone if c["lastCallDate"])
    mid = called[len(called) // 2]
    _check_filter(emu, {"lastCallStartDate": mid}, lambda c: bool(c["lastCallDate"]) and c["lastCallDate"][:10] >= mid)
    _check_filter(emu, {"lastCallEndDate": mid}, lambda c: bool(c["lastCallDate"]) and c["lastCallDate"][:10] <= mid)


def test_filter_aging_in(carecycle_emulator):
    emu = carecycle_emulator
    today = datetime.now(timezone.utc).date()

    def turns_65_within(c: dict, months: int) -> bool:
        dob = date.fromisoformat(c["dateOfBirth"])
        try:
            t65 = dob.replace(year=dob.year + 65)
        except ValueError:
            t65 = dob.replace(year=dob.year + 65, day=28)
        return today <= t65 <= today + timedelta(days=months * 31)

    _check_filter(emu, {"agingInMonths": 12}, lambda c: turns_65_within(c, 12))
    six = {c["id"] for c in all_customers(emu, agingInMonths=6)}
    twelve = {c["id"] for c in all_customers(emu, agingInMonths=12)}
    assert six < twelve


def test_filters_combine_with_and(carecycle_emulator):
    emu = carecycle_emulator
    both = {c["id"] for c in all_customers(emu, states="FL,TX,CA", statuses="Active")}
    states = {c["id"] for c in all_customers(emu, states="FL,TX,CA")}
    status = {c["id"] for c in all_customers(emu, statuses="Active")}
    assert both == states & status


def test_unknown_query_params_are_ignored(carecycle_emulator):
    emu = carecycle_emulator
    assert get(emu, "/v2/customers", someNewFilter="x").json()["itemsTotal"] == len(emu.query_customers({}))


# -- calls and campaigns ----------------------------------------------------------------------------------------


def test_calls_paging_and_sorting(carecycle_emulator):
    emu = carecycle_emulator
    customer = max(emu.query_customers({"includeTestNumbers": True}), key=lambda c: c["totalCalls"])
    assert customer["totalCalls"] >= 2
    path = f"/v2/customers/{customer['id']}/calls"
    body = get(emu, path).json()
    assert body["itemsTotal"] == customer["totalCalls"]
    created = [c["createdAt"] for c in body["items"]]
    assert created == sorted(created, reverse=True)
    assert body["items"][0]["createdAt"] == customer["lastCallDate"]
    durations = [c["durationMs"] for c in get(emu, path, sortBy="duration", sortDirection="asc").json()["items"]]
    assert durations == sorted(durations)
    disp = [c["disposition"] for c in get(emu, path, sortBy="disposition", sortDirection="desc").json()["items"]]
    assert disp == sorted(disp, reverse=True)
    page2 = get(emu, path, perPage=1, page=2).json()
    assert page2["items"][0]["id"] == body["items"][1]["id"] and page2["prevPage"] == 1
    assert get(emu, path, sortBy="length").status_code == 400


def test_campaigns_list_get_and_stats(carecycle_emulator):
    emu = carecycle_emulator
    body = get(emu, "/v2/campaigns").json()
    assert body["itemsTotal"] == 3 and body["nextPage"] is None
    camp = body["items"][0]
    assert set(camp["customerStats"]["statusCounts"]) == {
        "expired",
        "failed",
        "pending",
        "completed",
        "exceeded_max_calls",
        "in_progress",
        "cancelled",
        "skipped",
    }
    members = emu.query_customers({"campaignIds": camp["id"], "includeTestNumbers": True})
    assert camp["customerStats"]["total"] == len(members)
    pending = [c for c in members if any(x["id"] == camp["id"] and x["status"] == "pending" for x in c["campaigns"])]
    assert camp["customerStats"]["statusCounts"]["pending"] == len(pending)
    assert get(emu, f"/v2/campaigns/{camp['id']}").json() == {"campaign": camp}
    active = get(emu, "/v2/campaigns", status="active").json()["items"]
    assert active and all(c["status"] == "active" for c in active)
    names = [c["name"] for c in get(emu, "/v2/campaigns", sortBy="name", sortDirection="asc").json()["items"]]
    assert names == sorted(names)
    found = get(emu, "/v2/campaigns", search=camp["name"][:6]).json()["items"]
    assert camp["id"] in [c["id"] for c in found]
    paged = get(emu, "/v2/campaigns", perPage=2).json()
    assert paged["nextPage"] == 2 and len(paged["items"]) == 2
