"""Every example DAG in a real Airflow deployment, installed from the built wheels, on each supported line.

``make test-deployment`` builds the provider's and the emulator's wheels and, one line after the other (2.10.5,
2.11.2, 3.0.6, 3.1.8, 3.2.2, 3.3.2), installs them (not editable) with that Airflow into ``.venv-deploy-<line>``,
pinned by ``constraints/airflow-<line>.txt``, and runs this module there (see ``conftest.py``). The test imports
neither Airflow nor the provider: it drives the deployment from outside, as a user would.

One deployment per line, in a throwaway ``AIRFLOW_HOME`` with SQLite, every process in its own process group, on
loopback ports picked at run time: ``airflow db migrate``, then

* Airflow 3: ``api-server``, ``scheduler`` (LocalExecutor: Airflow 3 accepts it on SQLite, its workers reach the
  metadata DB only through the API server), ``dag-processor`` and ``triggerer``; REST API ``/api/v2`` with the
  simple auth manager, everyone admin (a token from ``/auth/token`` where the line wants one: 3.1);
* Airflow 2: ``webserver``, ``scheduler`` (SequentialExecutor, the only one Airflow 2 accepts on SQLite) and
  ``triggerer``; REST API ``/api/v1`` with basic auth for a user the test creates.

Its DAG folder holds every file of ``example_dags/`` as it is. The careCycle and CareCloud CRM emulators run in this
process, and a SQLite "warehouse" file stands behind ``warehouse_default``. Every example DAG is triggered twice:
``airflow dags trigger`` and a REST manual run with no logical date (Airflow 2's REST runs always have one: now).
The checks, one test each:

* the provider and the emulator the deployment imports are the wheels' (site-packages, not editable);
* every run succeeds, every task of it;
* in each run of the CRM feed the sensor checked on the worker, deferred, and the real triggerer ran its trigger and
  resumed it (the task log, the triggerer's trigger log with its success event, try 1);
* what the runs did: every CRM customer changed that day is in careCycle or rejected, the warehouse rows are
  uploaded once, the export wrote its files;
* the triggerer process is alive at the end and its output holds no ``Trigger runner failed``;
* connection tests through the REST API and ``airflow connections test``;
* no warning from our code in any process (the warning probe, ``warning_probe/sitecustomize.py``, and the logs);
* no seeded name, phone, email, date of birth or API key in any log, in what any process printed, or in a dump of
  the metadata DB.

Every wait is bounded; every process is stopped (its whole process group) even when the test fails. The module
prints a summary: how long the deployment took to come up, each run's result and time, the warnings counted.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import json
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests

from dev.demo import POOL, start_emulators
from tests.deployment.deployment import (
    AIRFLOW_3,
    AIRFLOW_VERSION,
    START_TIMEOUT_S,
    Deployment,
    airflow_env,
    free_port,
    task_log_tail,
    wait_for,
    wait_for_dag_run,
)

pytestmark = pytest.mark.deployment

__all__ = ["START_TIMEOUT_S", "Deployment", "airflow_env", "free_port", "wait_for", "wait_for_dag_run"]

EXAMPLE_DAGS = Path(__file__).resolve().parents[2] / "example_dags"
PROBE = Path(__file__).resolve().parent / "warning_probe"
CRM_FEED = "carecycle_crm_lead_feed"
WAREHOUSE_FEED = "carecycle_warehouse_lead_feed"
EXPORT = "carecycle_customer_export"
CONSUMER = "carecycle_customer_export_consumer"
DIFF = "carecycle_customer_diff"
#: every example DAG and its tasks
DAG_TASKS = {
    CRM_FEED: ("snapshot_before", "crm_to_leads", "do_not_call_to_crm", "snapshot_after", "wait_for_first_calls"),
    WAREHOUSE_FEED: ("warehouse_to_leads",),
    EXPORT: ("export_calls", "export_customers", "campaign_stats"),
    DIFF: ("customers_diff",),
    CONSUMER: ("load_new_customer_files",),
}
SENSOR = "wait_for_first_calls"
HOW = ("cli", "rest")
#: upper bound of all the runs of one line (about 2 minutes on an idle machine)
RUNS_TIMEOUT_S = 600
#: the careCycle pool's slots in this deployment (the emulators allow 6,000 requests a minute)
POOL_SLOTS = 3
#: what the triggerer prints when its trigger runner dies (Airflow 3.0/3.1 with a trigger that talks to the
#: supervisor from a plain thread)
TRIGGERER_FAILURES = ("Trigger runner failed", "Trigger runner process has died", "Response read out of order")

#: the summary printed at the end of the module
SUMMARY: dict[str, Any] = {"airflow": ".".join(map(str, AIRFLOW_VERSION))}


@dataclass
class Run:
    """One DAG run the test triggered, and what became of it."""

    dag_id: str
    how: str
    conf: dict[str, Any]
    run_id: str = ""
    triggered_at: float = 0.0
    state: str | None = None
    tis: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float | None = None
    dialer: CampaignDialer | None = None
    #: why the last poll of the run failed, if it did
    error: str = ""

    @property
    def path(self) -> str:
        return f"/dags/{self.dag_id}/dagRuns/{self.run_id}"

    def describe(self) -> str:
        states = ", ".join(f"{task}={ti['state']}" for task, ti in self.tis.items())
        return f"{self.dag_id} ({self.how}): {self.state} [{states}]" + (
            f" (last poll: {self.error})" if self.error else ""
        )


# -- emulators, warehouse, deployment ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def emulators():
    """Both emulators, seeded with CRM customers changed yesterday, and one paused campaign per CRM feed run, each
    taking new leads (every lead the feed uploads joins both); each run's :class:`CampaignDialer` starts its own."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        # start_emulators sets these two variables; monkeypatch restores them afterwards
        monkeypatch.setenv("AIRFLOW_CONN_CARECYCLE_DEFAULT", "")
        monkeypatch.setenv("AIRFLOW_CONN_CARECLOUD_CRM_DEFAULT", "")
        today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
        carecycle, carecloud, _ = start_emulators(today - timedelta(days=1))
        connections = {
            name: os.environ[name] for name in ("AIRFLOW_CONN_CARECYCLE_DEFAULT", "AIRFLOW_CONN_CARECLOUD_CRM_DEFAULT")
        }
    campaigns = {
        how: carecycle.add_campaign(name=f"CRM feed, {how} run", status="paused", takes_new_leads=True) for how in HOW
    }
    try:
        yield carecycle, carecloud, campaigns, connections, today
    finally:
        carecycle.stop()
        carecloud.stop()


#: the warehouse's rows (lead_id, first_name, last_name, phone, email, birth_date, zip, state): all valid leads
WAREHOUSE_ROWS = [
    ("WH-1", "Annabeth", "Quillfeather", "(212) 555-0171", "annabeth.q@example.com", "1952-04-02", "10001", "NY"),
    ("WH-2", "Bartholomew", "Zanderhoff", "305.555.0172", None, "04/05/1953", None, "FL"),
    ("WH-3", "Cordelia", "Vantongeren", "713-555-0173", None, "1954-02-03", "77001", "TX"),
]


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory, emulators) -> dict[str, str]:
    """A SQLite "warehouse" (outside ``AIRFLOW_HOME``) whose ``marketing_leads`` changed yesterday; its connection."""
    today = emulators[4]
    path = tmp_path_factory.mktemp("warehouse") / "warehouse.db"
    updated = f"{(today - timedelta(hours=12)):%Y-%m-%d %H:%M:%S}"
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute(
            "CREATE TABLE marketing_leads (lead_id TEXT, first_name TEXT, last_name TEXT, phone TEXT, email TEXT,"
            " birth_date TEXT, zip TEXT, state TEXT, updated_at TEXT)"
        )
        db.executemany(
            "INSERT INTO marketing_leads VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", [(*r, updated) for r in WAREHOUSE_ROWS]
        )
    return {"AIRFLOW_CONN_WAREHOUSE_DEFAULT": json.dumps({"conn_type": "sqlite", "host": str(path)})}


def deployment_python(deployment: Deployment, script: str) -> Any:
    """Run ``script`` with the deployment's Python and environment; return what it printed, as JSON."""
    done = subprocess.run(
        [sys.executable, "-c", script], env=deployment.env, cwd=deployment.home, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def installed_package_dir(deployment: Deployment) -> Path:
    """Where the deployment's Python imports the provider from, checked to be the built wheel's install."""
    found = deployment_python(
        deployment,
        "import json, importlib.metadata as m, airflow_provider_carecycle as p, carecycle_emulator as e\n"
        "urls = {d: json.loads(m.distribution(d).read_text('direct_url.json') or '{}')"
        " for d in ('airflow-provider-carecycle', 'carecycle-emulator')}\n"
        "print(json.dumps({'provider': p.__file__, 'emulator': e.__file__, 'urls': urls}))\n",
    )
    site_packages = Path(sys.prefix) / "lib"
    for name in ("provider", "emulator"):
        assert Path(found[name]).is_relative_to(site_packages) and "site-packages" in found[name], found
    for dist, url in found["urls"].items():
        # pip and uv record a wheel installed from a file as archive_info; an editable install as dir_info
        assert "archive_info" in url and url["url"].endswith(".whl"), (dist, url)
        assert not url.get("dir_info", {}).get("editable"), (dist, url)
    return Path(found["provider"]).parent


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, emulators, warehouse) -> Iterator[Deployment]:
    """A migrated metadata DB, the pool, and every process of the line running with every example DAG parsed."""
    started = time.monotonic()
    root = tmp_path_factory.mktemp("deployment")
    home, dags = root / "airflow-home", root / "dags"
    home.mkdir()
    dags.mkdir()
    (home / "warnings").mkdir()
    for dag_file in sorted(EXAMPLE_DAGS.glob("*.py")):
        shutil.copy(dag_file, dags / dag_file.name)  # the example DAGs as they are
    api_port = free_port()
    env = airflow_env(home, api_port, dags, {**emulators[3], **warehouse}, pythonpath=str(PROBE))
    env.update(
        {
            # a real deployment encrypts connection passwords in the metadata DB (the REST connection test saves one)
            "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            # sized for 2 cores: 4 task processes at most (Airflow 3's LocalExecutor starts one worker per slot),
            # and the DAG files, parsed when the deployment starts, are not parsed again during the runs
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
            "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "600",
        }
    )
    deployment = Deployment(home, env, api_port)
    package = installed_package_dir(deployment)
    env["CARECYCLE_WARNING_PROBE_PATHS"] = os.pathsep.join([f"{package}{os.sep}", f"{dags}{os.sep}"])
    env["CARECYCLE_WARNING_PROBE_DIR"] = str(home / "warnings")
    SUMMARY["provider"] = str(package)
    try:
        deployment.run("db", "migrate", timeout=600)
        deployment.run("pools", "set", POOL, str(POOL_SLOTS), "careCycle API")
        port = str(api_port)
        if AIRFLOW_3:
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
        SUMMARY["token"] = authenticate(deployment)
        for dag_id in DAG_TASKS:
            wait_for(f"the DAG {dag_id} to be parsed", lambda d=dag_id: deployment.get(f"/dags/{d}"), deployment, 240)
        SUMMARY["deployment_up_s"] = round(time.monotonic() - started, 1)
        print(f"\nAirflow {SUMMARY['airflow']} deployment up in {SUMMARY['deployment_up_s']} s")
        yield deployment
    finally:
        deployment.stop()
        SUMMARY["module_s"] = round(time.monotonic() - started, 1)
        print_summary()


def authenticate(deployment: Deployment) -> bool:
    """Log the REST client in where the line wants it; return whether it needed a token from ``/auth/token``.

    Airflow 3's simple auth manager with everyone admin hands out a token for nothing at ``GET /auth/token``; 3.0,
    3.2 and 3.3 answer API calls without one, 3.1 refuses them.
    """
    if not AIRFLOW_3:
        return False
    if deployment.session.get(f"{deployment.api}/dags", params={"limit": 1}, timeout=30).status_code not in (401, 403):
        return False
    token = deployment.session.get(f"{deployment.root}/auth/token", timeout=30)
    assert token.status_code in (200, 201), f"GET /auth/token: {token.status_code} {token.text[:300]}"
    deployment.session.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
    deployment.get("/dags", limit=1)
    return True


def test_the_deployment_runs_the_built_wheels(deployment):
    """The package every Airflow process imports is the wheel's, installed in the venv (checked when it started)."""
    package = installed_package_dir(deployment)
    assert package == Path(SUMMARY["provider"]) and package.parent.name == "site-packages"
    assert package != EXAMPLE_DAGS.parent / "airflow_provider_carecycle"


# -- the runs ------------------------------------------------------------------------------------------------------


#: how long the emulator holds a trigger's first poll at most (below the hook's 30 s timeout)
HOLD_S = 25


class CampaignDialer:
    """careCycle's side of one CRM feed run: the campaign's first completed call, timed so that the real triggerer
    resumes the sensor.

    The campaign stays paused until the run's sensor has checked it on the worker: the third ``GET`` of it, after the
    two snapshots; no call completed, so the sensor defers. The emulator then holds the trigger's first poll (the
    fourth ``GET``) until the scheduler has taken in the deferral (the executor's report that the deferring process
    ended), the campaign has started and its first call completed: that poll sees it, and the trigger fires.

    Holding the poll keeps clear of an Airflow 3 race (3.2.2 and 3.3.2 have it): when a trigger fires so soon that
    the resumed task is queued before the scheduler takes in the deferring process's exit, the scheduler takes that
    exit for the resumed task's and fails it ("state mismatch"), and the sensor waits out its retry delay.

    :param carecycle: the careCycle emulator.
    :param campaign_id: the run's campaign.
    :param deployment: the deployment (its scheduler's output).
    :param run_id: the run's id.
    """

    def __init__(self, carecycle: Any, campaign_id: str, deployment: Deployment, run_id: str) -> None:
        self.carecycle = carecycle
        self.campaign_id = campaign_id
        self.path = f"/v2/campaigns/{campaign_id}"
        self.deployment = deployment
        self.deferral = re.compile(
            r"Received executor event with state success for task instance TaskInstanceKey\("
            rf"dag_id='{CRM_FEED}', task_id='{SENSOR}', run_id='{run_id}', try_number=1"
        )
        self.gets = 0
        self.lock = threading.Lock()
        self.checked = threading.Event()  # the sensor's check on the worker was answered
        self.released = threading.Event()  # the trigger's first poll may be answered
        self.done = threading.Event()  # the first call completed

    def start(self, timeout: float) -> None:
        threading.Thread(target=self._dial, args=(timeout,), name=f"dial-{self.campaign_id}", daemon=True).start()

    def handle(self, request: Any, handle: Callable[[Any], Any]) -> Any:
        """Answer a ``GET`` of the campaign (in the emulator's request thread)."""
        with self.lock:
            self.gets += 1
            number = self.gets
        if number == 4:
            self.released.wait(HOLD_S)
        try:
            return handle(request)
        finally:
            if number == 3:
                self.checked.set()

    def _completed(self) -> int:
        return self.carecycle.store.get_campaign(self.campaign_id)["customerStats"]["statusCounts"].get("completed", 0)

    def _dial(self, timeout: float) -> None:
        try:
            if not self.checked.wait(timeout):
                return
            deadline = time.monotonic() + HOLD_S - 5
            while time.monotonic() < deadline and not self.deferral.search(self.deployment.output("scheduler")):
                time.sleep(0.2)
            self.carecycle.set_campaign_status(self.campaign_id, "active")
            deadline = time.monotonic() + 30
            while not self._completed() and time.monotonic() < deadline:
                self.carecycle.tick_dialer(1)
            self.done.set()
        finally:
            self.released.set()


def hold_campaign_gets(carecycle: Any, dialers: Mapping[str, CampaignDialer]) -> None:
    """Route the emulator's ``GET`` of each dialer's campaign through the dialer (see :class:`CampaignDialer`)."""
    handle = carecycle.handle

    def routed(request: Any) -> Any:
        dialer = dialers.get(request.path) if request.method == "GET" else None
        return handle(request) if dialer is None else dialer.handle(request, handle)

    carecycle.handle = routed


def trigger(deployment: Deployment, run: Run) -> None:
    """Trigger ``run``: ``airflow dags trigger`` or a REST manual run with no logical date (Airflow 2: now)."""
    run.run_id = f"{run.how}_trigger"
    run.triggered_at = time.monotonic()
    if run.how == "cli":
        deployment.run("dags", "trigger", run.dag_id, "--run-id", run.run_id, "--conf", json.dumps(run.conf))
        return
    body: dict[str, Any] = {"dag_run_id": run.run_id, "conf": run.conf}
    if AIRFLOW_3:
        body["logical_date"] = None
    deployment.send("POST", f"/dags/{run.dag_id}/dagRuns", body)


def settle(deployment: Deployment, runs: list[Run], timeout: float) -> None:
    """Poll ``runs`` until each has ended; stop early (leaving the rest unfinished) when an Airflow process died.

    A failed run is recorded, not raised: the tests below say what failed, with the task logs.
    """
    deadline = time.monotonic() + timeout
    waiting = list(runs)
    while True:
        for run in list(waiting):
            try:
                state = deployment.get(run.path)
                tis = deployment.get(f"{run.path}/taskInstances")["task_instances"]
            except (requests.RequestException, AssertionError) as err:
                run.error = str(err)[:500]
                continue
            run.tis, run.state, run.error = {ti["task_id"]: ti for ti in tis}, state["state"], ""
            if run.state in ("success", "failed"):
                run.seconds = round(time.monotonic() - run.triggered_at, 1)
                waiting.remove(run)
        if not waiting or time.monotonic() > deadline or deployment.dead():
            return
        time.sleep(1.0)


@pytest.fixture(scope="module")
def runs(deployment, emulators, tmp_path_factory) -> dict[tuple[str, str], Run]:
    """Every example DAG triggered from the CLI and through the REST API, each run waited for.

    The CRM feed's second run starts once its first has ended (the DAG allows one active run): in between, the
    first run's outcome is recorded (the second, the same day, finds nothing new in the CRM and rewrites the day's
    rejected file).
    """
    carecycle, carecloud, campaigns, _, today = emulators
    out = tmp_path_factory.mktemp("output")
    confs = {
        CRM_FEED: {"output_root": (out / "crm").as_uri()},
        WAREHOUSE_FEED: {"output_root": (out / "warehouse").as_uri()},
        EXPORT: {"output_root": (out / "export").as_uri()},
        DIFF: {"output_root": (out / "diff").as_uri()},
        CONSUMER: {},
    }
    started = time.monotonic()
    for dag_id in DAG_TASKS:
        deployment.send("PATCH", f"/dags/{dag_id}", {"is_paused": False})
    runs = {(dag_id, how): Run(dag_id, how, dict(conf)) for dag_id, conf in confs.items() for how in HOW}
    for how in HOW:
        runs[CRM_FEED, how].conf["campaign_id"] = campaigns[how]["id"]

    first_crm, second_crm = runs[CRM_FEED, "cli"], runs[CRM_FEED, "rest"]
    for run in (first_crm, second_crm):
        run.dialer = CampaignDialer(carecycle, run.conf["campaign_id"], deployment, f"{run.how}_trigger")
    hold_campaign_gets(carecycle, {run.dialer.path: run.dialer for run in (first_crm, second_crm)})
    first_crm.dialer.start(RUNS_TIMEOUT_S)
    # the CRM feed first (the longest), then the REST runs (quick to trigger), then the CLI's
    for run in sorted(runs.values(), key=lambda r: (r is not first_crm, r.how == "cli")):
        if run is not second_crm:
            trigger(deployment, run)
    settle(deployment, [first_crm], RUNS_TIMEOUT_S)
    SUMMARY["crm_first_run"] = first_run_outcome(carecycle, carecloud, out / "crm", today - timedelta(days=1))

    second_crm.dialer.start(RUNS_TIMEOUT_S)
    if not deployment.dead():
        trigger(deployment, second_crm)
    settle(deployment, list(runs.values()), RUNS_TIMEOUT_S - (time.monotonic() - started))
    SUMMARY["runs_s"] = round(time.monotonic() - started, 1)
    SUMMARY["runs"] = {f"{run.dag_id} {run.how}": (run.state, run.seconds) for run in runs.values()}
    SUMMARY["outputs"] = out
    return runs


def first_run_outcome(carecycle: Any, carecloud: Any, crm_output: Path, day: datetime) -> dict[str, set[str]]:
    """The CRM feed's first run: which CRM customers it rejected (its rejected file), and which careCycle holds."""
    rejected_file = crm_output / "rejected" / f"crm_leads_{day:%Y-%m-%d}.jsonl"
    rejected = set()
    if rejected_file.exists():
        rejected = {json.loads(line)["record"]["externalId"] for line in rejected_file.read_text().splitlines() if line}
    return {
        "crm": {c["customer_id"] for c in carecloud.customers()},
        "rejected": rejected,
        "uploaded": set(carecycle.get_customers_by_external_id()),
    }


def test_every_example_dag_succeeds_from_the_cli_and_from_the_rest_api(runs, deployment):
    failed = [run for run in runs.values() if run.state != "success"]
    assert not failed, "\n".join(
        [run.describe() for run in failed]
        + [f"dead processes: {deployment.dead()}"]
        + [
            task_log_tail(deployment.home, task_id, run_id=run.run_id)
            for run in failed
            for task_id, ti in run.tis.items()
            if ti["state"] != "success"
        ]
    )
    for run in runs.values():
        assert {task: ti["state"] for task, ti in run.tis.items()} == dict.fromkeys(DAG_TASKS[run.dag_id], "success")


def xcom(deployment: Deployment, run: Run, task_id: str) -> Any:
    value = deployment.get(f"{run.path}/taskInstances/{task_id}/xcomEntries/return_value")["value"]
    return value if not isinstance(value, str) else ast.literal_eval(value)  # Airflow 2 shows the value's repr


@pytest.mark.parametrize("how", HOW)
def test_the_sensor_deferred_and_the_real_triggerer_resumed_it(runs, deployment, emulators, how):
    run = runs[CRM_FEED, how]
    campaign = emulators[2][how]
    assert run.dialer is not None and run.dialer.done.is_set(), "the sensor never checked the campaign on the worker"
    task_logs = deployment.home / "logs" / f"dag_id={CRM_FEED}" / f"run_id={run.run_id}" / f"task_id={SENSOR}"
    sensor_log = (task_logs / "attempt=1.log").read_text()
    deferred_at = sensor_log.index("Pausing task as DEFERRED")
    assert "unmet: completed >= 1 (now 0)" in sensor_log[:deferred_at]  # the check on the worker
    assert "met the threshold" in sensor_log[deferred_at:]  # execute_complete, on the worker again
    trigger_logs = list(task_logs.glob("attempt=1.log.trigger.*.log"))  # written by the triggerer
    assert len(trigger_logs) == 1, list(task_logs.iterdir())
    trigger_log = trigger_logs[0].read_text()
    assert re.search(r"Trigger.*fired.*TriggerEvent<\{'status': 'success'", trigger_log), trigger_log[-2000:]
    assert run.tis[SENSOR]["try_number"] == 1  # resumed after the deferral, not retried
    final = xcom(deployment, run, SENSOR)
    assert final["id"] == campaign["id"] and final["status_completed"] >= 1


def test_what_the_runs_did(runs, deployment, emulators):
    """The CRM feed's first run uploaded or rejected every CRM customer changed that day; the warehouse rows went
    to careCycle once over both runs; the export wrote the day's files."""
    carecycle, _, _, _, today = emulators
    day = today - timedelta(days=1)
    first = SUMMARY["crm_first_run"]
    assert first["rejected"] and first["rejected"] < first["crm"]
    assert first["crm"] - first["rejected"] <= first["uploaded"]
    assert not first["rejected"] & first["uploaded"]

    uploaded = sum(xcom(deployment, runs[WAREHOUSE_FEED, how], "warehouse_to_leads")["uploaded"] for how in HOW)
    assert uploaded == len(WAREHOUSE_ROWS)
    assert {row[0] for row in WAREHOUSE_ROWS} <= set(carecycle.get_customers_by_external_id())

    export = SUMMARY["outputs"] / "export"
    assert (export / "customers" / f"{day:%Y-%m-%d}.jsonl").is_file()
    assert (export / "calls" / f"{day:%Y-%m-%d}.jsonl").is_file()
    assert (export / "campaign_stats" / f"{day:%Y-%m}.csv").is_file()
    assert (SUMMARY["outputs"] / "diff" / "state" / "customers_diff.jsonl.gz").is_file()


def test_the_triggerer_is_alive_and_its_log_is_clean(runs, deployment):
    output = deployment.output("triggerer")
    failures = [line for line in output.splitlines() if any(f in line for f in TRIGGERER_FAILURES)]
    SUMMARY["triggerer_alive"] = "triggerer" not in deployment.dead()
    SUMMARY["triggerer_failures"] = failures
    assert SUMMARY["triggerer_alive"], f"the triggerer exited:\n{output[-4000:]}"
    assert not failures, "\n".join(failures)


# -- the connection tests ------------------------------------------------------------------------------------------


def test_connection_tests_through_the_rest_api_and_the_cli(deployment, emulators):
    """What docs/connections.md promises: the REST test and ``airflow connections test`` work (from 3.1 the REST
    test of a saved connection uses its stored key); on Airflow 3.3 the REST test of a saved connection with
    ``port: 0`` (what the 3.3.2 UI's Test button sends) is refused by Airflow itself."""
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
    if AIRFLOW_VERSION < (3, 1):  # Airflow 2 and 3.0 test the request body alone
        result = deployment.send("POST", "/connections/test", {**saved, "password": api_key})
        assert result["status"] is True and f"Connected to careCycle at {carecycle_url}" in result["message"]
        return
    # the saved connection, tested with its stored host and key (the body docs/connections.md shows)
    result = deployment.send(
        "POST", "/connections/test", {"connection_id": "carecycle_saved", "conn_type": "carecycle"}
    )
    assert result["status"] is True and f"Connected to careCycle at {carecycle_url}" in result["message"]
    if AIRFLOW_VERSION >= (3, 3):
        # Airflow 3.3.2 refuses port 0 for a saved connection whose port is empty, whatever its type
        port_zero = {"connection_id": "carecycle_saved", "conn_type": "carecycle", "host": carecycle_url, "port": 0}
        refused = deployment.request("POST", "/connections/test", json=port_zero)
        assert refused.status_code == 400 and "differs from the stored connection" in refused.text, (
            "Airflow no longer refuses port 0: update the 'Test' section of docs/connections.md"
        )


def test_the_connection_forms_show_the_extras_docs_connections_md_says(deployment):
    """The extras each line's connection form shows as fields; every other extra goes in the Extra JSON
    (docs/connections.md, "The connection form on each Airflow line"): on 3.2+ the provider info's
    ``conn-fields``, on 3.0 and 3.1 (what the UI's ``/ui/connections/hook_meta`` offers) and on 2.x (the form
    widgets of Airflow's providers manager) none."""
    conn_fields = deployment_python(
        deployment,
        "import json; from airflow_provider_carecycle.get_provider_info import get_provider_info as info\n"
        "print(json.dumps({c['connection-type']: sorted(c['conn-fields']) for c in info()['connection-types']}))",
    )
    if AIRFLOW_3:
        answer = deployment.session.get(f"{deployment.root}/ui/connections/hook_meta", timeout=60)
        assert answer.status_code == 200, answer.text[:300]
        meta = {m["connection_type"]: m for m in answer.json()}
        shown = {conn_type: sorted(meta[conn_type]["extra_fields"] or {}) for conn_type in conn_fields}
    else:
        widgets = deployment_python(
            deployment,
            "import json; from airflow.providers_manager import ProvidersManager as M\n"
            "print(json.dumps(sorted(M().connection_form_widgets)))",
        )
        shown = {t: sorted(w.split("__")[2] for w in widgets if w.startswith(f"extra__{t}__")) for t in conn_fields}
    expected = conn_fields if AIRFLOW_VERSION >= (3, 2) else {conn_type: [] for conn_type in conn_fields}
    assert shown == expected
    assert not {"proxies", "verify", "allow_insecure_http"} & {f for fields in shown.values() for f in fields}


# -- warnings, patient data and keys: after every run and connection test above ----------------------------------


@dataclass(frozen=True)
class NotOurs:
    """A warning the probe sees inside a call our code made, that neither our code nor a user can avoid: Airflow's
    or a library's own code calling a deprecated API of its own or of another library.

    :param lines: the Airflow lines it occurs on.
    :param category: the warning's category.
    :param message: how its message starts.
    :param via: a frame it is raised through (``path/from/site-packages.py:function``).
    :param why: whose it is.
    """

    lines: tuple[tuple[int, int], ...]
    category: str
    message: str
    via: str
    why: str

    def matches(self, warning: Mapping[str, Any]) -> bool:
        return (
            AIRFLOW_VERSION[:2] in self.lines
            and warning["category"] == self.category
            and warning["message"].startswith(self.message)
            and self.via in warning["via"]
        )


#: Listed with their counts in the summary, not counted.
NOT_OURS = (
    NotOurs(
        ((3, 1),),
        "DeprecationWarning",
        "Using Connection.from_json from `airflow.models` is deprecated",
        "airflow/secrets/base_secrets.py:deserialize_connection",
        "Airflow 3.1's environment-variables secrets backend, reading a JSON AIRFLOW_CONN_* in a task or the "
        "triggerer, whichever hook asks (the URI form does not warn; 3.2 reads it through the Task SDK)",
    ),
    NotOurs(
        ((2, 10), (2, 11), (3, 0), (3, 1)),
        "PendingDeprecationWarning",
        "in a future version of UPath this will be set to None",
        "fsspec/utils.py:stringify_path",
        "universal-pathlib 0.2's UPath.__fspath__, called by fsspec inside Airflow's ObjectStoragePath",
    ),
)

#: a warning in a log line: its category (``DeprecationWarning``, ``RemovedInAirflow3Warning``, ...)
_WARNING = re.compile(r"\b[A-Z]\w*Warning\b")


def our_names() -> tuple[str, ...]:
    """What names our code in a log line: the package, and each example DAG's file."""
    return ("airflow_provider_carecycle", *(f.name for f in EXAMPLE_DAGS.glob("*.py")))


def text_files(home: Path) -> list[Path]:
    """Every file the deployment wrote in its home, but the metadata DB: logs, process outputs, probe records."""
    return [p for p in home.rglob("*") if p.is_file() and not p.name.startswith("airflow.db")]


def not_ours(warning: Mapping[str, Any]) -> str | None:
    """Why a warning the probe recorded (raised while our code was on the stack) is not ours, or ``None``.

    Ours: raised at a line of our code, or in a call our code made into Airflow or a library. Not ours: a library
    warning while its own module is first imported (our code merely imported it first), a warning raised in a call
    another provider's code made (the SQL provider's hook reading its own connection), and the :data:`NOT_OURS`.
    """
    if warning["location_is_ours"]:
        return None
    if warning["in_import"]:
        return f"{warning['category']} at {warning['location']}, raised while the library was first imported"
    provider = next((frame for frame in warning["via"] if frame.startswith("airflow/providers/")), None)
    if provider is not None:
        return f"{warning['category']}: {warning['message'][:120]} (raised in a call {provider} made)"
    return next((known.why for known in NOT_OURS if known.matches(warning)), None)


def test_no_warning_from_our_code(runs, deployment):
    """0 warnings from our code, in every process of the deployment and every occurrence: none the probe recorded
    (``warning_probe/sitecustomize.py``) that :func:`not_ours` does not explain, and no warning in any log or process
    output that names our package or an example DAG file."""
    records = [
        json.loads(line)
        for path in sorted((deployment.home / "warnings").glob("*.jsonl"))
        for line in path.read_text().splitlines()
        if line
    ]
    ours = [w for w in records if not_ours(w) is None]
    SUMMARY["not_ours"] = dict(Counter(filter(None, map(not_ours, records))))
    logged = [
        f"{path.relative_to(deployment.home)}: {line.strip()[:300]}"
        for path in text_files(deployment.home / "logs") + sorted(deployment.home.glob("*.out"))
        for line in path.read_text(errors="replace").splitlines()
        if _WARNING.search(line) and any(name in line for name in our_names())
    ]
    SUMMARY["warnings"] = {"probe": len(ours), "logs": len(logged), "not ours": len(records) - len(ours)}
    grouped = Counter(f"{w['category']}: {w['message'][:200]} (at {w['location']}, ours: {w['ours']})" for w in ours)
    assert not ours and not logged, "\n".join([f"{n} x {what}" for what, n in grouped.most_common()] + logged)


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


def test_no_key_or_patient_data_in_any_log_output_or_the_metadata_db(runs, deployment, emulators):
    carecycle, carecloud, _, connections, _ = emulators
    patterns = seeded_secrets(carecycle, carecloud, connections)
    files = text_files(deployment.home)
    assert any(SENSOR in str(p) for p in files), "no task log files were written"
    texts = {str(p.relative_to(deployment.home)): p.read_text(errors="replace") for p in files}
    with contextlib.closing(sqlite3.connect(deployment.home / "airflow.db")) as db:
        texts["airflow.db (dump)"] = "\n".join(db.iterdump())
    leaks = [f"{name}: a {kind}" for name, text in texts.items() for kind, p in patterns.items() if p.search(text)]
    SUMMARY["leaks"] = len(leaks)
    assert not leaks, leaks


def print_summary() -> None:
    """The line's figures, for make test-deployment's output and the issue's table."""
    print(f"\n== Airflow {SUMMARY['airflow']}: deployment from the built wheels ({SUMMARY.get('provider')})")
    print(f"   up in {SUMMARY.get('deployment_up_s')} s; REST token from /auth/token needed: {SUMMARY.get('token')}")
    for name, (state, seconds) in SUMMARY.get("runs", {}).items():
        print(f"   {name:<44} {state or 'unfinished':<10} {seconds if seconds is not None else '-'} s")
    print(f"   all runs: {SUMMARY.get('runs_s')} s")
    print(f"   triggerer alive at the end: {SUMMARY.get('triggerer_alive')}")
    for line in SUMMARY.get("triggerer_failures", []):
        print(f"     triggerer: {line[:300]}")
    print(f"   warnings from our code: {SUMMARY.get('warnings')}; key/PHI leaks: {SUMMARY.get('leaks')}")
    for what, n in SUMMARY.get("not_ours", {}).items():
        print(f"     not counted: {n} x {what}")
    print(f"   the whole module: {SUMMARY.get('module_s')} s", flush=True)
