"""CareCloudCrmHook against the CareCloud emulator over real HTTP (requests_mock only for narrow edge cases)."""

from __future__ import annotations

import json
import re
import warnings
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from airflow_provider_carecycle._compat import AirflowProviderDeprecationWarning
from airflow_provider_carecycle.carecloud.exceptions import (
    CareCloudAuthError,
    CareCloudNotFoundError,
    CareCloudServerError,
    CareCloudValidationError,
)
from airflow_provider_carecycle.carecloud.hook import CareCloudCrmHook
from carecycle_emulator import carecloud_connection_json as connection_json

pytestmark = pytest.mark.usefixtures("carecloud_emulator")


def api_calls(emu, path_end):
    return [e for e in emu.request_log() if e["path"].endswith(path_end)]


def in_interval(emu, start, end):
    return {c["customer_id"] for c in emu.customers() if start <= datetime.fromisoformat(c["last_change"]) < end}


# -- connection and settings ----------------------------------------------------------------------------------


def test_test_connection_ok(carecloud_emulator):
    ok, message = CareCloudCrmHook().test_connection()
    assert ok, message
    assert "50 customers" in message


def test_test_connection_wrong_password_fails_without_leaking_it(carecloud_emulator, monkeypatch):
    conn = json.loads(connection_json(carecloud_emulator))
    conn["password"] = "wrong-secret"
    monkeypatch.setenv("AIRFLOW_CONN_CARECLOUD_CRM_DEFAULT", json.dumps(conn))
    ok, message = CareCloudCrmHook().test_connection()
    assert not ok
    assert "401" in message and "wrong-secret" not in message
    assert len(api_calls(carecloud_emulator, "/users/actions/login")) == 1  # 401 is not retried


@pytest.mark.parametrize(
    ("host", "extra", "expected"),
    [
        ("myproject.crmcarecloud.com", {}, "https://myproject.crmcarecloud.com/webservice/rest-api/enterprise-interface/v1.0"),
        ("https://x.test/webservice/rest-api", {"version": "v1.1"}, "https://x.test/webservice/rest-api/enterprise-interface/v1.1"),
        ("https://x.test/webservice/rest-api/enterprise-interface/v1.0/", {}, "https://x.test/webservice/rest-api/enterprise-interface/v1.0"),
        ("http://127.0.0.1:8080", {"interface": "customer-interface"}, "http://127.0.0.1:8080/webservice/rest-api/customer-interface/v1.0"),
    ],
)  # fmt: skip
def test_base_url_from_host(carecycle_connection, host, extra, expected):
    carecycle_connection(
        "cc_crm",
        conn_type="carecloud",
        host=host,
        login="u",
        password="crm-secret-pw",
        extra={"user_external_application_id": "app", **extra},
    )
    assert CareCloudCrmHook("cc_crm").base_url == expected


def test_the_connection_type_is_a_valid_uri_scheme_and_read_without_a_warning(carecycle_connection, captured_logs):
    """Issue 19: ``carecloud_crm`` made Airflow log that a connection scheme shall not contain '_' (RFC 3986)."""
    from airflow.models import Connection

    assert re.fullmatch(r"[a-z][a-z0-9+.-]*", CareCloudCrmHook.conn_type) and CareCloudCrmHook.conn_type == "carecloud"
    uri = Connection(conn_id="crm_uri", conn_type="carecloud", host="x.test", login="u", password="pw").get_uri()
    assert uri.startswith("carecloud://") and "shall not contain '_'" not in captured_logs()
    carecycle_connection(
        "cc_crm", conn_type="carecloud", host="x.test", login="u", password="crm-secret-pw",
        extra={"user_external_application_id": "app"},
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        assert CareCloudCrmHook("cc_crm").base_url == "https://x.test/webservice/rest-api/enterprise-interface/v1.0"


def test_the_old_connection_type_is_still_read_with_a_deprecation_warning_naming_the_new_one(carecycle_connection):
    carecycle_connection(
        "cc_crm_old", conn_type="carecloud_crm", host="x.test", login="u", password="crm-secret-pw",
        extra={"user_external_application_id": "app"},
    )  # fmt: skip
    with pytest.warns(AirflowProviderDeprecationWarning, match=r"'carecloud_crm', which is deprecated.*to 'carecloud'"):
        assert CareCloudCrmHook("cc_crm_old").base_url.startswith("https://x.test/webservice/rest-api/")


@pytest.mark.parametrize("conn_type", ["carecloud", "carecloud_crm"])
def test_an_extra_with_the_old_form_prefix_is_refused_naming_the_extra(carecycle_connection, conn_type):
    carecycle_connection(
        "cc_crm", conn_type=conn_type, host="x.test", login="u", password="crm-secret-pw",
        extra={"user_external_application_id": "app", "extra__carecloud_crm__timeout": 5},
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AirflowProviderDeprecationWarning)
        with pytest.raises(ValueError, match="'extra__carecloud_crm__timeout' is not read; name it 'timeout'"):
            _ = CareCloudCrmHook("cc_crm").base_url


def test_missing_external_application_id_is_explained(carecycle_connection):
    carecycle_connection("cc_crm", conn_type="carecloud", host="x.test", login="u", password="crm-secret-pw")
    with pytest.raises(CareCloudAuthError, match="user_external_application_id"):
        _ = CareCloudCrmHook("cc_crm").base_url


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ({"timeout": "soon"}, "timeout"),
        ({"project_timezone": "Mars/Base"}, "IANA"),
        ({"max_retries": -1}, "max_retries"),
    ],
)
def test_bad_extras_are_refused(carecycle_connection, extra, match):
    carecycle_connection(
        "cc_crm", conn_type="carecloud", host="x.test", login="u", password="crm-secret-pw",
        extra={"user_external_application_id": "app", **extra},
    )  # fmt: skip
    with pytest.raises(ValueError, match=match):
        _ = CareCloudCrmHook("cc_crm").base_url


def test_ui_field_behaviour_shape():
    behaviour = CareCloudCrmHook.get_ui_field_behaviour()
    assert set(behaviour) == {"hidden_fields", "relabeling", "placeholders"}
    assert "login" not in behaviour["hidden_fields"] and "password" not in behaviour["hidden_fields"]


# -- paging and filters ---------------------------------------------------------------------------------------


def test_paging_reads_every_customer_once_with_count_offset(carecloud_emulator):
    hook = CareCloudCrmHook()
    rows = list(hook.iter_customers(count=7))
    assert len({r["customer_id"] for r in rows}) == 50
    pages = api_calls(carecloud_emulator, "/customers")
    assert [int(e["query"]["offset"]) for e in pages] == [0, 7, 14, 21, 28, 35, 42, 49]
    assert hook.logins == 1 and hook.stats.requests == 9


def test_paging_is_lazy(carecloud_emulator):
    rows = CareCloudCrmHook().iter_customers(count=10)
    next(rows)
    assert len(api_calls(carecloud_emulator, "/customers")) == 1


def test_scalar_filters(carecloud_emulator):
    target = carecloud_emulator.customers()[4]
    info = target["personal_information"]
    hook = CareCloudCrmHook()
    by_phone = list(hook.iter_customers(phone="+" + info["phone"]))
    by_email = list(hook.iter_customers(email=info["email"].upper()))
    dob = datetime.fromisoformat(info["birthdate"]).strftime("%d.%m.%Y")
    by_name_dob = list(hook.iter_customers(first_name=info["first_name"], last_name=info["last_name"], birthdate=dob))
    assert [c["customer_id"] for c in by_phone] == [target["customer_id"]]
    assert [c["customer_id"] for c in by_email] == [target["customer_id"]]
    assert target["customer_id"] in {c["customer_id"] for c in by_name_dob}
    assert api_calls(carecloud_emulator, "/customers")[0]["query"]["phone"] == info["phone"]


def test_customer_ids_use_bracket_arrays_and_split_at_1000(carecloud_emulator):
    real = [c["customer_id"] for c in carecloud_emulator.customers()[:3]]
    ids = [f"missing{i}" for i in range(1500)] + real
    found = list(CareCloudCrmHook().iter_customers(customer_ids=ids))
    assert sorted(c["customer_id"] for c in found) == sorted(real)
    calls = api_calls(carecloud_emulator, "/customers")
    assert [len(e["multi_query"]["customer_ids[]"]) for e in calls] == [1000, 503]


def test_empty_list_filter_matches_nobody_without_a_request(carecloud_emulator):
    assert list(CareCloudCrmHook().iter_customers(email_list=[])) == []
    assert api_calls(carecloud_emulator, "/customers") == []


def test_email_list_and_sorting(carecloud_emulator):
    emails = [c["personal_information"]["email"] for c in carecloud_emulator.customers()[:5]]
    rows = list(CareCloudCrmHook().iter_customers(email_list=emails, sort_field="last_change", sort_direction="desc"))
    assert len(rows) == 5
    assert [r["last_change"] for r in rows] == sorted((r["last_change"] for r in rows), reverse=True)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sort_direction": "up"},
        {"sort_field": "personal_information.email"},
        {"phone": "call me"},
        {"birthdate": "30/04/1950"},
        {"count": 0},
        {"customer_ids": "abc"},
    ],
)
def test_bad_filters_are_refused_before_any_request(carecloud_emulator, kwargs):
    with pytest.raises(ValueError):
        list(CareCloudCrmHook().iter_customers(**kwargs))
    assert carecloud_emulator.request_log() == []


# -- incremental selection ------------------------------------------------------------------------------------


def test_changed_customers_match_the_interval_and_stop_early(carecloud_emulator):
    start, end = datetime(2026, 2, 27), datetime(2026, 3, 1)
    hook = CareCloudCrmHook()
    rows = list(hook.iter_changed_customers(start, end, count=5))
    assert {r["customer_id"] for r in rows} == in_interval(carecloud_emulator, start, end) != set()
    assert len(rows) == len({r["customer_id"] for r in rows})
    calls = api_calls(carecloud_emulator, "/customers")
    assert calls[0]["query"]["sort_field"] == "last_change" and calls[0]["query"]["sort_direction"] == "DESC"
    assert len(calls) < 10  # 50 customers at 5 per page would take 10 pages without the early stop


def test_changed_rows_carry_the_instant_their_last_change_names_read_once_by_the_hook(carecloud_emulator):
    from airflow_provider_carecycle.carecloud.hook import ChangedRead, parse_carecloud_datetime

    start, end = datetime(2026, 2, 27), datetime(2026, 3, 1)
    read = ChangedRead()
    rows = list(CareCloudCrmHook().iter_changed_rows(start, end, count=5, read=read))
    assert [r.customer for r in rows] == list(CareCloudCrmHook().iter_changed_customers(start, end, count=5))
    assert rows and all(r.changed == parse_carecloud_datetime(r.customer["last_change"], timezone.utc) for r in rows)
    assert read.newest == max(r.changed for r in rows)


def test_changed_customers_convert_aware_bounds_to_the_project_zone(carecloud_emulator, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_CARECLOUD_CRM_DEFAULT", connection_json(carecloud_emulator, project_timezone="Europe/Prague")
    )
    start_utc = datetime(2026, 2, 27, 23, 0, tzinfo=timezone.utc)  # 2026-02-28 00:00 in Prague (UTC+1)
    end_utc = start_utc + timedelta(days=2)
    rows = CareCloudCrmHook().iter_changed_customers(start_utc, end_utc)
    prague = ZoneInfo("Europe/Prague")
    local = (start_utc.astimezone(prague).replace(tzinfo=None), end_utc.astimezone(prague).replace(tzinfo=None))
    assert {r["customer_id"] for r in rows} == in_interval(carecloud_emulator, *local)


def test_changed_customers_pick_up_a_touched_customer(carecloud_emulator):
    customer_id = carecloud_emulator.customers()[0]["customer_id"]
    carecloud_emulator.touch_customer(customer_id, when=datetime(2026, 3, 5, 8, 0))
    rows = list(CareCloudCrmHook().iter_changed_customers(datetime(2026, 3, 5), datetime(2026, 3, 6)))
    assert [r["customer_id"] for r in rows] == [customer_id]


def test_changed_customers_page_with_one_row_of_overlap_and_notice_rows_that_moved(carecloud_emulator):
    from airflow_provider_carecycle.carecloud.hook import ChangedRead

    start, end = datetime(2026, 2, 20), datetime(2026, 3, 3)
    expected = in_interval(carecloud_emulator, start, end)
    newest_first = sorted(carecloud_emulator.customers(), key=lambda c: c["last_change"], reverse=True)
    carecloud_emulator.delete_after_pages(1, [newest_first[1]["customer_id"]])  # after the first page
    read = ChangedRead()
    rows = list(CareCloudCrmHook().iter_changed_customers(start, end, count=5, read=read))
    # one row deleted above the boundary: the row that moved up is the one the overlap asks for, so none is missed
    assert {r["customer_id"] for r in rows} == expected
    offsets = [int(c["query"]["offset"]) for c in api_calls(carecloud_emulator, "/customers")]
    assert offsets[:3] == [0, 4, 8]
    assert read.drifts == 1 and read.floor is not None and read.watermark() <= read.floor


def test_changed_customers_refuse_an_empty_interval():
    with pytest.raises(ValueError, match="start must be before end"):
        CareCloudCrmHook().iter_changed_customers(datetime(2026, 3, 2), datetime(2026, 3, 1))


# -- tokens ---------------------------------------------------------------------------------------------------


def test_token_is_cached_across_requests(carecloud_emulator):
    hook = CareCloudCrmHook()
    list(hook.iter_customers(count=10))
    hook.get_customer(carecloud_emulator.customers()[0]["customer_id"])
    assert hook.logins == 1 and carecloud_emulator.counts()["logins"] == 1


def test_expired_token_gets_one_relogin_and_retry(carecloud_emulator):
    hook = CareCloudCrmHook()
    list(hook.iter_customers(count=50))
    before = len(carecloud_emulator.request_log())
    carecloud_emulator.expire_tokens()
    rows = list(hook.iter_customers(count=50))
    assert len(rows) == 50 and hook.logins == 2
    log = carecloud_emulator.request_log()[before:]
    statuses = [(e["path"].rsplit("/", 1)[-1], e["status"]) for e in log][:3]
    assert statuses == [("customers", 401), ("login", 200), ("customers", 200)]


def test_second_401_after_relogin_fails(carecloud_emulator):
    carecloud_emulator.configure(token_lifetime_s=0)
    hook = CareCloudCrmHook()
    with pytest.raises(CareCloudAuthError, match="401"):
        list(hook.iter_customers())
    assert hook.logins == 2


def test_token_renewed_before_valid_to(carecloud_emulator):
    carecloud_emulator.configure(token_lifetime_s=30)  # valid_to is within the 60 s refresh margin
    hook = CareCloudCrmHook()
    list(hook.iter_customers(count=25))
    assert hook.logins == 3  # one login per page (two full pages, then the empty one that ends the list), no 401
    assert all(e["status"] == 200 for e in carecloud_emulator.request_log())


# -- errors, retries, rate limits -----------------------------------------------------------------------------


def test_validation_error_carries_invalid_params_without_values(carecloud_emulator):
    with pytest.raises(CareCloudValidationError) as err:
        list(CareCloudCrmHook().iter_customers(extra_params={"birthdate": "not-a-date"}))
    assert err.value.status == 400 and err.value.code == "bad_request_exception"
    assert err.value.invalid_params == [{"name": "birthdate", "reason": "invalid_value_format"}]
    assert "birthdate: invalid_value_format" in str(err.value) and "not-a-date" not in str(err.value)


def test_get_customer_and_not_found(carecloud_emulator):
    hook = CareCloudCrmHook()
    first = carecloud_emulator.customers()[0]
    assert hook.get_customer(first["customer_id"]) == first
    with pytest.raises(CareCloudNotFoundError):
        hook.get_customer("0000000000")
    with pytest.raises(ValueError):
        hook.get_customer("../users")


def test_forbidden_interface_is_not_retried(carecloud_emulator, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_CARECLOUD_CRM_DEFAULT", connection_json(carecloud_emulator, interface="customer-interface")
    )
    with pytest.raises(CareCloudAuthError, match="interface"):
        CareCloudCrmHook().get_customer("abc")
    assert len(carecloud_emulator.request_log()) == 1


def test_faults_are_retried_with_backoff(carecloud_emulator):
    carecloud_emulator.configure(fault_rate=0.3)
    hook = CareCloudCrmHook(retry_backoff=0.001, max_retries=8)
    rows = list(hook.iter_customers(count=5))
    assert len({r["customer_id"] for r in rows}) == 50
    assert hook.stats.retries > 0 and carecloud_emulator.counts()["faults"] == hook.stats.retries


def test_429_is_retried_and_pauses_the_limiter(carecloud_emulator):
    carecloud_emulator.configure(rate_limit=4, rate_window_s=0.3)
    hook = CareCloudCrmHook(retry_backoff=0.05, max_retries=10, rate_limit_window=1.0)
    rows = list(hook.iter_customers(count=5))
    assert len(rows) == 50
    assert hook.stats.rate_limited > 0 and carecloud_emulator.counts()["rate_limited"] == hook.stats.rate_limited


def test_retries_exhausted_raise_server_error(carecloud_emulator):
    carecloud_emulator.configure(fault_rate=1.0, fault_kinds=("503",))
    hook = CareCloudCrmHook(retry_backoff=0.001, max_retries=2)
    with pytest.raises(CareCloudServerError, match="503"):
        list(hook.iter_customers())
    assert hook.stats.requests == 3


def test_non_json_5xx_then_success(carecycle_connection, requests_mock):
    carecycle_connection(
        "cc_crm", conn_type="carecloud", host="https://crm.test", login="u", password="crm-secret-pw",
        extra={"user_external_application_id": "app"},
    )  # fmt: skip
    base = "https://crm.test/webservice/rest-api/enterprise-interface/v1.0"
    requests_mock.post(f"{base}/users/actions/login", json={"data": {"bearer_token": "t0k", "valid_to": None}})
    requests_mock.get(
        f"{base}/customers",
        [
            {"status_code": 502, "text": "<html>bad gateway</html>"},
            {"json": {"data": {"customers": [], "total_items": 0}}},
        ],
    )
    hook = CareCloudCrmHook("cc_crm", retry_backoff=0.001)
    assert list(hook.iter_customers()) == []
    assert requests_mock.request_history[-1].headers["Authorization"] == "Bearer t0k"
    assert hook.stats.by_status == {200: 2, 502: 1}


def test_accept_language_header(carecloud_emulator, requests_mock):
    requests_mock.real_http = True
    hook = CareCloudCrmHook(accept_language="en")
    assert hook.get_conn().headers["Accept-Language"] == "en"


def test_no_phi_or_secrets_in_logs(carecloud_emulator, captured_logs):
    hook = CareCloudCrmHook()
    rows = list(hook.iter_changed_customers(datetime(2026, 2, 1), datetime(2026, 3, 3)))
    carecloud_emulator.expire_tokens()
    hook.get_customer(rows[0]["customer_id"])
    text = captured_logs()
    assert "Logged in to CareCloud CRM" in text
    for row in rows:
        info = row["personal_information"]
        assert info["email"] not in text and info["phone"] not in text and info["last_name"] not in text
    assert "emulator-password" not in text and hook._token not in text
