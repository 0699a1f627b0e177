"""The data team's stack, end to end in real Airflow: OpenLineage events, StatsD metrics, asset events and the
campaign link, from ``dag.test()`` runs of the example DAGs against the emulators.

Airflow reads ``[metrics]`` and ``[openlineage]`` when ``Stats`` and the OpenLineage listener are first used, so the
DAGs run in a fresh process (:mod:`tests.stack_runner`) with ``statsd_on`` pointing at a UDP socket on loopback
and OpenLineage's file transport. This process keeps the emulators, the socket and the PHI to look for.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from airflow_provider_carecycle import metrics
from tests.example_dags.test_example_dags import CRM_FEED, CUSTOMER_EXPORT, DAY

ROOT = Path(__file__).resolve().parents[1]
STATSD_PREFIX = "airflow"


def _phi_values(carecycle_emulator, carecloud_emulator) -> set[str]:
    """Every name, phone, email, date of birth and MBI of both emulators' seeds (the API key is added by the test)."""
    values: set[str] = set()
    for customer in carecloud_emulator.customers():
        info = customer["personal_information"]
        values |= {info.get(k) or "" for k in ("first_name", "last_name", "birthdate", "email", "phone")}
        if info.get("birthdate"):
            year, month, day = info["birthdate"].split("-")
            values |= {f"{month}-{day}-{year}", f"{month}/{day}/{year}"}
        if info.get("phone"):
            values.add(info["phone"][-10:])
    for customer in carecycle_emulator.query_customers({}):
        values |= {
            customer.get(k) or "" for k in ("firstName", "lastName", "email", "phoneNumber", "dateOfBirth", "mbiNumber")
        }
        if customer.get("phoneNumber"):
            values.add(customer["phoneNumber"][-10:])
    return {v for v in values if len(v) >= 4}


def _phi_found(text: str, phi: set[str]) -> list[str]:
    return sorted(v for v in phi if re.search(rf"(?<![\w@.+-]){re.escape(v)}(?![\w@-])", text))


class _UdpCollector(threading.Thread):
    """Read every StatsD datagram sent to a loopback port while the DAGs run (a socket's buffer holds only a few
    hundred; Airflow itself sends many)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.lines: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        while True:
            try:
                self.lines.extend(self.sock.recv(65535).decode().splitlines())
            except TimeoutError:
                if self.done.is_set():  # the sender has exited and the queue is drained
                    return

    def stop(self) -> list[str]:
        self.done.set()
        self.join()
        self.sock.close()
        return self.lines


def _metric_totals(lines: list[str]) -> dict[str, float]:
    """``name -> summed value`` of StatsD lines (``airflow.carecycle.api.requests:1|c``), carecycle names only."""
    totals: dict[str, float] = {}
    for line in lines:
        name, _, rest = line.partition(":")
        name = name.removeprefix(f"{STATSD_PREFIX}.")
        if name.startswith("carecycle."):
            totals[name] = totals.get(name, 0.0) + float(rest.split("|", 1)[0])
    return totals


@pytest.mark.airflow_dag
def test_lineage_metrics_assets_and_links_from_the_example_dags(carecycle_emulator, carecloud_emulator, tmp_path):
    # the CRM feed's data (as tests/example_dags does), and a campaign the sensor sees a completed call in
    carecloud_emulator.reset(days=30 / 24, anchor=DAY.replace(tzinfo=None) + timedelta(hours=23))
    carecycle_emulator.reset(customers=400)  # as the export test: a day with several customers and calls
    campaign = carecycle_emulator.add_campaign(name="Stack test", takes_new_leads=True)
    carecycle_emulator.configure(dialer_speed=20)
    # the exported day: calls placed on a day after every other call (the dialer's background calls are placed now),
    # so the export lists only the customers called on it (each call request waits a second here)
    export_day = datetime(2031, 5, 1, tzinfo=timezone.utc)
    assert carecycle_emulator.tick_dialer(1, at=export_day + timedelta(hours=9)) > 0
    phi = _phi_values(carecycle_emulator, carecloud_emulator) | {"cc_test_key"}
    # one request a second on the server: back-to-back requests get a 429 with retryAfter=1, so the hooks retry
    # and wait (the client-side limiter is set far higher by the fixture)
    carecycle_emulator.configure(rate_limit=1, rate_window_s=1.0)

    out = tmp_path / "out"
    spec = [
        {
            "dag_file": str(CRM_FEED),
            "dag_id": "carecycle_crm_lead_feed",
            "run_conf": {"output_root": out.as_uri(), "campaign_id": campaign["id"]},
            "logical_date": (DAY + timedelta(days=1)).isoformat(),
            "link_tasks": ["snapshot_before", "wait_for_first_calls"],
        },
        {
            "dag_file": str(CUSTOMER_EXPORT),
            "dag_id": "carecycle_customer_export",
            "run_conf": {"output_root": out.as_uri()},
            "logical_date": (export_day + timedelta(days=1)).isoformat(),
        },
    ]
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    lineage_file = tmp_path / "openlineage.jsonl"
    home = tmp_path / "airflow-home"
    home.mkdir()
    statsd = _UdpCollector()
    statsd.start()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__STATSD_PORT": str(statsd.port),
        "AIRFLOW__METRICS__STATSD_PREFIX": STATSD_PREFIX,
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(lineage_file), "append": True}
        ),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "carecycle-tests",
        "CARECYCLE_EXAMPLE_POKE_INTERVAL_S": "0.2",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    try:
        run = subprocess.run(
            [sys.executable, "-m", "tests.stack_runner", str(tmp_path / "spec.json"), str(tmp_path / "result.json")],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        datagrams = statsd.stop()
    assert run.returncode == 0, run.stderr[-5000:]
    result = json.loads((tmp_path / "result.json").read_text())
    crm, export = result["runs"]
    assert set(crm["states"].values()) == {"success"}, crm["states"]
    assert set(export["states"].values()) == {"success"}, export["states"]

    # -- OpenLineage: every event parsed; the CRM feed's upload reads the CRM and writes leads + rejected file ----
    events = [json.loads(line) for line in lineage_file.read_text().splitlines() if line.strip()]
    complete = {
        e["job"]["name"].split(".", 1)[1]: e
        for e in events
        if e.get("eventType") == "COMPLETE" and "." in e.get("job", {}).get("name", "")
    }
    upload = complete["crm_to_leads"]
    carecycle_ns = f"carecycle://{carecycle_emulator.url.split('://', 1)[1].rstrip('/')}"
    carecloud_ns = f"carecloud://{carecloud_emulator.base_url.split('://', 1)[1].split('/', 1)[0]}"
    assert [(d["namespace"], d["name"]) for d in upload["inputs"]] == [(carecloud_ns, "customers")]
    outputs = {(d["namespace"], d["name"]): d for d in upload["outputs"]}
    rejected_file = str(out / "rejected" / "crm_leads_2026-03-01.jsonl")
    assert set(outputs) == {(carecycle_ns, "leads"), ("file", rejected_file)}
    uploaded_rows = outputs[(carecycle_ns, "leads")]["outputFacets"]["outputStatistics"]["rowCount"]
    rejected_rows = outputs[("file", rejected_file)]["outputFacets"]["outputStatistics"]["rowCount"]
    rejected_in_file = len(Path(rejected_file).read_text().splitlines())
    assert uploaded_rows > 0 and rejected_rows == rejected_in_file > 0
    assert upload["inputs"][0]["inputFacets"]["inputStatistics"]["rowCount"] >= uploaded_rows + rejected_rows
    snapshot = complete["snapshot_before"]
    assert [(d["namespace"], d["name"]) for d in snapshot["inputs"]] == [(carecycle_ns, f"campaigns/{campaign['id']}")]
    assert [d["name"] for d in snapshot["outputs"]] == [str(out / "campaign_stats" / "2026-03-01.jsonl")]
    assert [d["name"] for d in complete["wait_for_first_calls"]["inputs"]] == [f"campaigns/{campaign['id']}"]
    customers_file = str(out / "customers" / f"{export_day.date()}.jsonl")
    export_event = complete["export_customers"]
    assert [(d["namespace"], d["name"]) for d in export_event["inputs"]] == [(carecycle_ns, "customers")]
    assert [(d["namespace"], d["name"]) for d in export_event["outputs"]] == [("file", customers_file)]
    calls_event = complete["export_calls"]
    assert [d["name"] for d in calls_event["inputs"]] == ["customers", "customers/calls"]  # calls placed that day

    # -- PHI: not in any lineage event, asset event, link or metric ----------------------------------------------
    reported = "\n".join([lineage_file.read_text(), json.dumps(result), *datagrams])
    assert _phi_found(reported, phi) == []
    assert len(phi) > 100 and _phi_found(json.dumps(carecloud_emulator.customers()[0]), phi)  # the scan can see

    # -- metrics over UDP ------------------------------------------------------------------------------------------
    totals = _metric_totals(datagrams)
    assert metrics.LEADS_DUPLICATES in totals  # sent even when zero: a task's totals
    for name in (
        metrics.API_REQUESTS,
        metrics.API_RETRIES,
        metrics.API_RATE_LIMITED,
        metrics.API_WAIT,
        metrics.LEADS_UPLOADED,
        metrics.LEADS_REJECTED,
        metrics.CUSTOMERS_EXPORTED,
        metrics.CALLS_EXPORTED,
    ):
        assert totals.get(name, 0) > 0, (name, sorted(totals))
    assert totals[metrics.LEADS_UPLOADED] == uploaded_rows
    assert totals[metrics.LEADS_REJECTED] == rejected_rows
    assert totals[metrics.CUSTOMERS_EXPORTED] == len(Path(customers_file).read_text().splitlines())
    assert totals[metrics.API_RATE_LIMITED] <= totals[metrics.API_RETRIES] < totals[metrics.API_REQUESTS]
    (tmp_path / "metric-names.txt").write_text("\n".join(sorted(totals)))

    # -- asset events: the rendered file URI through the alias, counts in the extra ------------------------------
    by_uri = {e["uri"]: e["extra"] for e in result["asset_events"]}
    customers_uri = (out / "customers" / f"{export_day.date()}.jsonl").as_uri()
    assert customers_uri in by_uri, sorted(by_uri)
    assert by_uri[customers_uri]["count"] == totals[metrics.CUSTOMERS_EXPORTED]

    # -- the campaign link, as the UI reads it for the try it shows ----------------------------------------------
    page = f"https://app.carecycle.ai/campaigns/{campaign['id']}"
    assert crm["links"] == {"snapshot_before": page, "wait_for_first_calls": page}
