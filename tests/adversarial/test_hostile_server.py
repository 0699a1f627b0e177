"""The hostile server does what a test scripts (so the adversarial tests built on it mean what they say)."""

from __future__ import annotations

import http.client

import requests

from tests.adversarial.hostile_server import DropMidBody, Redirect, Reply


def test_queued_actions_then_forward_to_upstream(hostile_server, carecycle_emulator):
    server = hostile_server(upstream=carecycle_emulator.url)
    server.queue(Reply(418, {"message": "teapot"}), Redirect(302, "http://127.0.0.1:9/elsewhere"))
    key = {"x-api-key": "cc_test_key"}
    assert requests.get(f"{server.url}/v2/customers", headers=key).status_code == 418
    redirect = requests.get(f"{server.url}/v2/customers", headers=key, allow_redirects=False)
    assert (redirect.status_code, redirect.headers["Location"]) == (302, "http://127.0.0.1:9/elsewhere")
    forwarded = requests.get(f"{server.url}/v2/customers", headers=key, params={"perPage": 1})
    assert forwarded.status_code == 200 and len(forwarded.json()["items"]) == 1
    assert [r.path.split("?")[0] for r in server.requests] == ["/v2/customers"] * 3
    assert server.requests[0].headers["x-api-key"] == "cc_test_key"


def test_drop_mid_body_breaks_the_read(hostile_server):
    server = hostile_server()
    server.queue(DropMidBody(sent=3))
    host, port = server.url.split("://")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.request("GET", "/x")
    answer = conn.getresponse()
    try:
        answer.read()
    except http.client.IncompleteRead as err:
        assert len(err.partial) == 3
    else:
        raise AssertionError("the body was not cut")
