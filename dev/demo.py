"""``make demo``: run the CareCloud CRM -> careCycle lead feed in real Airflow against the bundled emulators.

``python -m dev.demo [--dag-file PATH] [--workdir DIR]``, from the root of a clone (``make demo`` runs it).

It starts both emulators on free loopback ports, points ``AIRFLOW_CONN_CARECYCLE_DEFAULT`` and
``AIRFLOW_CONN_CARECLOUD_CRM_DEFAULT`` at them, creates a throwaway ``AIRFLOW_HOME`` with SQLite, runs
``example_dags/carecycle_crm_lead_feed.py`` with ``dag.test()`` and prints a short run summary: counts, reasons and
paths only, never patient data. Then it changes a few CRM customers (:data:`CHANGED` with a new email,
:data:`TOUCHED` with only a newer ``last_change``) and runs the next day's feed: it reads from the watermark and the
sync ledger sends only the leads that really changed. It also closes the consent loop: before the second run one
uploaded customer withdraws consent in the CRM and another is deleted, and a third says "Do Not Call" on a careCycle
call; after it, careCycle must hold the first two as do-not-call (sent again with the flag), its dialer must place
no further call to them, and the CRM must hold the third's consent as withdrawn (the write-back task).
``--workdir``'s ``summary.json`` holds both runs' figures. The exit code is 1 when any task did not succeed, the
second run sent anything but the changed leads, or any part of the consent loop did not happen.

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
#: the consent loop: CRM customers that withdraw consent / are deleted before the second run (sent again flagged)
WITHDRAWN = 1
DELETED = 1
#: dialer ticks after the second run, to show the do-not-call customers get no further call
TICKS_AFTER = 40
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


def consent_changes(carecloud: Any, carecycle: Any, day: datetime, skip: int) -> dict[str, list[str]]:
    """The consent loop's changes before the second run, on uploaded customers after the first ``skip``: one withdraws
    the marketing-communication consent in the CRM, one is deleted in the CRM, one says "Do Not Call" on a careCycle
    call.

    :return: ``{"withdrawn": [...], "deleted": [...], "heard": [...]}`` CRM customer ids.
    """
    uploaded = carecycle.get_customers_by_external_id()
    ids = [c["customer_id"] for c in carecloud.customers() if c["customer_id"] in uploaded][skip:]
    if len(ids) < WITHDRAWN + DELETED + 1:
        raise SystemExit(f"The first run uploaded too few CRM customers for the consent loop ({len(ids)} left).")
    withdrawn, deleted = ids[:WITHDRAWN], ids[WITHDRAWN : WITHDRAWN + DELETED]
    heard = ids[WITHDRAWN + DELETED : WITHDRAWN + DELETED + 1]
    when = (day + timedelta(hours=2)).astimezone(carecloud.project_tz).replace(tzinfo=None)
    for customer_id in withdrawn:
        carecloud.set_consent(customer_id, "marketing_communication", 0, when=when)
    for customer_id in deleted:
        carecloud.set_state(customer_id, 0, when=when)
    for customer_id in heard:
        carecycle.record_call(uploaded[customer_id][0]["id"], "Do Not Call")
    return {"withdrawn": withdrawn, "deleted": deleted, "heard": heard}


def consent_loop_figures(
    carecloud: Any, carecycle: Any, changes: Mapping[str, list[str]], write_back: Mapping[str, Any]
) -> dict[str, Any]:
    """After the second run: what careCycle holds for the CRM's do-not-contact customers, whether the dialer called
    them again (:data:`TICKS_AFTER` more ticks), and whether the CRM holds the heard do-not-call.

    :param carecloud: the CareCloud emulator.
    :param carecycle: the careCycle emulator.
    :param changes: what :func:`consent_changes` did.
    :param write_back: the ``do_not_call_to_crm`` summary of the second run.
    """
    from carecycle_emulator.carecloud.seed import CONSENT_IDS

    held = carecycle.get_customers_by_external_id()
    flagged = [*changes["withdrawn"], *changes["deleted"]]
    calls_before = {i: held[i][0]["totalCalls"] for i in flagged}
    carecycle.tick_dialer(TICKS_AFTER)
    after = carecycle.get_customers_by_external_id()
    crm = {c["customer_id"]: c for c in carecloud.customers()}

    def marketing(customer_id: str) -> Any:
        info = crm[customer_id]["personal_information"]
        if "consents" not in info:
            return info.get("agreement", {}).get("agreement_marketing_communication")
        wanted = CONSENT_IDS["marketing_communication"]
        return next((c["consent_value"] for c in info["consents"] if c["consent_id"] == wanted), None)

    figures = {
        "do_not_call_held": sum(after[i][0]["doNotCall"] is True for i in flagged),
        "do_not_contact_customers": len(flagged),
        "calls_after_do_not_call": sum(after[i][0]["totalCalls"] - calls_before[i] for i in flagged),
        "heard_withdrawn_in_crm": sum(marketing(i) == 0 for i in changes["heard"]),
        "heard": len(changes["heard"]),
        "write_back": {k: write_back.get(k) for k in ("candidates", "withdrawn", "already_withdrawn", "not_from_crm")},
    }
    figures["ok"] = (
        figures["do_not_call_held"] == len(flagged)
        and figures["calls_after_do_not_call"] == 0
        and figures["heard_withdrawn_in_crm"] == len(changes["heard"])
    )
    return figures


def consent_loop_lines(figures: Mapping[str, Any]) -> list[str]:
    """The PHI-free summary of the consent loop: counts only."""
    wb = figures["write_back"]
    return [
        "Consent loop:",
        f"  CRM: {WITHDRAWN} consent withdrawn, {DELETED} customer deleted -> careCycle holds "
        f"{figures['do_not_call_held']} of {figures['do_not_contact_customers']} as doNotCall",
        f"  Dialer: {TICKS_AFTER} more ticks placed {figures['calls_after_do_not_call']} call(s) to them",
        f"  Heard on a call: {figures['heard']} 'Do Not Call' -> consent withdrawn in the CRM for "
        f"{figures['heard_withdrawn_in_crm']} (write-back: {wb['withdrawn']} withdrawn, {wb['already_withdrawn']} "
        f"already, {wb['not_from_crm']} not from the CRM, of {wb['candidates']} candidates)",
        "Consent loop closed: " + ("yes" if figures["ok"] else "NO"),
    ]


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
    :param changed: the CRM customers whose lead changed (a new email, or a consent withdrawn or a deletion: sent
        again with the flag).
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
        carecycle.configure(dialer_speed=0)  # the rest of the demo dials by explicit ticks
        # the next day: a few CRM customers changed; that run must send those and nothing else
        changed, touched = change_crm_customers(carecloud, carecycle, run_date)
        consent = consent_changes(carecloud, carecycle, run_date, CHANGED + TOUCHED)
        mark = len(carecycle.request_log())
        dag_run = dag.test(run_conf=conf, **{date_key: run_date + timedelta(days=1)})
        states = run_states(dag, dag_run)
        resent = [*changed, *consent["withdrawn"], *consent["deleted"]]
        figures = second_run_figures(
            xcom(dag_run, "crm_to_leads") or {}, upload_requests(carecycle, mark), resent, touched
        )
        result["second_run"] = {"states": states, **figures}
        print_box(second_run_lines(figures, states))
        loop = consent_loop_figures(carecloud, carecycle, consent, xcom(dag_run, "do_not_call_to_crm") or {})
        result["consent_loop"] = loop
        print_box(consent_loop_lines(loop))
        write_result(workdir, result)
        return 0 if succeeded(states) and figures["ok"] and loop["ok"] else 1
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
