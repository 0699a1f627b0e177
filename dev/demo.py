"""``make demo``: run the CareCloud CRM -> careCycle lead feed in real Airflow against the bundled emulators.

``python -m dev.demo [--dag-file PATH] [--workdir DIR]``, from the root of a clone (``make demo`` runs it).

It starts both emulators on free loopback ports, points ``AIRFLOW_CONN_CARECYCLE_DEFAULT`` and
``AIRFLOW_CONN_CARECLOUD_CRM_DEFAULT`` at them, creates a throwaway ``AIRFLOW_HOME`` with SQLite, runs
``example_dags/carecycle_crm_lead_feed.py`` with ``dag.test()`` and prints a short run summary: counts, reasons and
paths only, never patient data. Then it changes a few CRM customers (:data:`CHANGED` with a new email,
:data:`TOUCHED` with only a newer ``last_change``) and runs the next day's feed: it reads from the watermark and the
sync ledger sends only the leads that really changed. ``--workdir``'s ``summary.json`` holds both runs' figures.
The exit code is 1 when any task did not succeed or the second run sent anything but the changed leads.

Airflow reads its configuration when it is first imported, so every environment variable is set before that.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from dev.dag_loader import dag_bundle_config, load_dag, task_states

DAG_ID = "carecycle_crm_lead_feed"
DAG_FILE_NAME = f"{DAG_ID}.py"
POOL = "carecycle_api"
#: CRM customers seeded in the emulator; all changed on the day the demo run uploads
CRM_CUSTOMERS = 60
RULE = "=" * 78
#: CRM customers the demo gives a new email before the second run: the leads it must send
CHANGED = 3
#: CRM customers whose ``last_change`` alone moves (a CRM edit to a field careCycle does not get): read, not sent
TOUCHED = 2
UPLOAD_PATH = "/v2/leads/upload"
#: the emulators' rate limit per minute, and the connections' client-side limit: a demo need not wait a minute
RATE_LIMIT = 6000


def find_dag_file(explicit: str | None) -> Path:
    """The example DAG: ``--dag-file``, else ``example_dags/`` of the source checkout this package runs from.

    :param explicit: the ``--dag-file`` argument, if any.
    :raises SystemExit: with a clear message when the file is not there.
    """
    if explicit:
        candidates = [Path(explicit)]
    else:
        repo = Path(__file__).resolve().parent.parent
        candidates = [repo / "example_dags" / DAG_FILE_NAME, Path.cwd() / "example_dags" / DAG_FILE_NAME]
    for path in candidates:
        if path.is_file():
            return path.resolve()
    raise SystemExit(
        f"Cannot find the example DAG ({', '.join(map(str, candidates))}). Run the demo from a clone of the "
        f"repository (`make demo`), or pass --dag-file path/to/{DAG_FILE_NAME}."
    )


def prepare_airflow_home(home: Path, dags_folder: Path) -> None:
    """Point Airflow at a throwaway home with SQLite and make the DAG's folder the only DAG bundle (Airflow 3).

    :param home: the empty directory to use as ``AIRFLOW_HOME``.
    :param dags_folder: the folder holding the example DAGs.
    """
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "SequentialExecutor" if _airflow_major() < 3 else "LocalExecutor",
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": dag_bundle_config(dags_folder),
        }
    )


def _airflow_major() -> int:
    from importlib.metadata import version

    return int(version("apache-airflow").split(".", 1)[0])


def start_emulators(run_day: datetime) -> tuple[Any, Any, dict[str, Any]]:
    """Start both emulators, set the connections, and add a fresh campaign that takes the new leads.

    :param run_day: the day whose CRM changes the run uploads; every seeded CRM customer changed on it.
    :return: the careCycle emulator, the CareCloud emulator and the campaign.
    """
    from carecycle_emulator import CareCloudEmulator, CareCycleEmulator

    carecycle = CareCycleEmulator(api_keys=("cc_demo_key",), rate_limit=RATE_LIMIT, seed=0).start()
    carecloud = CareCloudEmulator(
        customers=CRM_CUSTOMERS,
        seed=0,
        anchor=run_day.replace(tzinfo=None) + timedelta(hours=23),
        days=22 / 24,
        rate_limit=RATE_LIMIT,
    ).start()
    os.environ["AIRFLOW_CONN_CARECYCLE_DEFAULT"] = carecycle.airflow_connection(requests_per_minute=RATE_LIMIT)
    os.environ["AIRFLOW_CONN_CARECLOUD_CRM_DEFAULT"] = carecloud.airflow_connection(requests_per_minute=RATE_LIMIT)
    campaign = carecycle.add_campaign(name="Demo: CRM lead feed", takes_new_leads=True)
    return carecycle, carecloud, campaign


def start_dialer_on_first_poke(carecycle: Any, campaign_id: str) -> None:
    """Start the emulator's dialer once the sensor has checked the campaign once, so the demo shows a real wait.

    :param carecycle: the careCycle emulator.
    :param campaign_id: the campaign the sensor watches.
    """
    import threading
    import time

    def watch() -> None:
        path = f"/v2/campaigns/{campaign_id}"
        while True:
            log = carecycle.request_log()
            upload = next((i for i, r in enumerate(log) if r["method"] == "POST"), None)
            if upload is not None and sum(1 for r in log[upload:] if r["path"] == path) >= 2:
                carecycle.configure(dialer_speed=5)
                return
            time.sleep(0.2)

    threading.Thread(target=watch, name="demo-dialer-start", daemon=True).start()


def create_pool() -> None:
    """Create the metadata DB and the ``carecycle_api`` pool the careCycle tasks run in."""
    from airflow.models.pool import Pool
    from airflow.utils import db

    db.resetdb()
    Pool.create_or_update_pool(POOL, slots=1, description="careCycle API: 60 requests/minute", include_deferred=False)


def xcom(dag_run: Any, task_id: str) -> Any:
    """A task's return value in the finished run (``None`` when it has none)."""
    ti = dag_run.get_task_instance(task_id)
    return ti.xcom_pull(task_ids=task_id) if ti is not None else None


def _stats_line(stats: Mapping[str, Any] | None) -> str:
    if not stats:
        return "n/a"
    keys = ("total", "totalCalls", "status_pending", "status_in_progress", "status_completed", "status_failed")
    return ", ".join(f"{k.removeprefix('status_')}={stats.get(k, 0)}" for k in keys)


def summary_lines(dag_run: Any, states: Mapping[str, str], campaign: Mapping[str, Any], out: Path) -> list[str]:
    """The PHI-free run summary: counts, top reasons, paths and figures only.

    :param dag_run: the finished DAG run.
    :param states: task id -> state.
    :param campaign: the watched campaign.
    :param out: the output root.
    """
    upload = xcom(dag_run, "crm_to_leads") or {}
    before = (xcom(dag_run, "snapshot_before") or {}).get(campaign["id"])
    after = (xcom(dag_run, "snapshot_after") or {}).get(campaign["id"])
    sensor = xcom(dag_run, "wait_for_first_calls")
    lines = [
        f"careCycle demo: {DAG_ID}, data interval {dag_run.data_interval_start:%Y-%m-%d %H:%M} -> "
        f"{dag_run.data_interval_end:%Y-%m-%d %H:%M} UTC",
        "Tasks: " + ", ".join(f"{task}={state}" for task, state in states.items()),
        f"CRM rows read:   {upload.get('crm_rows', 'n/a')}",
        f"Leads uploaded:  {upload.get('uploaded', 'n/a')} in {upload.get('batches', 'n/a')} batch(es) "
        f"({upload.get('duplicates', 0)} duplicates merged)",
        f"Rejected:        {upload.get('rejected', 'n/a')}",
    ]
    lines += [f"  x{count}  {reason}" for reason, count in upload.get("top_reasons", [])]
    if upload.get("rejected_path"):
        lines.append(f"  every rejected record with its reason: {upload['rejected_path']}")
    lines += [
        f"Campaign '{campaign['name']}' ({campaign['id']})",
        f"  before upload: {_stats_line(before)}",
        f"  after upload:  {_stats_line(after)}",
    ]
    if sensor:
        lines.append(f"Sensor: first results in: {_stats_line(sensor)}")
    else:
        lines.append(f"Sensor: {states.get('wait_for_first_calls', 'not run')}")
    lines.append(f"Files: {out}")
    return lines


def change_crm_customers(carecloud: Any, carecycle: Any, day: datetime) -> tuple[list[str], list[str]]:
    """Change :data:`CHANGED` CRM customers the first run uploaded (a new email) and touch :data:`TOUCHED` more
    (``last_change`` only), all during ``day``.

    :param carecloud: the CareCloud emulator.
    :param carecycle: the careCycle emulator (which customers the first run uploaded).
    :param day: the second run's day (UTC midnight).
    :return: the changed and the touched customer ids.
    :raises SystemExit: when the first run uploaded too few customers to change.
    """
    uploaded = carecycle.get_customers_by_external_id()
    ids = [c["customer_id"] for c in carecloud.customers() if c["customer_id"] in uploaded]
    if len(ids) < CHANGED + TOUCHED:
        raise SystemExit(f"The first run uploaded {len(ids)} CRM customers; the demo changes {CHANGED + TOUCHED}.")
    changed, touched = ids[:CHANGED], ids[CHANGED : CHANGED + TOUCHED]
    for n, customer_id in enumerate(changed + touched):
        when = (day + timedelta(hours=1, minutes=n)).astimezone(carecloud.project_tz).replace(tzinfo=None)
        fields = {"email": f"demo.moved.{n}@example.com"} if customer_id in changed else {}
        carecloud.touch_customer(customer_id, when=when, **fields)
    return changed, touched


def upload_requests(carecycle: Any, since: int) -> list[dict[str, Any]]:
    """The lead upload requests careCycle received after its ``since``-th request."""
    return [
        r
        for r in carecycle.request_log()[since:]
        if r["method"] == "POST" and r["path"].rstrip("/") == UPLOAD_PATH and r.get("batch")
    ]


def second_run_figures(
    upload: Mapping[str, Any], requests: list[dict[str, Any]], changed: list[str], touched: list[str]
) -> dict[str, Any]:
    """The second run's figures and whether it sent exactly the changed leads.

    :param upload: the ``crm_to_leads`` summary of the second run.
    :param requests: the upload requests careCycle received during the second run.
    :param changed: the CRM customers given a new email.
    :param touched: the CRM customers whose ``last_change`` alone moved.
    """
    sent = [i for r in requests for i in r["batch"]["external_ids"]]
    figures = {
        "crm_rows": upload.get("crm_rows"),
        "changed": len(changed),
        "touched": len(touched),
        "uploaded": upload.get("uploaded"),
        "unchanged": upload.get("unchanged"),
        "rejected": upload.get("rejected"),
        "upload_requests": len(requests),
        "leads_sent": len(sent),
        "unchanged_sent": len(set(sent) - set(changed)),
        "changed_not_sent": len(set(changed) - set(sent)),
    }
    figures["ok"] = (
        figures["uploaded"] == figures["leads_sent"] == len(changed)
        and figures["unchanged_sent"] == figures["changed_not_sent"] == 0
        and isinstance(figures["unchanged"], int)
        and figures["unchanged"] >= len(touched)
    )
    return figures


def second_run_lines(figures: Mapping[str, Any], states: Mapping[str, str]) -> list[str]:
    """The PHI-free summary of the second run: counts only."""
    return [
        "Second run (the next day, from the watermark, through the sync ledger):",
        "Tasks: " + ", ".join(f"{task}={state}" for task, state in states.items()),
        f"Second run: {figures['crm_rows']} CRM rows read since the watermark, {figures['changed']} changed "
        f"-> {figures['uploaded']} uploaded in {figures['upload_requests']} request(s), "
        f"{figures['unchanged_sent']} unchanged sent; {figures['unchanged']} unchanged not sent "
        f"({figures['touched']} only touched in the CRM), {figures['rejected']} rejected",
        "Second run sent only what changed: " + ("yes" if figures["ok"] else "NO"),
    ]


def print_box(lines: list[str]) -> None:
    print("\n" + RULE)
    for line in lines:
        print(line)
    print(RULE, flush=True)


def run(dag_file: Path, workdir: Path) -> int:
    """Run the demo in ``workdir``; return the process exit code."""
    now = datetime.now(timezone.utc)
    run_date = datetime(now.year, now.month, now.day, tzinfo=timezone.utc)  # a manual run's interval: yesterday
    prepare_airflow_home(workdir / "airflow-home", dag_file.parent)
    carecycle, carecloud, campaign = start_emulators(run_date - timedelta(days=1))
    try:
        create_pool()
        try:
            dag = load_dag(dag_file, DAG_ID)
        except ValueError as err:
            raise SystemExit(str(err)) from None
        out = workdir / "output"
        start_dialer_on_first_poke(carecycle, campaign["id"])
        conf = {"output_root": out.as_uri(), "campaign_id": campaign["id"]}
        date_key = "logical_date" if _airflow_major() >= 3 else "execution_date"
        dag_run = dag.test(run_conf=conf, **{date_key: run_date})
        states = run_states(dag, dag_run)
        print_box(summary_lines(dag_run, states, campaign, out))
        result: dict[str, Any] = {"first_run": {"states": states, **(xcom(dag_run, "crm_to_leads") or {})}}
        if not succeeded(states):
            write_result(workdir, result)
            return 1
        # the next day: a few CRM customers changed; that run must send those and nothing else
        changed, touched = change_crm_customers(carecloud, carecycle, run_date)
        mark = len(carecycle.request_log())
        dag_run = dag.test(run_conf=conf, **{date_key: run_date + timedelta(days=1)})
        states = run_states(dag, dag_run)
        figures = second_run_figures(
            xcom(dag_run, "crm_to_leads") or {}, upload_requests(carecycle, mark), changed, touched
        )
        result["second_run"] = {"states": states, **figures}
        print_box(second_run_lines(figures, states))
        write_result(workdir, result)
        return 0 if succeeded(states) and figures["ok"] else 1
    finally:
        carecycle.stop()
        carecloud.stop()


def run_states(dag: Any, dag_run: Any) -> dict[str, str]:
    """``task_id -> state`` for every task of ``dag`` (``"not run"`` for one the run did not reach)."""
    found = task_states(dag_run)
    return {task_id: found.get(task_id, "not run") for task_id in dag.task_ids}


def succeeded(states: Mapping[str, str]) -> bool:
    return bool(states) and all(state == "success" for state in states.values())


def write_result(workdir: Path, result: Mapping[str, Any]) -> None:
    """Both runs' figures (counts and states only, no patient data) as ``summary.json`` in ``workdir``."""
    (workdir / "summary.json").write_text(json.dumps(result, indent=2, sort_keys=True, default=str) + "\n")
    print(f"Run figures: {workdir / 'summary.json'}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dag-file", help=f"path to {DAG_FILE_NAME} (default: the repository's example_dags/)")
    parser.add_argument("--workdir", help="where Airflow's home and the output files go (default: a temp dir)")
    args = parser.parse_args(argv)
    dag_file = find_dag_file(args.dag_file)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="carecycle-demo-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    return run(dag_file, workdir)


if __name__ == "__main__":
    sys.exit(main())
