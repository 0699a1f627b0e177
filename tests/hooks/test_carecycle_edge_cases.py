"""Narrow edge cases the emulator cannot produce (odd envelopes, odd 429s), with ``requests_mock``.

The hook's ordinary behaviour is tested over real HTTP against the emulator in ``test_carecycle.py``.
"""

from __future__ import annotations

import pytest

from airflow_provider_carecycle.exceptions import (
    CareCycleAuthError,
    CareCycleRateLimitError,
    CareCycleServerError,
    CareCycleValidationError,
)
from airflow_provider_carecycle.hooks.carecycle import CareCycleHook

BASE = "https://api.test"


@pytest.fixture
def hook(carecycle_connection):
    carecycle_connection(host=BASE, extra={"requests_per_minute": 100000})
    sleeps: list[float] = []
    hook = CareCycleHook(retry_backoff=0.001, sleep=sleeps.append)
    hook.sleeps = sleeps
    return hook


def envelope(items, page, next_page, total=None, **extra):
    body = {"items": items, "currentPage": page, "nextPage": next_page, "prevPage": None, **extra}
    if total is not None:
        body["itemsTotal"] = total
    return body


@pytest.mark.parametrize(
    ("pages", "expected_requests"),
    [
        # nextPage absent on the last page
        ([envelope([1, 2], 1, 2, 99), {"items": [3], "currentPage": 2}], 2),
        # nextPage 0 (the docs' sample value) on the last page
        ([envelope([1, 2], 1, 2, 99), envelope([3], 2, 0, 99)], 2),
        # nextPage that does not advance
        ([envelope([1, 2], 1, 2, 99), envelope([3], 2, 2, 99)], 2),
        # itemsTotal reached although nextPage says go on: nextPage wins, up to the real last page
        ([envelope([1, 2], 1, 2, 3), envelope([3], 2, 3, 3), envelope([4], 3, None, 3)], 3),
        # an empty page although nextPage says go on
        ([envelope([1, 2], 1, 2), envelope([], 2, 3)], 2),
    ],
)
def test_pagination_stops_on_every_condition(hook, requests_mock, pages, expected_requests):
    requests_mock.get(f"{BASE}/v2/campaigns", [{"json": page} for page in pages] + [{"status_code": 500}])
    items = list(hook.iter_campaigns())
    assert requests_mock.call_count == expected_requests
    assert items == [i for page in pages[:expected_requests] for i in page["items"]]


def test_429_without_body_uses_retry_after_header_then_default(hook, requests_mock):
    requests_mock.get(
        f"{BASE}/v2/campaigns/00000000-0000-0000-0000-000000000000",
        [
            {"status_code": 429, "headers": {"Retry-After": "7"}, "text": "slow down"},
            {"status_code": 429, "text": ""},
            {"json": {"campaign": {"id": "x"}}},
        ],
    )
    hook.limiter.pause = lambda seconds: None  # keep the shared limiter out of it
    assert hook.get_campaign("00000000-0000-0000-0000-000000000000") == {"id": "x"}
    assert hook.sleeps == [7.0, 60.0]


def test_retries_are_bounded(hook, requests_mock):
    requests_mock.get(f"{BASE}/v2/customers", status_code=503, json={"message": "down", "code": "UNAVAILABLE"})
    with pytest.raises(CareCycleServerError, match=r"server error \(503 UNAVAILABLE\)"):
        list(hook.iter_customers())
    assert requests_mock.call_count == 6  # 1 + max_retries (5)


def test_rate_limit_error_surfaces_after_retries(hook, requests_mock, carecycle_connection):
    carecycle_connection(host=BASE, extra={"max_retries": 1, "requests_per_minute": 100000})
    hook = CareCycleHook(retry_backoff=0.001, sleep=lambda seconds: None)
    hook.limiter.pause = lambda seconds: None
    requests_mock.get(f"{BASE}/v2/customers", status_code=429, json={"code": "RATE_LIMIT_EXCEEDED", "retryAfter": 1})
    with pytest.raises(CareCycleRateLimitError) as err:
        list(hook.iter_customers())
    assert err.value.retry_after == 1 and err.value.status == 429 and requests_mock.call_count == 2


def test_validation_error_carries_fields_and_failed_records(hook, requests_mock):
    requests_mock.post(
        f"{BASE}/v2/leads/upload",
        status_code=400,
        json={
            "message": "Invalid request",
            "code": "VALIDATION_ERROR",
            "errors": [{"path": ["records", 1, "dateOfBirth"], "message": "Invalid", "code": "invalid_string"}],
            "failedRecords": [{"index": 1, "externalId": "e-2"}],
        },
    )
    with pytest.raises(CareCycleValidationError) as err:
        hook.upload_leads([{"phoneNumber": "+13055550100"}, {"phoneNumber": "+13055550101"}])
    assert requests_mock.call_count == 1
    assert err.value.code == "VALIDATION_ERROR"
    assert err.value.field_errors() == ["records.1.dateOfBirth: invalid_string"]
    assert err.value.failed_records == [{"index": 1, "externalId": "e-2"}]
    assert "records.1.dateOfBirth" in str(err.value)


def test_non_json_success_is_a_clear_error(hook, requests_mock):
    requests_mock.get(f"{BASE}/v2/customers", text="<html>proxy login</html>")
    with pytest.raises(CareCycleServerError, match="is not JSON"):
        list(hook.iter_customers())


@pytest.mark.parametrize(
    ("password", "problem"), [("", "has no API key"), ("sk_live_123", "does not start with 'cc_'")]
)
def test_bad_key_fails_before_any_request(carecycle_connection, requests_mock, password, problem):
    carecycle_connection("my_cc", host=BASE, password=password)
    with pytest.raises(CareCycleAuthError) as err:
        list(CareCycleHook("my_cc").iter_customers())
    assert problem in str(err.value) and "'my_cc'" in str(err.value)
    assert not requests_mock.called
    if password:
        assert password not in str(err.value)


def test_host_forms(carecycle_connection):
    carecycle_connection("a", host="api.carecycle.ai")
    carecycle_connection("b", host="127.0.0.1", schema="http", port=8080)
    carecycle_connection("c", host="")
    carecycle_connection("d", host="http://127.0.0.1:5555/")
    assert CareCycleHook("a").base_url == "https://api.carecycle.ai"
    assert CareCycleHook("b").base_url == "http://127.0.0.1:8080"
    assert CareCycleHook("c").base_url == "https://api.carecycle.ai"
    assert CareCycleHook("d").base_url == "http://127.0.0.1:5555"


def test_extras_and_overrides(carecycle_connection):
    carecycle_connection(extra={"timeout": "12", "max_retries": "2", "verify": False})
    settings = CareCycleHook(requests_per_minute=30)._settings
    assert (settings["timeout"], settings["max_retries"], settings["requests_per_minute"]) == (12.0, 2, 30)
    assert settings["verify"] is False
    carecycle_connection(extra={"timeout": "soon"})
    with pytest.raises(ValueError, match="extra 'timeout' must be a number"):
        CareCycleHook()._settings  # noqa: B018


def test_old_prefixed_extra_names_are_refused_not_ignored(carecycle_connection):
    carecycle_connection(extra={"extra__carecycle__timeout": "12"})
    with pytest.raises(ValueError, match="extra 'extra__carecycle__timeout' is not read; name it 'timeout'"):
        CareCycleHook()._settings  # noqa: B018


def test_bad_arguments_fail_before_any_request(hook, requests_mock):
    with pytest.raises(ValueError, match="customer_id must be a careCycle UUID"):
        hook.get_customer("42")
    with pytest.raises(ValueError, match="Valid values: draft, active"):
        list(hook.iter_campaigns(status="running"))
    with pytest.raises(ValueError, match="1 to 200 records"):
        hook.upload_leads([{"phoneNumber": "+13055550100"}] * 201)
    with pytest.raises(ValueError, match="per_page must be an integer from 1 to 100"):
        list(hook.iter_customers(per_page=500))
    assert not requests_mock.called


def test_api_key_never_logged(hook, requests_mock, captured_logs):
    requests_mock.get(f"{BASE}/v2/customers", [{"status_code": 503, "json": {}}, {"json": envelope([], 1, None, 0)}])
    assert list(hook.iter_customers()) == []
    assert requests_mock.last_request.headers["x-api-key"] == "cc_test_key"
    logs = captured_logs()
    assert "server error (503" in logs and "Waiting" in logs
    assert "cc_test_key" not in logs
