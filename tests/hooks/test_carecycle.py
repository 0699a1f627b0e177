"""The careCycle hook over real HTTP against the emulator."""

from __future__ import annotations

import threading

import pytest

from airflow_provider_carecycle.exceptions import (
    CareCycleAuthError,
    CareCycleNotFoundError,
    CareCycleServerError,
    CareCycleValidationError,
)
from airflow_provider_carecycle.hooks.carecycle import CareCycleHook
from airflow_provider_carecycle.ids import is_uuid, require_uuid

UNKNOWN_ID = "00000000-0000-0000-0000-000000000000"


def api_requests(emu, path):
    return [r for r in emu.request_log() if r["path"] == path]


def test_pages_through_every_customer(carecycle_emulator):
    carecycle_emulator.reset(customers=730)
    hook = CareCycleHook()
    ids = [c["id"] for c in hook.iter_customers(per_page=100, include_test_numbers=True)]
    expected = carecycle_emulator.query_customers({"includeTestNumbers": "true"})
    assert ids == [c["id"] for c in expected] and len(ids) == 730
    pages = api_requests(carecycle_emulator, "/v2/customers")
    assert [r["query"]["page"] for r in pages] == [str(n) for n in range(1, 9)]  # 8 pages, no extra request
    assert hook.stats.requests == 8


def test_iteration_is_lazy(carecycle_emulator):
    carecycle_emulator.reset(customers=300)
    first_two = []
    for customer in CareCycleHook().iter_customers(per_page=10):
        first_two.append(customer)
        if len(first_two) == 2:
            break
    assert len(api_requests(carecycle_emulator, "/v2/customers")) == 1


@pytest.mark.parametrize(
    ("filters", "api_params"),
    [
        ({"statuses": ["Lead"], "states": ["FL", "TX"]}, {"statuses": "Lead", "states": "FL,TX"}),
        ({"search": "Miami"}, {"search": "Miami"}),
        ({"policy_types": ["MAPD", "PDP"]}, {"policyTypes": "MAPD,PDP"}),
        ({"policy_statuses": ["Active"]}, {"policyStatuses": "Active"}),
        (
            {"date_field": "createdAt", "start_date": "2025-01-01", "end_date": "2025-12-31"},
            {"dateField": "createdAt", "startDate": "2025-01-01", "endDate": "2025-12-31"},
        ),
        ({"last_call_start_date": "2024-01-01"}, {"lastCallStartDate": "2024-01-01"}),
        ({"include_test_numbers": True}, {"includeTestNumbers": "true"}),
        ({"assigned_member_ids": ["unassigned"]}, {"assignedMemberIds": "unassigned"}),
        ({"aging_in_months": 12}, {"agingInMonths": "12"}),
        ({"customer_campaign_statuses": ["pending"]}, {"customerCampaignStatuses": "pending"}),
        ({"has_prior_attempts": False}, {"hasPriorAttempts": "false"}),
        ({"sort_by": "lastName", "sort_direction": "asc"}, {"sortBy": "lastName", "sortDirection": "asc"}),
    ],
)
def test_each_filter_reaches_the_server_and_narrows(carecycle_emulator, filters, api_params):
    carecycle_emulator.reset(customers=400)
    got = [c["id"] for c in CareCycleHook().iter_customers(**filters)]
    (request, *_) = api_requests(carecycle_emulator, "/v2/customers")
    assert {k: request["query"][k] for k in api_params} == api_params
    expected = [c["id"] for c in carecycle_emulator.query_customers(api_params)]
    assert got == expected
    if set(api_params) - {"sortBy", "sortDirection", "includeTestNumbers"}:
        assert len(got) < 400  # the filter really narrowed


def test_campaign_and_source_filters_with_seeded_ids(carecycle_emulator):
    campaign = carecycle_emulator.list_campaigns()[0]
    source = carecycle_emulator.sources()[0]
    hook = CareCycleHook()
    in_campaign = list(hook.iter_customers(campaign_ids=[campaign["id"]]))
    assert in_campaign and all(campaign["id"] in {c["id"] for c in cust["campaigns"]} for cust in in_campaign)
    from_source = list(hook.iter_customers(source_ids=[source["id"]]))
    assert from_source == carecycle_emulator.query_customers({"sourceIds": source["id"]})


def test_extra_params_pass_through(carecycle_emulator):
    list(CareCycleHook().iter_customers(extra_params={"brandNewFilter": "x"}))
    assert api_requests(carecycle_emulator, "/v2/customers")[0]["query"]["brandNewFilter"] == "x"


def test_customer_calls_and_campaigns(carecycle_emulator):
    carecycle_emulator.tick_dialer(steps=20)
    hook = CareCycleHook()
    customer = next(c for c in hook.iter_customers() if c["totalCalls"])
    calls = list(hook.iter_customer_calls(customer["id"], sort_by="createdAt", sort_direction="asc", per_page=1))
    assert len(calls) == customer["totalCalls"]
    assert [c["createdAt"] for c in calls] == sorted(c["createdAt"] for c in calls)
    assert hook.get_customer(customer["id"])["id"] == customer["id"]
    campaigns = list(hook.iter_campaigns(per_page=1))
    assert len(campaigns) == 3 and all("customerStats" in c for c in campaigns)
    assert hook.get_campaign(campaigns[0]["id"])["id"] == campaigns[0]["id"]  # unwrapped
    active = list(hook.iter_campaigns(status="active"))
    assert all(c["status"] == "active" for c in active)


def test_upload_leads_returns_the_answer(carecycle_emulator):
    answer = CareCycleHook().upload_leads(
        [{"phoneNumber": "+13055550100", "postalCode": "33101", "externalId": "hook-1"}]
    )
    assert answer["succeeded"] == 1 and answer["failed"] == 0
    assert len(carecycle_emulator.get_customers_by_external_id()["hook-1"]) == 1


def test_429_retry_after_is_honoured(carecycle_emulator):
    # The server allows 3 requests per 1 s window; the client is told it may send 1000/minute, so it trips 429s
    carecycle_emulator.configure(rate_limit=3, rate_window_s=1.0)
    hook = CareCycleHook(requests_per_minute=1000)
    campaign_id = carecycle_emulator.list_campaigns()[0]["id"]
    for _ in range(8):
        hook.get_campaign(campaign_id)
    log = api_requests(carecycle_emulator, f"/v2/campaigns/{campaign_id}")
    assert hook.stats.rate_limited >= 1
    assert sum(r["status"] == 200 for r in log) == 8
    assert sum(r["rate_limited"] for r in log) == hook.stats.rate_limited
    assert hook.stats.waited_s >= 1.0  # it waited retryAfter (whole seconds)


def test_limiter_keeps_a_burst_under_the_limit(carecycle_emulator):
    carecycle_emulator.configure(rate_limit=20, rate_window_s=2.0)
    hook = CareCycleHook(requests_per_minute=20, rate_limit_window=2.0)
    campaign_id = carecycle_emulator.list_campaigns()[0]["id"]
    threads = [threading.Thread(target=lambda: [hook.get_campaign(campaign_id) for _ in range(5)]) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log = api_requests(carecycle_emulator, f"/v2/campaigns/{campaign_id}")
    assert len(log) == 30 and not any(r["rate_limited"] for r in log)


@pytest.mark.parametrize("kind", ["503", "500", "drop"])
def test_faults_are_retried(carecycle_emulator, kind):
    carecycle_emulator.configure(fault_rate=0.5, fault_kinds=(kind,))
    hook = CareCycleHook(retry_backoff=0.01, max_retries=10)
    customers = list(hook.iter_customers(per_page=10))
    assert len(customers) == len(carecycle_emulator.query_customers({}))
    faults = [r for r in carecycle_emulator.request_log() if r["fault"] == kind]
    assert faults and hook.stats.retries == len(faults)


def test_retries_exhausted_raise_server_error(carecycle_emulator):
    carecycle_emulator.configure(fault_rate=1.0, fault_kinds=("503",))
    hook = CareCycleHook(retry_backoff=0.01, max_retries=2)
    with pytest.raises(CareCycleServerError, match="503"):
        list(hook.iter_customers())
    assert len(api_requests(carecycle_emulator, "/v2/customers")) == 3


def test_wrong_key_fails_once_without_retries(carecycle_emulator, carecycle_connection):
    carecycle_connection("bad_key", host=carecycle_emulator.url, password="cc_not_a_real_key")
    with pytest.raises(CareCycleAuthError, match="Check the API key"):
        list(CareCycleHook("bad_key").iter_customers())
    assert [r["status"] for r in carecycle_emulator.request_log()] == [401]


def test_read_only_key_is_forbidden_to_upload(carecycle_emulator, carecycle_connection):
    carecycle_connection("read_only", host=carecycle_emulator.url, password="cc_readonly_key")
    with pytest.raises(CareCycleAuthError) as err:
        CareCycleHook("read_only").upload_leads([{"phoneNumber": "+13055550100", "postalCode": "33101"}])
    assert err.value.status == 403 and err.value.code == "FORBIDDEN"
    assert len(carecycle_emulator.request_log()) == 1


def test_404_and_400_are_not_retried(carecycle_emulator):
    hook = CareCycleHook(retry_backoff=0.01)
    with pytest.raises(CareCycleNotFoundError):
        hook.get_customer(UNKNOWN_ID)
    with pytest.raises(CareCycleValidationError) as err:
        hook.upload_leads([{"phoneNumber": "not a phone", "postalCode": "33101", "externalId": "x-1"}])
    assert err.value.code == "VALIDATION_ERROR"
    assert any(e["path"][-1] == "phoneNumber" for e in err.value.errors)
    assert [r["status"] for r in carecycle_emulator.request_log()] == [404, 400]


def test_test_connection(carecycle_emulator, carecycle_connection):
    ok, message = CareCycleHook().test_connection()
    assert ok and "Connected to careCycle" in message
    assert api_requests(carecycle_emulator, "/v2/customers")[0]["query"]["perPage"] == "1"
    carecycle_connection("wrong", host=carecycle_emulator.url, password="cc_wrong")
    ok, message = CareCycleHook("wrong").test_connection()
    assert not ok and "Check the API key" in message and "cc_wrong" not in message


# -- page-level endpoints: the one code path of the iter_* methods and the extract operators -----------------------


def test_customer_pages_are_the_pages_iter_customers_reads(carecycle_emulator):
    carecycle_emulator.reset(customers=25)
    hook = CareCycleHook()
    pages = list(hook.customer_pages({"sort_by": "createdAt", "sort_direction": "asc"}, per_page=10))
    assert [p.number for p in pages] == [1, 2, 3]
    assert [len(p.items) for p in pages] == [10, 10, 5] and {p.items_total for p in pages} == {25}
    rows = list(hook.iter_customers(sort_by="createdAt", sort_direction="asc", per_page=10))
    assert [c["id"] for p in pages for c in p.items] == [c["id"] for c in rows]
    sent = api_requests(carecycle_emulator, "/v2/customers")
    assert {(r["query"]["sortBy"], r["query"]["sortDirection"], r["query"]["perPage"]) for r in sent} == {
        ("createdAt", "asc", "10")
    }


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda hook: hook.customer_pages({"no_such_filter": 1}), "Unknown careCycle customer filter"),
        (lambda hook: hook.customer_pages({"statuses": ["Nobody"]}), "Valid values"),
        (lambda hook: hook.customer_pages(per_page=0), "per_page must be an integer from 1 to 100"),
        (lambda hook: hook.call_pages("not-a-uuid"), "customer_id must be a careCycle UUID"),
        (lambda hook: hook.call_pages(UNKNOWN_ID, sort_by="name"), "Invalid sort_by"),
        (lambda hook: hook.call_pages(UNKNOWN_ID, per_page=101), "per_page must be an integer from 1 to 100"),
        (lambda hook: hook.iter_customer_calls(f"{UNKNOWN_ID}\n"), "customer_id must be a careCycle UUID"),
    ],
)
def test_page_methods_check_their_arguments_before_any_request(carecycle_emulator, call, message):
    with pytest.raises(ValueError, match=message):
        call(CareCycleHook())  # raised when called, not on the first next()
    assert carecycle_emulator.request_log() == []


def test_call_pages_page_through_one_customers_calls(carecycle_emulator):
    carecycle_emulator.tick_dialer(steps=20)
    hook = CareCycleHook()
    customer = next(c for c in hook.iter_customers() if c["totalCalls"] >= 2)
    pages = list(hook.call_pages(customer["id"], sort_by="duration", sort_direction="asc", per_page=1))
    assert [p.number for p in pages] == list(range(1, customer["totalCalls"] + 1))
    assert [c["id"] for p in pages for c in p.items] == [
        c["id"] for c in hook.iter_customer_calls(customer["id"], sort_by="duration", sort_direction="asc")
    ]
    sent = api_requests(carecycle_emulator, f"/v2/customers/{customer['id']}/calls")
    assert {(r["query"]["sortBy"], r["query"]["sortDirection"]) for r in sent} == {("duration", "asc")}


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("1369e7fe-6ed5-49b5-8b46-243bf8918958", True),
        ("1369E7FE-6ED5-49B5-8B46-243BF8918958", True),
        (UNKNOWN_ID, True),  # the nil UUID: a well-formed id the API answers 404 for
        ("ffffffff-ffff-ffff-ffff-ffffffffffff", True),
        ("12345678-1234-1234-1234-123456789012", False),  # no RFC 9562 variant
        ("1369e7fe-6ed5-09b5-8b46-243bf8918958", False),  # version 0
        ("1369e7fe-6ed5-49b5-8b46-243bf8918958\n", False),  # a line break would end up in the URL path
        (" 1369e7fe-6ed5-49b5-8b46-243bf8918958", False),
        ("1369e7fe6ed549b58b46243bf8918958", False),
        ("../v2/leads/upload", False),
        (None, False),
        (12, False),
    ],
)
def test_one_uuid_check_for_every_id(value, ok):
    assert is_uuid(value) is ok
    if ok:
        assert require_uuid("campaign_id", value) == value
    else:
        with pytest.raises(ValueError, match="campaign_id must be a careCycle UUID"):
            require_uuid("campaign_id", value)
