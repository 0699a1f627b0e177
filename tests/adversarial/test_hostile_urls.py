"""Credentials in URLs (issue 20, section 7): a base URL with user info is refused, and never shown.

A careCycle or CareCloud base URL is formed from the connection's host, schema and port (and CareCloud's path
extras). ``https://user:password@host`` there would travel as a Basic ``Authorization`` header to whatever host
the URL really names, and reach every message, log line, asset URI and lineage namespace built from the URL. The
hooks refuse it when they read the connection, before any request, naming the connection and not the URL; the
campaign link's ``app_url`` and the ``carecycle://`` asset URIs take no user info either. Each case runs the real
hooks against :class:`~tests.adversarial.hostile_server.HostileServer`, which records anything that reaches it.
"""

from __future__ import annotations

import pytest

from airflow_provider_carecycle.assets import leads_uri, normalize_carecycle_uri
from airflow_provider_carecycle.carecloud.hook import CareCloudCrmHook
from airflow_provider_carecycle.hooks.carecycle import CareCycleHook
from airflow_provider_carecycle.lineage import carecloud_namespace, carecycle_namespace
from airflow_provider_carecycle.links import app_url
from tests.adversarial.hostile_server import Reply

USER, SECRET = "apiuser", "Sekr3tPw"
LEAD = {"phoneNumber": "+13055550100", "postalCode": "33101", "externalId": "e-1"}


def base_url_forms(server_url: str) -> list[tuple[str, dict]]:
    """``(label, connection fields)``: the ways user info can end up in a base URL the connection forms."""
    host_port = server_url.split("://", 1)[1]
    host, port = host_port.rsplit(":", 1)
    return [
        ("a full URL in the host", {"host": f"http://{USER}:{SECRET}@{host_port}"}),
        ("a host without a scheme", {"host": f"{USER}:{SECRET}@{host}", "schema": "http", "port": int(port)}),
        ("a user name only", {"host": f"http://{USER}@{host_port}"}),
        ("a real host hidden behind a decoy", {"host": f"http://api.carecycle.ai:{SECRET}@{host_port}"}),
        ("a password with an unencoded '/'", {"host": f"http://{USER}:{SECRET}/x@{host_port}"}),
        ("the schema field", {"host": host, "schema": f"http://{USER}:{SECRET}@{host_port}/?", "port": int(port)}),
    ]


def everything_said(failure: pytest.ExceptionInfo, logs: str) -> str:
    said, error = [logs], failure.value
    while error is not None:  # the message and everything chained to it
        said.append(str(error))
        error = error.__cause__ or error.__context__
    return "\n".join(said)


@pytest.mark.parametrize("form", range(6))
def test_a_carecycle_base_url_with_user_info_is_refused_before_any_request(
    hostile_server, carecycle_connection, captured_logs, form
):
    server = hostile_server()
    server.queue(Reply(200, {"succeeded": 1, "failed": 0, "errors": []}))
    label, fields = base_url_forms(server.url)[form]
    carecycle_connection("cc_userinfo", password="cc_test_key", extra={"requests_per_minute": 100000}, **fields)
    hook = CareCycleHook("cc_userinfo", max_retries=0)
    with pytest.raises(ValueError, match="Airflow connection 'cc_userinfo': the host .* user name or password") as err:
        hook.upload_leads([LEAD])
    text = everything_said(err, captured_logs())
    for part in (USER, SECRET, "api.carecycle.ai", server.url):
        assert part not in text, f"{label}: {part!r} was shown"
    assert server.requests == [], f"{label}: a request went out"


def test_test_connection_refuses_it_naming_this_connection_only(hostile_server, carecycle_connection):
    server = hostile_server()
    carecycle_connection("cc_userinfo", host=server.url.replace("://", f"://{USER}:{SECRET}@"))
    ok, message = CareCycleHook("cc_userinfo").test_connection()
    assert not ok and message.startswith("This connection: the host (base URL) holds a user name or password")
    assert SECRET not in message and USER not in message and server.requests == []


@pytest.mark.parametrize(
    "fields",
    [
        {"host": "https://{user}:{secret}@myproject.crmcarecloud.com"},
        {"host": "{user}:{secret}@myproject.crmcarecloud.com"},
        {"host": "https://myproject.crmcarecloud.com@{secret}.example"},
        {"host": "https://myproject.crmcarecloud.com", "interface": "x@{secret}.example"},
    ],
)
def test_a_carecloud_base_url_with_user_info_is_refused_before_the_login(carecycle_connection, captured_logs, fields):
    fields = {k: v.format(user=USER, secret=SECRET) for k, v in fields.items()}
    extra = {"user_external_application_id": "app", "interface": fields.pop("interface", "enterprise-interface")}
    carecycle_connection(
        "crm_userinfo", conn_type="carecloud_crm", login="crm", password="crm-pw", extra=extra, **fields
    )
    with pytest.raises(ValueError, match="Airflow connection 'crm_userinfo': the host .* user name or password") as err:
        list(CareCloudCrmHook("crm_userinfo").iter_customers())
    text = everything_said(err, captured_logs())
    assert SECRET not in text and USER not in text


def test_asset_uris_and_lineage_namespaces_never_carry_user_info():
    """Built only from a base URL the hook accepted; even handed one with user info, they drop it."""
    url = f"https://{USER}:{SECRET}@API.carecycle.ai:8443/v2"
    assert leads_uri(url) == "carecycle://api.carecycle.ai:8443/leads"
    assert carecycle_namespace(url) == "carecycle://api.carecycle.ai:8443"
    assert carecloud_namespace(url) == "carecloud://api.carecycle.ai:8443"
    from urllib.parse import urlsplit

    with pytest.raises(ValueError, match="takes no user name or password"):
        normalize_carecycle_uri(urlsplit(f"carecycle://{USER}:{SECRET}@api.carecycle.ai/leads"))


def test_an_app_url_with_user_info_is_refused_without_showing_it(carecycle_connection):
    carecycle_connection("cc_app", extra={"app_url": f"https://{USER}:{SECRET}@app.carecycle.ai"})
    with pytest.raises(ValueError, match="'cc_app': extra 'app_url' holds a user name or password") as err:
        app_url("cc_app")
    assert SECRET not in str(err.value) and USER not in str(err.value)
