"""A real Airflow deployment runs the CRM lead feed: no ``dag.test()``, every Airflow component its own process.

In a throwaway ``AIRFLOW_HOME`` with SQLite the test runs ``airflow db migrate`` and starts, each in its own
process group, on loopback ports picked at run time:

* Airflow 3: ``api-server``, ``scheduler`` (LocalExecutor: Airflow 3 accepts it on SQLite, its workers reach the
  metadata DB only through the API server), ``dag-processor`` and ``triggerer``; REST API ``/api/v2`` with the
  simple auth manager, everyone admin;
* Airflow 2: ``webserver``, ``scheduler`` (SequentialExecutor, the only one Airflow 2 accepts on SQLite) and
  ``triggerer``; REST API ``/api/v1`` with basic auth for a user the test creates.

The careCycle and CareCloud CRM emulators run in this process. The test triggers ``carecycle_crm_lead_feed``
through the REST API, waits for the run and checks:

* every task succeeded;
* the sensor deferred and the real triggerer resumed it (the task log shows the check on the worker, the deferral
  and the resumption; the triggerer wrote the trigger's log with its success event);
* every CRM customer changed that day is in careCycle by ``externalId``, except the ones the run rejected;
* no file in the log folder, and nothing the processes printed, holds a seeded name, phone, email, date of birth or
  either API key.

It also tests a connection through the REST API and ``airflow connections test``. Every process is stopped (its
whole process group) even when the test fails, and every wait is bounded. The test prints how long each task took.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_carecycle._compat import AIRFLOW_V_3_0_PLUS
from dev.dag_loader import dag_bundle_config
from dev.demo import DAG_ID, POOL, start_emulators

pytestmark = pytest.mark.deployment

CRM_FEED = Path(__file__).resolve().parents[2] / "example_dags" / f"{DAG_ID}.py"
SENSOR = "wait_for_first_calls"
#: upper bounds of the waits (seconds); the whole test takes well under a minute on an idle machine
START_TIMEOUT_S = 120
RUN_TIMEOUT_S = 240
STOP_TIMEOUT_S = 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def airflow_env(home: Path, api_port: int, dags: Path, connections: Mapping[str, str]) -> dict[str, str]:
    """The environment of every Airflow process: this process's, without its own Airflow settings, plus the
    deployment's.

    :param home: the throwaway ``AIRFLOW_HOME``.
    :param api_port: the API server's port.
    :param dags: the DAG bundle's folder.
    :param connections: ``AIRFLOW_CONN_*`` name -> value.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__"))}
    api_url = f"http://127.0.0.1:{api_port}"
    env.update(connections)
    env.update(
        {
            # the executor starts tasks as `airflow ...` from the PATH: the same installation as this test's
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",  # the REST and CLI connection tests
            # only runs triggered through the API: the daily schedule must not add a run of its own
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if AIRFLOW_V_3_0_PLUS:
        env.update(
            {
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": dag_bundle_config(dags),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url}/execution/",
                "AIRFLOW__API__BASE_URL": api_url,
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(api_port),
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            }
        )
    else:  # Airflow 2 accepts SQLite with the SequentialExecutor only; its REST API takes basic auth
        env.update(
            {
                "AIRFLOW__CORE__EXECUTOR": "SequentialExecutor",
                "AIRFLOW__API__AUTH_BACKENDS": "airflow.api.auth.backend.basic_auth",
                "AIRFLOW__WEBSERVER__BASE_URL": api_url,
                "AIRFLOW__WEBSERVER__WEB_SERVER_HOST": "127.0.0.1",
                "AIRFLOW__WEBSERVER__WEB_SERVER_PORT": str(api_port),
                "AIRFLOW__WEBSERVER__WORKERS": "1",
                "AIRFLOW__WEBSERVER__SECRET_KEY": secrets.token_hex(16),
            }
        )
    return env


class Deployment:
    """The Airflow processes of one test, and the API server's REST client.

    :param home: the throwaway ``AIRFLOW_HOME``.
    :param env: the processes' environment.
    :param api_port: the API server's port.
    """

    def __init__(self, home: Path, env: dict[str, str], api_port: int) -> None:
        self.home = home
        self.env = env
        self.api = f"http://127.0.0.1:{api_port}/api/{'v2' if AIRFLOW_V_3_0_PLUS else 'v1'}"
        self.airflow = str(Path(sys.executable).with_name("airflow"))
        self.processes: dict[str, subprocess.Popen] = {}
        self.session = requests.Session()

    def run(self, *args: str, timeout: float = START_TIMEOUT_S) -> str:
        """Run one ``airflow`` CLI command to its end; return what it printed."""
        done = subprocess.run(
            [self.airflow, *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        assert done.returncode == 0, f"airflow {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    def start(self, name: str, *args: str) -> None:
        """Start ``airflow <args>`` in its own process group, its output in ``<home>/<name>.out``."""
        out = open(self.home / f"{name}.out", "wb")
        self.processes[name] = subprocess.Popen(
            [self.airflow, *args], env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        out.close()

    def output(self, name: str) -> str:
        return (self.home / f"{name}.out").read_text(errors="replace")

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise AssertionError(f"airflow {name} exited ({process.returncode}):\n{self.output(name)[-4000:]}")

    def stop(self) -> None:
        """SIGTERM every process group, then SIGKILL what is left after ``STOP_TIMEOUT_S``."""
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # the group's children too, whether or not it exited
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)

    def get(self, path: str, **params: Any) -> Any:
        response = self.session.get(f"{self.api}{path}", params=params, timeout=30)
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text[:500]}"
        return response.json()

    def send(self, method: str, path: str, body: Mapping[str, Any]) -> Any:
        response = self.session.request(method, f"{self.api}{path}", json=body, timeout=30)
        assert response.status_code in (200, 201), f"{method} {path}: {response.status_code} {response.text[:500]}"
        return response.json()


def wait_for(what: str, check: Callable[[], Any], deployment: Deployment, timeout: float, every: float = 0.5) -> Any:
    """Call ``check`` until it returns something truthy; fail after ``timeout`` seconds or when a process died."""
    deadline = time.monotonic() + timeout
    while True:
        deployment.check_alive()
        with contextlib.suppress(requests.RequestException):
            result = check()
            if result:
                return result
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {timeout:.0f} s waiting for {what}.")
        time.sleep(every)


def wait_for_dag_run(deployment: Deployment, run_path: str, what: str, timeout: float) -> dict[str, Any]:
    """Poll the DAG run at ``run_path`` (REST API) until it ends: ``{"state": ..., "tis": [...]}``.

    Fails at once, with each stuck task's log tail, when a task failed or is up for retry.
    """

    def finished() -> dict[str, Any] | None:
        tis = deployment.get(f"{run_path}/taskInstances")["task_instances"]
        stuck = [ti for ti in tis if ti["state"] in ("failed", "up_for_retry", "upstream_failed")]
        assert not stuck, f"{what}: tasks did not succeed: {[(ti['task_id'], ti['state']) for ti in stuck]}" + "".join(
            task_log_tail(deployment.home, ti["task_id"]) for ti in stuck
        )
        state = deployment.get(run_path)["state"]
        return {"state": state, "tis": tis} if state in ("success", "failed") else None

    return wait_for(what, finished, deployment, timeout, every=1.0)


@pytest.fixture(scope="module")
def emulators():
    """Both emulators, seeded with CRM customers changed yesterday, and a fresh campaign taking the new leads."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        # start_emulators sets these two variables; monkeypatch restores them afterwards
        monkeypatch.setenv("AIRFLOW_CONN_CARECYCLE_DEFAULT", "")
        monkeypatch.setenv("AIRFLOW_CONN_CARECLOUD_CRM_DEFAULT", "")
        today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
        carecycle, carecloud, campaign = start_emulators(today - timedelta(days=1))
        connections = {
            name: os.environ[name] for name in ("AIRFLOW_CONN_CARECYCLE_DEFAULT", "AIRFLOW_CONN_CARECLOUD_CRM_DEFAULT")
        }
    try:
        yield carecycle, carecloud, campaign, connections, today
    finally:
        carecycle.stop()
        carecloud.stop()


def task_log_tail(home: Path, task_id: str, lines: int = 40) -> str:
    """The last lines of every log file of ``task_id`` (PHI-free: the provider logs counts and ids only)."""
    tails = []
    for log_file in sorted((home / "logs").rglob(f"task_id={task_id}/*")):
        text = log_file.read_text(errors="replace").splitlines()[-lines:]
        tails.append(f"\n--- {log_file.name}\n" + "\n".join(text))
    return "".join(tails)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, emulators) -> Iterator[Deployment]:
    """A migrated metadata DB, the pool, and api-server, scheduler, dag-processor and triggerer running."""
    tmp_path = tmp_path_factory.mktemp("deployment")
    home = tmp_path / "airflow-home"
    dags = tmp_path / "dags"
    home.mkdir()
    dags.mkdir()
    shutil.copy(CRM_FEED, dags / CRM_FEED.name)  # the example DAG as it is, alone in its bundle
    api_port = free_port()
    deployment = Deployment(home, airflow_env(home, api_port, dags, emulators[3]), api_port)
    try:
        started = time.monotonic()
        deployment.run("db", "migrate")
        deployment.run("pools", "set", POOL, "1", "careCycle API: 60 requests/minute")
        port = str(api_port)
        if AIRFLOW_V_3_0_PLUS:
            deployment.start("api-server", "api-server", "--host", "127.0.0.1", "--port", port, "--workers", "1")
            deployment.start("dag-processor", "dag-processor")
            health = "/monitor/health"
        else:
            password = secrets.token_hex(8)
            deployment.run(
                *("users", "create", "--username", "admin", "--password", password, "--role", "Admin"),
                *("--firstname", "Test", "--lastname", "Admin", "--email", "admin@example.invalid"),
            )
            deployment.session.auth = ("admin", password)
            deployment.start("webserver", "webserver", "--hostname", "127.0.0.1", "--port", port, "--workers", "1")
            health = "/health"
        deployment.start("scheduler", "scheduler", "--skip-serve-logs")
        deployment.start("triggerer", "triggerer", "--skip-serve-logs")
        wait_for("the API server", lambda: deployment.get(health), deployment, START_TIMEOUT_S)
        wait_for(
            f"the DAG {DAG_ID} to be parsed", lambda: deployment.get(f"/dags/{DAG_ID}"), deployment, START_TIMEOUT_S
        )
        print(f"\nAirflow deployment up in {time.monotonic() - started:.1f} s")
        yield deployment
    finally:
        deployment.stop()


def start_dialer_after_the_first_poke(carecycle: Any, campaign_id: str) -> Callable[[], bool]:
    """Complete the campaign's first call right after the sensor's worker-side check (which saw none), before the
    trigger's first poll; return a function telling whether that happened.

    The sensor checks on the worker once (the second ``GET /v2/campaigns/{id}`` after the upload; the first is
    ``snapshot_after``), then defers: the trigger's first poll then sees the completed call, so the run does not wait
    out the DAG's poke interval.
    """
    import threading

    done = threading.Event()
    path = f"/v2/campaigns/{campaign_id}"

    def completed() -> int:
        return carecycle.store.get_campaign(campaign_id)["customerStats"]["statusCounts"].get("completed", 0)

    def watch() -> None:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while time.monotonic() < deadline:
            log = carecycle.request_log()
            upload = next((i for i, r in enumerate(log) if r["method"] == "POST"), None)
            if upload is not None and sum(1 for r in log[upload:] if r["path"] == path) >= 2:
                while not completed() and time.monotonic() < deadline:
                    carecycle.tick_dialer(1)
                done.set()
                return
            time.sleep(0.01)

    threading.Thread(target=watch, name="dial-after-first-poke", daemon=True).start()
    return done.is_set


def seeded_secrets(carecycle: Any, carecloud: Any, connections: Mapping[str, str]) -> dict[str, re.Pattern]:
    """What must never reach a log: every seeded name, phone, email and date of birth, and both API keys."""
    values: dict[str, set[str]] = {"name": set(), "phone": set(), "email": set(), "birthdate": set(), "key": set()}
    for customer in carecloud.customers():
        person = customer["personal_information"]
        values["name"].update((person["first_name"], person["last_name"]))
        values["phone"].add(person["phone"][-10:])
        values["email"].add(person["email"])
        born = datetime.strptime(person["birthdate"], "%Y-%m-%d")
        values["birthdate"].update((born.strftime("%Y-%m-%d"), born.strftime("%m-%d-%Y"), born.strftime("%m/%d/%Y")))
    for customer in carecycle.query_customers({}):
        values["name"].update(filter(None, (customer.get("firstName"), customer.get("lastName"))))
        if customer.get("phoneNumber"):
            values["phone"].add(re.sub(r"\D", "", customer["phoneNumber"])[-10:])
        if customer.get("email"):
            values["email"].add(customer["email"])
    values["key"].add(json.loads(connections["AIRFLOW_CONN_CARECYCLE_DEFAULT"])["password"])
    values["key"].add(json.loads(connections["AIRFLOW_CONN_CARECLOUD_CRM_DEFAULT"])["password"])
    # a phone as digits, +1..., or (212) 555-0101; the other values as whole words
    phones = [rf"\(?{p[:3]}\)?[\s.-]*{p[3:6]}[\s.-]*{p[6:]}" for p in sorted(values.pop("phone"))]
    patterns = {"phone": re.compile(r"(?<!\d)(?:\+?1[\s.-]*)?(?:" + "|".join(phones) + r")(?!\d)")}
    for kind, found in values.items():
        patterns[kind] = re.compile(r"(?<![\w.@-])(?:" + "|".join(map(re.escape, sorted(found))) + r")(?![\w@-])")
    return patterns


def ti_duration(ti: Mapping[str, Any]) -> str:
    return f"{ti['duration']:.1f} s" if ti.get("duration") is not None else "n/a"


def test_the_log_scan_finds_every_kind_of_seeded_value(emulators):
    """The scan below can fail: it finds each kind of value as a task log would show it, and not Airflow's words."""
    carecycle, carecloud, _, connections, _ = emulators
    patterns = seeded_secrets(carecycle, carecloud, connections)
    person = carecloud.customers()[0]["personal_information"]
    born = datetime.strptime(person["birthdate"], "%Y-%m-%d")
    key = json.loads(connections["AIRFLOW_CONN_CARECYCLE_DEFAULT"])["password"]
    shown = {
        "name": f'{{"event": "uploading {person["last_name"]}"}}',
        "phone": f"phoneNumber=+1{person['phone'][-10:]}",
        "email": f"<{person['email']}>",
        "birthdate": f"dateOfBirth: {born:%m-%d-%Y}",
        "key": f"x-api-key: {key}",
    }
    for kind, text in shown.items():
        assert patterns[kind].search(text), kind
    phone = person["phone"][-10:]
    assert patterns["phone"].search(f"call ({phone[:3]}) {phone[3:6]}-{phone[6:]} now")
    harmless = 'Pausing task as DEFERRED. "try_number":1 2026-11-29T09:56:53.813680Z carecycle_crm_lead_feed 12345'
    assert not any(p.search(harmless) for p in patterns.values())


def test_the_crm_lead_feed_runs_in_a_real_deployment(deployment, emulators, tmp_path):
    carecycle, carecloud, campaign, connections, today = emulators
    output = tmp_path / "output"
    started = time.monotonic()

    deployment.send("PATCH", f"/dags/{DAG_ID}", {"is_paused": False})
    dialed = start_dialer_after_the_first_poke(carecycle, campaign["id"])
    run = deployment.send(
        "POST",
        f"/dags/{DAG_ID}/dagRuns",
        {
            "dag_run_id": "deployment_test",
            "logical_date": today.isoformat(),
            "conf": {"output_root": output.as_uri(), "campaign_id": campaign["id"]},
        },
    )
    run_path = f"/dags/{DAG_ID}/dagRuns/{run['dag_run_id']}"

    result = wait_for_dag_run(deployment, run_path, f"the run of {DAG_ID}", RUN_TIMEOUT_S)
    elapsed = time.monotonic() - started
    tis = {ti["task_id"]: ti for ti in result["tis"]}

    print(f"\nRun of {DAG_ID} finished ({result['state']}) {elapsed:.1f} s after it was triggered. Task durations:")
    for task_id in ("snapshot_before", "crm_to_leads", "snapshot_after", SENSOR):
        print(f"  {task_id:<22} {tis[task_id]['state']:<8} {ti_duration(tis[task_id])}")

    # every task succeeded
    assert result["state"] == "success"
    assert {task_id: ti["state"] for task_id, ti in tis.items()} == {
        "snapshot_before": "success",
        "crm_to_leads": "success",
        "snapshot_after": "success",
        SENSOR: "success",
    }

    # the sensor deferred, and the real triggerer ran its trigger and resumed it
    assert dialed(), "the sensor never checked the campaign on the worker"
    gets = [r for r in carecycle.request_log() if r["path"] == f"/v2/campaigns/{campaign['id']}"]
    assert len(gets) >= 4  # snapshot_before, snapshot_after, the sensor's check on the worker, the trigger's poll
    task_logs = deployment.home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run['dag_run_id']}" / f"task_id={SENSOR}"
    sensor_log = (task_logs / "attempt=1.log").read_text()
    deferred_at = sensor_log.index("Pausing task as DEFERRED")
    assert "unmet: completed >= 1 (now 0)" in sensor_log[:deferred_at]  # the check on the worker
    assert "met the threshold" in sensor_log[deferred_at:]  # execute_complete, on the worker again
    trigger_logs = list(task_logs.glob("attempt=1.log.trigger.*.log"))  # written by the triggerer
    assert len(trigger_logs) == 1, list(task_logs.iterdir())
    trigger_log = trigger_logs[0].read_text()
    assert re.search(r"Trigger.*fired.*TriggerEvent<\{'status': 'success'", trigger_log), trigger_log[-2000:]
    assert tis[SENSOR]["try_number"] == 1  # resumed after the deferral, not retried
    xcom = f"{run_path}/taskInstances/{SENSOR}/xcomEntries/return_value"
    final = deployment.get(xcom)["value"]
    final = final if isinstance(final, dict) else ast.literal_eval(final)  # Airflow 2 shows the value's repr
    assert final["id"] == campaign["id"] and final["status_completed"] >= 1

    # every CRM customer changed yesterday is a careCycle lead now, unless the run rejected it
    rejected_file = output / "rejected" / f"crm_leads_{(today - timedelta(days=1)):%Y-%m-%d}.jsonl"
    rejected = {json.loads(line)["record"]["externalId"] for line in rejected_file.read_text().splitlines() if line}
    crm_ids = {c["customer_id"] for c in carecloud.customers()}
    uploaded = set(carecycle.get_customers_by_external_id())
    assert rejected and rejected < crm_ids
    assert crm_ids - rejected <= uploaded
    assert not rejected & uploaded

    # no log file holds patient data or an API key
    patterns = seeded_secrets(carecycle, carecloud, connections)
    log_files = [p for p in (deployment.home / "logs").rglob("*") if p.is_file()]
    log_files += list(deployment.home.glob("*.out"))  # what the processes printed
    assert any(SENSOR in str(p) for p in log_files), "no task log files were written"
    leaks = []
    for path in log_files:
        text = path.read_text(errors="replace")
        leaks += [f"{path.relative_to(deployment.home)}: a {kind}" for kind, p in patterns.items() if p.search(text)]
    assert not leaks, leaks


def test_connection_tests_through_the_rest_api_and_the_cli(deployment, emulators):
    """What docs/connections.md promises: the REST test and ``airflow connections test`` work; on Airflow 3.3 the
    REST test of a saved connection with ``port: 0`` (what the 3.3.2 UI's Test button sends) is refused by Airflow
    itself."""
    carecycle_url = json.loads(emulators[3]["AIRFLOW_CONN_CARECYCLE_DEFAULT"])["host"]
    api_key = json.loads(emulators[3]["AIRFLOW_CONN_CARECYCLE_DEFAULT"])["password"]
    saved = {"connection_id": "carecycle_saved", "conn_type": "carecycle", "host": carecycle_url}
    deployment.send("POST", "/connections", {**saved, "password": api_key})

    # a form without a key: the message is about this connection, not Airflow's temporary id
    result = deployment.send("POST", "/connections/test", {**saved, "connection_id": "carecycle_new", "password": ""})
    assert result["status"] is False
    assert result["message"].startswith("This connection has no API key in its password field"), result["message"]
    # the CLI
    assert "Connection success!" in deployment.run("connections", "test", "carecycle_saved")
    if not AIRFLOW_V_3_0_PLUS:  # Airflow 2 tests the request body alone
        result = deployment.send("POST", "/connections/test", {**saved, "password": api_key})
        assert result["status"] is True and f"Connected to careCycle at {carecycle_url}" in result["message"]
        return
    # the saved connection, tested with its stored host and key (the body docs/connections.md shows)
    result = deployment.send(
        "POST", "/connections/test", {"connection_id": "carecycle_saved", "conn_type": "carecycle"}
    )
    assert result["status"] is True and f"Connected to careCycle at {carecycle_url}" in result["message"]
    # Airflow 3.3.2 refuses port 0 for a saved connection whose port is empty, whatever its type
    port_zero = {"connection_id": "carecycle_saved", "conn_type": "carecycle", "host": carecycle_url, "port": 0}
    refused = deployment.session.post(f"{deployment.api}/connections/test", json=port_zero, timeout=30)
    assert refused.status_code == 400 and "differs from the stored connection" in refused.text, (
        "Airflow no longer refuses port 0: update the 'Test' section of docs/connections.md"
    )
