"""The CareCloud CRM emulator's HTTP contract, seed, tokens and CLI (plain ``requests``, no hook)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta

import pytest
import requests

from carecycle_emulator import CARECLOUD_ANCHOR as ANCHOR
from carecycle_emulator.carecloud.cli import build_emulator, build_parser
from carecycle_emulator.carecloud.seed import seed_customers
from carecycle_emulator.carecloud.server import DEFAULT_APP_ID, DEFAULT_LOGIN, DEFAULT_PASSWORD, CareCloudEmulator

CREDENTIALS = {"user_external_application_id": DEFAULT_APP_ID, "login": DEFAULT_LOGIN, "password": DEFAULT_PASSWORD}


def login(emu, **body):
    return requests.post(f"{emu.base_url}/users/actions/login", json={**CREDENTIALS, **body}, timeout=5)


@pytest.fixture
def api(carecloud_emulator):
    token = login(carecloud_emulator).json()["data"]["bearer_token"]
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"

    def get(path, **params):
        return session.get(f"{carecloud_emulator.base_url}{path}", params=params, timeout=5)

    return get


def test_login_answers_token_and_project_local_valid_to(carecloud_emulator):
    before = carecloud_emulator.now()
    data = login(carecloud_emulator).json()["data"]
    valid_to = datetime.strptime(data["valid_to"], "%Y-%m-%d %H:%M:%S")
    assert len(data["bearer_token"]) >= 20 and data["user"]["login"] == DEFAULT_LOGIN
    assert timedelta(hours=7) - timedelta(seconds=2) <= valid_to - before <= timedelta(hours=7, seconds=2)


def test_login_errors(carecloud_emulator):
    missing = login(carecloud_emulator, login="")
    assert missing.status_code == 400
    assert missing.json()["error"]["error_data"]["invalid_params"][0]["name"] == "login"
    assert missing.json()["error"]["error_data"]["invalid_params"][0]["reason"] == "required"
    wrong = login(carecloud_emulator, password="nope")
    assert wrong.status_code == 401 and wrong.json()["error"]["exception"] == "unauthorized_exception"


def test_requests_need_a_valid_unexpired_token(carecloud_emulator, api):
    assert requests.get(f"{carecloud_emulator.base_url}/customers", timeout=5).status_code == 401
    assert api("/customers").status_code == 200
    carecloud_emulator.expire_tokens()
    expired = api("/customers")
    assert expired.status_code == 401 and expired.json()["error"]["title"] == "Token expired"


def test_envelope_and_paging(api):
    body = api("/customers", count=20, offset=40).json()
    assert set(body) == {"data"} and body["data"]["total_items"] == 50
    assert len(body["data"]["customers"]) == 10
    default = api("/customers").json()["data"]["customers"]
    assert len(default) == 50  # count defaults to 100


def test_sorting_and_sort_errors(api):
    rows = api("/customers", sort_field="last_change", sort_direction="DESC").json()["data"]["customers"]
    changes = [r["last_change"] for r in rows]
    assert changes == sorted(changes, reverse=True)
    bad_field = api("/customers", sort_field="personal_information")
    bad_direction = api("/customers", sort_field="last_change", sort_direction="SIDEWAYS")
    assert bad_field.status_code == 400 and bad_direction.status_code == 400
    assert bad_field.json()["error"]["error_data"]["invalid_params"][0]["reason"] == "not_allowed_value"


def test_bracket_array_filters(carecloud_emulator, api):
    ids = [c["customer_id"] for c in carecloud_emulator.customers()[:3]]
    rows = api("/customers", **{"customer_ids[]": ids}).json()["data"]["customers"]
    assert sorted(r["customer_id"] for r in rows) == sorted(ids)
    too_many = api("/customers", **{"customer_ids[]": [str(i) for i in range(1001)]})
    assert too_many.status_code == 400


def test_birthdate_accepts_both_formats(carecloud_emulator, api):
    born = carecloud_emulator.customers()[0]["personal_information"]["birthdate"]
    dmy = datetime.fromisoformat(born).strftime("%d.%m.%Y")
    assert api("/customers", birthdate=born).json() == api("/customers", birthdate=dmy).json()
    assert api("/customers", birthdate="1950/01/01").status_code == 400


def test_get_customer_and_404(carecloud_emulator, api):
    first = carecloud_emulator.customers()[0]
    assert api(f"/customers/{first['customer_id']}").json() == {"data": first}
    missing = api("/customers/doesnotexist")
    assert missing.status_code == 404 and missing.json()["error"]["exception"] == "not_found_exception"


def test_other_interface_is_forbidden(carecloud_emulator):
    url = f"{carecloud_emulator.url}/webservice/rest-api/customer-interface/v1.0/users/actions/login"
    answer = requests.post(url, json=CREDENTIALS, timeout=5)
    assert answer.status_code == 403 and answer.json()["error"]["exception"] == "interface_not_allowed_exception"


def test_429_body_has_no_wait_hint(carecloud_emulator, api):
    carecloud_emulator.configure(rate_limit=1, rate_window_s=30)
    api("/customers")
    limited = api("/customers")
    assert limited.status_code == 429 and "Retry-After" not in limited.headers
    assert limited.json()["error"]["exception"] == "too_many_requests_exception"


def test_seed_is_deterministic_and_varied():
    first, again = seed_customers(50, 0, ANCHOR, 14), seed_customers(50, 0, ANCHOR, 14)
    assert first == again
    assert [c["customer_id"] for c in seed_customers(50, 1, ANCHOR, 14)] != [c["customer_id"] for c in first]
    phones = [c["personal_information"]["phone"] for c in first]
    assert sum(p.startswith("420") for p in phones) == 7
    assert sum(c["personal_information"]["address"]["zip"] is None for c in first) == 5
    changes = [datetime.fromisoformat(c["last_change"]) for c in first]
    assert all(ANCHOR - timedelta(days=14) <= t <= ANCHOR for t in changes)
    assert max(changes) - min(changes) > timedelta(days=7)


def test_reset_reseeds_and_forgets_tokens(carecloud_emulator, api):
    carecloud_emulator.reset(customers=5, seed=3)
    assert carecloud_emulator.counts()["customers"] == 5 and carecloud_emulator.counts()["tokens"] == 0
    assert api("/customers").status_code == 401


def test_touch_customer_changes_last_change(carecloud_emulator):
    target = carecloud_emulator.customers()[0]["customer_id"]
    changed = carecloud_emulator.touch_customer(target, when=datetime(2026, 3, 5, 8, 0), first_name="Ann")
    assert changed["last_change"] == "2026-03-05 08:00:00" and changed["personal_information"]["first_name"] == "Ann"


def test_admin_config_sets_token_lifetime(carecloud_emulator):
    answer = requests.post(f"{carecloud_emulator.url}/_emulator/config", json={"token_lifetime_s": 5}, timeout=5)
    assert answer.json()["settings"]["token_lifetime_s"] == 5.0


def test_cli_parser_builds_the_emulator():
    args = build_parser().parse_args(
        ["--customers", "7", "--token-lifetime", "60", "--project-timezone", "Europe/Prague"]
    )
    emu = build_emulator(args)
    assert emu.counts()["customers"] == 7 and emu.token_lifetime_s == 60 and str(emu.project_tz) == "Europe/Prague"


def test_cli_serves_until_sigterm(tmp_path):
    port_file = tmp_path / "port"
    cmd = [sys.executable, "-m", "carecycle_emulator.carecloud.cli", "--port-file", str(port_file)]
    proc = subprocess.Popen([*cmd, "--quiet", "--customers", "3"], env={**os.environ})
    try:
        deadline = time.monotonic() + 20
        while not port_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        port = int(port_file.read_text())
        assert requests.get(f"http://127.0.0.1:{port}/_emulator/counts", timeout=5).json()["customers"] == 3
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_context_manager_stops_the_server():
    with CareCloudEmulator(customers=1) as emu:
        url = emu.base_url
        assert requests.post(f"{url}/users/actions/login", json=CREDENTIALS, timeout=5).status_code == 200
    with pytest.raises(requests.ConnectionError):
        requests.post(f"{url}/users/actions/login", json=CREDENTIALS, timeout=2)
