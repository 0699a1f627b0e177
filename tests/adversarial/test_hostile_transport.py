"""Fail closed on the wire: the API key and patient data go only to the configured host or proxy.

Each test drives the real hooks over real HTTP against :class:`~tests.adversarial.hostile_server.HostileServer`
(a scripted server on loopback that records every request it gets), or against the emulators.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest

from airflow_provider_carecycle.carecloud.exceptions import (
    CareCloudAPIError,
    CareCloudMalformedAnswerError,
    CareCloudValidationError,
)
from airflow_provider_carecycle.carecloud.hook import CareCloudCrmHook
from airflow_provider_carecycle.exceptions import (
    CareCycleAPIError,
    CareCycleAuthError,
    CareCycleMalformedAnswerError,
    CareCycleRateLimitError,
    CareCycleRetryAfterTooLongError,
    CareCycleServerError,
    CareCycleValidationError,
)
from airflow_provider_carecycle.hooks.carecycle import CareCycleHook
from tests.adversarial.hostile_server import DropMidBody, Redirect, Reply, Trickle

KEY = "cc_test_key"
CRM_PASSWORD = "crm-secret-pw"
#: a name a hostile or verbose API echoes back; it must reach no exception text, log line or stored error
NAME = "Zebulon Quackenbush"
CAMPAIGN_ID = "00000000-0000-0000-0000-000000000000"
LEAD = {"phoneNumber": "+13055550100", "postalCode": "33101", "externalId": "e-1", "firstName": "Zebulon"}
CRM_ROOT = "/webservice/rest-api/enterprise-interface/v1.0"
LOGIN = Reply(200, {"data": {"bearer_token": "t0k", "valid_to": None}})


def envelope(items, page=1, next_page=None, total=None):
    body = {"items": items, "currentPage": page, "nextPage": next_page, "prevPage": None}
    if total is not None:
        body["itemsTotal"] = total
    return body


def crm_page(customers, total=None):
    return {"data": {"customers": customers, "total_items": len(customers) if total is None else total}}


@pytest.fixture
def carecycle_at(carecycle_connection):
    """``carecycle_at(url, **extra)``: a CareCycleHook on a connection to ``url`` that records its sleeps."""

    def make(url: str, conn_id: str = "hostile", hook_kwargs=None, **extra) -> CareCycleHook:
        carecycle_connection(conn_id, host=url, password=KEY, extra={"requests_per_minute": 100000, **extra})
        sleeps: list[float] = []
        hook = CareCycleHook(conn_id, retry_backoff=0.001, sleep=sleeps.append, **(hook_kwargs or {}))
        hook.sleeps = sleeps
        hook.limiter.pause = lambda seconds: None  # the shared limiter is not what these tests are about
        hook.limiter.apause = _no_pause
        return hook

    return make


async def _no_pause(seconds):
    return None


@pytest.fixture(params=["sync", "async"])
def transport(request):
    """Both transports: the workers' (requests) and the trigger's (httpx on the event loop)."""
    return request.param


def get_campaign(hook, transport, campaign_id=CAMPAIGN_ID):
    """``GET /v2/campaigns/{id}`` through ``transport``: ``hook.get_campaign`` or the trigger's ``aget_campaign``."""
    if transport == "sync":
        return hook.get_campaign(campaign_id)
    hook.prepare_async()
    return asyncio.run(hook.aget_campaign(campaign_id))


@pytest.fixture
def carecloud_at(carecycle_connection):
    """``carecloud_at(url, **extra)``: a CareCloudCrmHook on a connection to ``url``."""

    def make(url: str, conn_id: str = "hostile_crm", **extra) -> CareCloudCrmHook:
        carecycle_connection(
            conn_id,
            conn_type="carecloud",
            host=url,
            login="u",
            password=CRM_PASSWORD,
            extra={"user_external_application_id": "app", "requests_per_minute": 100000, **extra},
        )
        return CareCloudCrmHook(conn_id, retry_backoff=0.001)

    return make


def everything_recorded(*servers) -> str:
    return "".join(
        json.dumps(r.headers) + r.path + r.body.decode(errors="replace") for s in servers for r in s.requests
    )


# -- 1. redirects -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 307, 308])
@pytest.mark.parametrize("call", ["upload", "list"])
def test_a_redirect_is_an_error_and_its_target_gets_nothing(hostile_server, carecycle_at, status, call):
    api, target = hostile_server(), hostile_server()
    api.queue(Redirect(status, f"{target.url}/collect?session=s3cr3t"))
    target.queue(Reply(200, {"succeeded": 1, "failed": 0, "errors": []}), Reply(200, envelope([{"id": 1}])))
    hook = carecycle_at(api.url)
    with pytest.raises(CareCycleAPIError) as err:
        if call == "upload":
            hook.upload_leads([LEAD])
        else:
            list(hook.iter_campaigns())
    message = str(err.value)
    assert str(status) in message and "'127.0.0.1'" in message
    assert "/collect" not in message and "s3cr3t" not in message
    assert not err.value.retryable and err.value.status == status
    assert target.requests == []  # neither the key nor the leads went there
    assert len(api.requests) == 1  # not retried


@pytest.mark.parametrize("status", [302, 307])
def test_a_redirected_campaign_poll_is_an_error_on_both_transports(hostile_server, carecycle_at, status, transport):
    api, target = hostile_server(), hostile_server()
    api.queue(Redirect(status, f"{target.url}/collect?session=s3cr3t"))
    target.queue(Reply(200, {"campaign": {"id": CAMPAIGN_ID}}))
    with pytest.raises(CareCycleAPIError) as err:
        get_campaign(carecycle_at(api.url), transport)
    assert str(status) in str(err.value) and "'127.0.0.1'" in str(err.value) and "s3cr3t" not in str(err.value)
    assert not err.value.retryable and target.requests == [] and len(api.requests) == 1


def test_a_redirected_carecloud_login_sends_the_password_nowhere(hostile_server, carecloud_at):
    api, target = hostile_server(), hostile_server()
    api.queue(Redirect(307, f"{target.url}{CRM_ROOT}/users/actions/login"))
    with pytest.raises(CareCloudAPIError, match="307"):
        list(carecloud_at(api.url).iter_customers())
    assert target.requests == [] and len(api.requests) == 1


# -- 2. proxies and CA bundles from the environment ------------------------------------------------------------


@pytest.fixture
def clean_proxy_env(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


CAMPAIGN = Reply(200, {"campaign": {"id": CAMPAIGN_ID}})


def test_the_connections_proxy_wins_over_the_environments(hostile_server, carecycle_at, clean_proxy_env, transport):
    env_proxy, conn_proxy = hostile_server(), hostile_server()
    clean_proxy_env.setenv("HTTP_PROXY", env_proxy.url)
    conn_proxy.queue(CAMPAIGN)
    hook = carecycle_at("http://api.carecycle.invalid", proxies={"http": conn_proxy.url}, allow_insecure_http=True)
    assert get_campaign(hook, transport) == {"id": CAMPAIGN_ID}
    assert env_proxy.requests == []
    assert conn_proxy.requests[0].path == f"http://api.carecycle.invalid/v2/campaigns/{CAMPAIGN_ID}"  # absolute URI
    assert conn_proxy.requests[0].headers["x-api-key"] == KEY


def test_an_empty_proxies_mapping_means_direct(hostile_server, carecycle_at, clean_proxy_env, transport):
    env_proxy, api = hostile_server(), hostile_server()
    clean_proxy_env.setenv("HTTP_PROXY", env_proxy.url)
    api.queue(CAMPAIGN)
    assert get_campaign(carecycle_at(api.url, proxies={}), transport) == {"id": CAMPAIGN_ID}
    assert env_proxy.requests == [] and len(api.requests) == 1


def test_without_proxies_in_the_connection_the_environment_applies(
    hostile_server, carecycle_at, clean_proxy_env, transport
):
    env_proxy, api = hostile_server(), hostile_server()
    clean_proxy_env.setenv("HTTP_PROXY", env_proxy.url)
    env_proxy.queue(CAMPAIGN)
    assert get_campaign(carecycle_at("http://api.carecycle.invalid", allow_insecure_http=True), transport)
    assert env_proxy.requests[0].path.startswith("http://api.carecycle.invalid/")
    # ... and so does NO_PROXY
    clean_proxy_env.setenv("NO_PROXY", "127.0.0.1")
    api.queue(CAMPAIGN)
    assert get_campaign(carecycle_at(api.url, conn_id="direct"), transport) == {"id": CAMPAIGN_ID}
    assert len(env_proxy.requests) == 1 and len(api.requests) == 1


def test_the_connections_verify_wins_over_the_environments_ca_bundle(
    hostile_server, carecycle_at, clean_proxy_env, transport
):
    plain = hostile_server()  # speaks plain HTTP: a TLS handshake with it fails
    clean_proxy_env.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/ca-bundle.pem")
    hook = carecycle_at(plain.url.replace("http://", "https://"), verify=False, hook_kwargs={"max_retries": 0})
    assert hook.get_conn().verify is False
    # the environment's bundle would raise OSError("invalid path") before connecting; the connection's verify=False
    # lets the request go out, and the failed handshake is an ordinary "no answer"
    with pytest.raises(CareCycleServerError, match="no answer"):
        get_campaign(hook, transport)


def test_without_verify_in_the_connection_the_environments_ca_bundle_applies(carecycle_at, clean_proxy_env, tmp_path):
    bundle = tmp_path / "corporate-ca.pem"
    bundle.write_text("")
    clean_proxy_env.setenv("CURL_CA_BUNDLE", str(bundle))
    assert carecycle_at("https://api.carecycle.invalid").get_conn().verify == str(bundle)
    assert carecycle_at("https://api.carecycle.invalid", conn_id="explicit", verify=True).get_conn().verify is True


def test_a_verify_path_that_does_not_exist_is_refused(carecycle_at):
    with pytest.raises(ValueError, match=r"'hostile'.*'verify'"):
        carecycle_at("https://api.carecycle.invalid", verify="/nonexistent/ca.pem")


# -- 3. the key itself ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["cc_abc\r\nX-Injected: 1", "cc_abc\ndef", "cc_cl\u00e9_42", "cc_a\x00b"])
def test_a_key_a_header_cannot_carry_is_refused_without_showing_it(
    hostile_server, carecycle_connection, key, transport
):
    api = hostile_server()
    carecycle_connection("bad_key", host=api.url, password=key)
    with pytest.raises(CareCycleAuthError) as err:
        get_campaign(CareCycleHook("bad_key"), transport)
    message = str(err.value)
    assert "'bad_key'" in message and "header" in message
    assert key not in message and key.split("_", 1)[1][:3] not in message.replace("cc_", "")
    assert api.requests == []


# -- 4. plain http -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["http://api.carecycle.ai", "http://10.0.0.7:8080", "api.example.com"])
def test_plain_http_to_a_remote_host_is_refused(carecycle_connection, host):
    carecycle_connection("insecure", host=host, schema="http")
    with pytest.raises(ValueError, match=r"'insecure'.*allow_insecure_http"):
        _ = CareCycleHook("insecure").base_url


@pytest.mark.parametrize("host", ["http://api.carecycle.ai", "http://10.0.0.7:8080"])
def test_plain_http_to_a_remote_host_is_refused_before_the_async_transport_is_built(carecycle_connection, host):
    carecycle_connection("insecure", host=host, schema="http")
    with pytest.raises(ValueError, match=r"'insecure'.*allow_insecure_http"):
        CareCycleHook("insecure").prepare_async()


@pytest.mark.parametrize("host", ["http://127.0.0.1:8080", "http://127.5.0.1", "http://localhost:9", "http://[::1]:9"])
def test_plain_http_to_loopback_is_allowed(carecycle_connection, host):
    carecycle_connection("loopback", host=host)
    assert CareCycleHook("loopback").base_url == host


def test_plain_http_with_allow_insecure_http(carecycle_connection):
    carecycle_connection("opt_in", host="http://emulator.internal:8080", extra={"allow_insecure_http": "true"})
    assert CareCycleHook("opt_in").base_url == "http://emulator.internal:8080"
    carecycle_connection("other_scheme", host="ftp://api.carecycle.ai")
    with pytest.raises(ValueError, match="'other_scheme'"):
        _ = CareCycleHook("other_scheme").base_url


def test_plain_http_is_refused_for_carecloud_too(carecloud_at):
    with pytest.raises(ValueError, match=r"'hostile_crm'.*allow_insecure_http"):
        _ = carecloud_at("http://myproject.crmcarecloud.com").base_url
    assert carecloud_at("http://crm.internal", conn_id="crm_opt_in", allow_insecure_http=True).base_url


# -- 5. logs at DEBUG ----------------------------------------------------------------------------------------


def test_a_search_term_reaches_no_log_line_at_debug(carecycle_emulator, captured_logs):
    logging.getLogger("urllib3").setLevel(logging.DEBUG)
    customer = carecycle_emulator.query_customers({})[0]
    last_name = customer["lastName"]
    found = list(CareCycleHook().iter_customers(search=last_name))
    assert customer["id"] in {c["id"] for c in found}
    logs = captured_logs()
    assert "/v2/customers" in logs  # urllib3's DEBUG lines were captured ...
    assert last_name not in logs  # ... without the search term


def test_a_carecloud_name_filter_reaches_no_log_line_at_debug(carecloud_emulator, captured_logs):
    logging.getLogger("urllib3").setLevel(logging.DEBUG)
    customer = carecloud_emulator.customers()[3]
    last_name = customer["personal_information"]["last_name"]
    assert list(CareCloudCrmHook().iter_customers(last_name=last_name))
    logs = captured_logs()
    assert "/customers" in logs and last_name not in logs


# -- 6. values the API echoes back ---------------------------------------------------------------------------


def test_echoed_values_stay_out_of_validation_errors_and_logs(hostile_server, carecycle_at, captured_logs):
    api = hostile_server()
    api.queue(
        Reply(
            400,
            {
                "message": f"Invalid search '{NAME}'",
                "code": "VALIDATION_ERROR",
                "errors": [
                    {
                        "path": ["records", 0, "firstName"],
                        "message": f"Expected a real name, received '{NAME}'",
                        "received": NAME,
                        "expected": "string",
                        "code": "invalid_string",
                    },
                    {"path": ["records", 0, NAME], "message": NAME, "code": NAME.replace(" ", "_") + " x"},
                    {
                        "path": ["records", 0, "status"],
                        "code": "invalid_enum_value",
                        "expected": f"{NAME}|Lead",
                        "received": NAME,
                    },
                    {"path": ["records", 0, "sourceId"], "code": "too_big", "expected": "<=255", "received": NAME},
                ],
                "failedRecords": [{"index": 0, "externalId": "e-1", "firstName": NAME}],
            },
        )
    )
    with pytest.raises(CareCycleValidationError) as err:
        carecycle_at(api.url).upload_leads([LEAD])
    error = err.value
    stored = repr(error.errors) + repr(error.failed_records) + repr(error.field_errors()) + str(error) + repr(error)
    assert "Zebulon" not in stored and "Quackenbush" not in stored
    assert error.field_errors() == [
        "records.0.firstName: invalid_string (expected string)",
        "records.0.?: invalid",
        "records.0.status: invalid_enum_value",
        "records.0.sourceId: too_big (expected <=255)",
    ]
    assert error.failed_records == [{"index": 0, "externalId": "e-1"}]
    assert error.code == "VALIDATION_ERROR" and "400" in str(error)
    assert "Quackenbush" not in captured_logs()


@pytest.mark.parametrize("code", ["SOME_CODE", None, f"{NAME} not found"])
@pytest.mark.parametrize("status", [401, 404, 409, 503])
def test_echoed_values_stay_out_of_other_errors(hostile_server, carecycle_at, captured_logs, status, code, transport):
    api = hostile_server()
    answer = {"message": f"No customer named {NAME}", "code": code}
    api.queue(Reply(status, answer), Reply(status, answer))
    hook = carecycle_at(api.url, hook_kwargs={"max_retries": 1})
    with pytest.raises(CareCycleAPIError) as err:
        get_campaign(hook, transport)
    assert err.value.status == status and str(status) in str(err.value)
    assert "Quackenbush" not in str(err.value) + repr(err.value) + captured_logs()
    assert err.value.code == (code if code == "SOME_CODE" else None)


def test_carecloud_echoed_values_stay_out_of_errors(hostile_server, carecloud_at, captured_logs):
    api = hostile_server()
    api.queue(
        LOGIN,
        Reply(
            400,
            {
                "error": {
                    "exception": "bad_request_exception",
                    "title": f"Customer {NAME} is invalid",
                    "detail": NAME,
                    "error_data": {
                        "invalid_params": [
                            {"name": "last_name", "reason": "invalid_value", "message": NAME, "value": NAME}
                        ]
                    },
                }
            },
        ),
    )
    with pytest.raises(CareCloudValidationError) as err:
        list(carecloud_at(api.url).iter_customers(last_name="x"))
    stored = str(err.value) + repr(err.value.invalid_params) + repr(err.value.field_errors())
    assert "Quackenbush" not in stored and "last_name: invalid_value" in stored
    assert "Quackenbush" not in captured_logs()


# -- 7. retryAfter -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("retry_after", [-5, float("nan"), float("inf"), "soon", None, True, [], "-1"])
def test_an_unusable_retry_after_waits_the_default(hostile_server, carecycle_at, retry_after, transport):
    api = hostile_server()
    body = {"message": "Rate limit exceeded", "code": "RATE_LIMIT_EXCEEDED"}
    if retry_after is not None:
        body["retryAfter"] = retry_after
    api.queue(Reply(429, body), Reply(200, {"campaign": {"id": CAMPAIGN_ID}}))
    hook = carecycle_at(api.url)
    assert get_campaign(hook, transport) == {"id": CAMPAIGN_ID}
    assert hook.sleeps == [60.0]


def test_a_retry_after_over_the_maximum_is_left_to_task_retries(hostile_server, carecycle_at, transport):
    api = hostile_server()
    api.queue(Reply(429, {"code": "RATE_LIMIT_EXCEEDED", "retryAfter": 86400}), Reply(200, {"campaign": {}}))
    hook = carecycle_at(api.url)
    with pytest.raises(CareCycleRetryAfterTooLongError) as err:
        get_campaign(hook, transport)
    assert isinstance(err.value, CareCycleRateLimitError) and err.value.retryable
    assert (
        err.value.retry_after == 86400 and "86400 s" in str(err.value) and "max_retry_after (300 s)" in str(err.value)
    )
    assert hook.sleeps == [] and len(api.requests) == 1


def test_max_retry_after_is_a_connection_extra(hostile_server, carecycle_at, transport):
    api = hostile_server()
    api.queue(Reply(429, {"retryAfter": 10}), Reply(200, {"campaign": {}}), Reply(429, {"retryAfter": 11}))
    hook = carecycle_at(api.url, max_retry_after="10")
    assert get_campaign(hook, transport) == {}
    with pytest.raises(CareCycleRetryAfterTooLongError, match=r"max_retry_after \(10 s\)"):
        get_campaign(hook, transport)
    assert hook.sleeps == [10.0]


# -- 8. dropped and trickled answers -------------------------------------------------------------------------


@pytest.mark.parametrize("call", ["list", "upload"])
def test_an_answer_dropped_mid_body_is_retried(hostile_server, carecycle_at, call):
    api = hostile_server()
    answer = envelope([{"id": 1}]) if call == "list" else {"succeeded": 1, "failed": 0, "errors": []}
    api.queue(DropMidBody(body=answer, sent=5), Reply(200, answer))
    hook = carecycle_at(api.url)
    result = list(hook.iter_campaigns()) if call == "list" else hook.upload_leads([LEAD])
    assert result == ([{"id": 1}] if call == "list" else answer)
    assert len(api.requests) == 2 and hook.stats.retries == 1


def test_a_campaign_answer_dropped_mid_body_is_retried_on_both_transports(hostile_server, carecycle_at, transport):
    api = hostile_server()
    answer = {"campaign": {"id": CAMPAIGN_ID}}
    api.queue(DropMidBody(body=answer, sent=5), Reply(200, answer))
    hook = carecycle_at(api.url)
    assert get_campaign(hook, transport) == {"id": CAMPAIGN_ID}
    assert len(api.requests) == 2 and hook.stats.retries == 1


def test_a_trickling_campaign_answer_hits_the_deadline_on_both_transports(hostile_server, carecycle_at, transport):
    api = hostile_server()
    trickle = Trickle(body={"campaign": {"id": CAMPAIGN_ID, "padding": "x" * 400}}, every_s=0.02)
    api.queue(trickle, Reply(200, {"campaign": {"id": CAMPAIGN_ID}}))
    hook = carecycle_at(api.url, timeout=1, hook_kwargs={"max_retries": 0})
    with pytest.raises(CareCycleServerError, match="did not arrive completely within 1 s"):
        get_campaign(hook, transport)
    assert trickle.written < len(json.dumps(trickle.body))


def test_a_carecloud_answer_dropped_mid_body_is_retried(hostile_server, carecloud_at):
    api = hostile_server()
    api.queue(
        LOGIN, DropMidBody(body=crm_page([{"customer_id": "a"}]), sent=7), Reply(200, crm_page([{"customer_id": "a"}]))
    )
    assert list(carecloud_at(api.url).iter_customers()) == [{"customer_id": "a"}]
    assert len(api.requests) == 3


def test_a_trickling_answer_hits_the_overall_deadline(hostile_server, carecycle_at):
    api = hostile_server()
    trickle = Trickle(body=envelope([{"id": i, "padding": "x" * 20} for i in range(10)]), every_s=0.02)
    body_length = len(json.dumps(trickle.body))  # about 400 bytes: 8 s at this pace
    api.queue(trickle)
    hook = carecycle_at(api.url, timeout=1, hook_kwargs={"max_retries": 0})
    started = time.monotonic()
    with pytest.raises(CareCycleServerError, match="did not arrive completely within 1 s"):
        list(hook.iter_campaigns())
    assert trickle.written < body_length
    assert time.monotonic() - started < 10  # a safety net only; the count above is the real check


def test_a_trickling_answer_is_retried(hostile_server, carecycle_at):
    api = hostile_server()
    trickle = Trickle(body=envelope([{"id": 1, "padding": "x" * 400}]), every_s=0.02)
    api.queue(trickle, Reply(200, envelope([{"id": 2}])))
    hook = carecycle_at(api.url, timeout=1, hook_kwargs={"max_retries": 1})
    assert list(hook.iter_campaigns()) == [{"id": 2}]
    assert trickle.written < len(json.dumps(trickle.body)) and hook.stats.retries == 1


# -- 9. malformed lists --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ({"nextPage": None}, "the answer has no 'items' list"),
        ({"items": {"0": {"id": 1}}, "nextPage": None}, "the answer has no 'items' list"),
        ([{"id": 1}], "the answer has no 'items' list"),
        ({"items": [{"id": 1}], "nextPage": "2"}, "'nextPage' is neither an integer nor null"),
        ({"items": [{"id": 1}], "nextPage": True}, "'nextPage' is neither an integer nor null"),
        ({"items": [{"id": 1}], "nextPage": 2.5}, "'nextPage' is neither an integer nor null"),
    ],
)
def test_a_malformed_list_answer_is_an_error(hostile_server, carecycle_at, answer, problem):
    api = hostile_server()
    api.queue(Reply(200, envelope([{"id": 0}], 1, 2)), Reply(200, answer))
    with pytest.raises(CareCycleMalformedAnswerError, match=rf"GET /v2/campaigns page 2: {problem}"):
        list(carecycle_at(api.url).iter_campaigns())
    assert len(api.requests) == 2


def test_a_low_items_total_does_not_truncate_the_export(hostile_server, carecycle_at, captured_logs):
    api = hostile_server()
    pages = [envelope([{"id": f"{p}-{i}"} for i in range(100)], p, p + 1 if p < 3 else None, 100) for p in (1, 2, 3)]
    api.queue(*[Reply(200, page) for page in pages])
    rows = list(carecycle_at(api.url).iter_campaigns())
    assert len(rows) == 300 and len(api.requests) == 3
    assert "itemsTotal said 100 items, 300 were paged" in captured_logs()


@pytest.mark.parametrize(
    "answer",
    [
        {"data": {"customers": "none"}},
        {"data": None},
        {"customers": [{"customer_id": "a"}]},
        {"data": {"customers": [{"customer_id": "a"}], "total_items": "1"}},
        {"data": {"customers": ["a"], "total_items": 1}},
    ],
)
def test_a_malformed_carecloud_page_is_an_error(hostile_server, carecloud_at, answer):
    api = hostile_server()
    api.queue(LOGIN, Reply(200, answer))
    with pytest.raises(CareCloudMalformedAnswerError, match="GET /customers offset 0"):
        list(carecloud_at(api.url).iter_customers())


def test_a_low_carecloud_total_does_not_truncate(hostile_server, carecloud_at, captured_logs):
    api = hostile_server()
    rows = [{"customer_id": str(i)} for i in range(5)]
    api.queue(LOGIN, *[Reply(200, crm_page(rows[i : i + 2], total=2)) for i in (0, 2, 4)])
    assert list(carecloud_at(api.url).iter_customers(count=2)) == rows
    assert "total_items said 2, 5 were paged" in captured_logs()


# -- 10. empty and non-JSON answers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "problem"), [(Reply(200, None), "empty body"), (Reply(200, "<html>login</html>"), "is not JSON")]
)
def test_an_empty_or_non_json_answer_is_an_error(hostile_server, carecycle_at, carecloud_at, answer, problem):
    api = hostile_server()
    api.queue(answer, answer, answer, LOGIN, answer)
    hook = carecycle_at(api.url)
    with pytest.raises(CareCycleMalformedAnswerError, match=problem):
        hook.upload_leads([LEAD])
    with pytest.raises(CareCycleMalformedAnswerError, match=problem):
        hook.get_campaign(CAMPAIGN_ID)
    with pytest.raises(CareCycleMalformedAnswerError, match=problem):
        list(hook.iter_campaigns())
    with pytest.raises(CareCloudMalformedAnswerError, match=problem):
        list(carecloud_at(api.url).iter_customers())
    assert len(api.requests) == 5  # a success answer is not sent again


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (Reply(200, None), "empty body"),
        (Reply(200, "<html>login</html>"), "is not JSON"),
        (Reply(200, ["not", "a", "campaign"]), "not a campaign"),
    ],
)
def test_a_malformed_campaign_answer_is_an_error_on_both_transports(
    hostile_server, carecycle_at, answer, problem, transport
):
    api = hostile_server()
    api.queue(answer)
    with pytest.raises(CareCycleMalformedAnswerError, match=problem):
        get_campaign(carecycle_at(api.url), transport)
    assert len(api.requests) == 1  # a success answer is not sent again


def test_an_empty_carecloud_login_answer_is_an_error(hostile_server, carecloud_at):
    api = hostile_server()
    api.queue(Reply(200, None))
    with pytest.raises(CareCloudMalformedAnswerError, match="login: answer 200 has an empty body"):
        list(carecloud_at(api.url).iter_customers())
