"""Killing a running upload or export through Airflow (SIGTERM -> ``on_kill``), then resuming it.

The task runs under ``airflow tasks test`` in a subprocess, so Airflow's own SIGTERM handling calls ``on_kill``
(Airflow 3: the task runner's handler only calls it; Airflow 2: the task instance's handler calls it, then raises
``AirflowTaskTerminated`` in the task's thread). The emulator answers slowly (``latency_ms``) so the SIGTERM lands
in the middle of the upload, once some batches are acknowledged.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_carecycle._compat import AIRFLOW_V_3_0_PLUS
from airflow_provider_carecycle.exceptions import TaskKilledError
from airflow_provider_carecycle.leads import LeadValidator
from airflow_provider_carecycle.operators.customers import _prefetched
from airflow_provider_carecycle.operators.leads import CareCycleUploadLeadsOperator
from airflow_provider_carecycle.sync.engine import STOP_GRACE_S, LeadUploader

ROOT = Path(__file__).resolve().parents[2]
LEADS = 600
BATCH = 20
BAD_EVERY = 50  # every 50th record has an invalid phone: the rejected file has rows (written while running)
DAY = "2026-03-01"

UPLOAD_DAG = """
from datetime import datetime
from airflow import DAG
from airflow_provider_carecycle.operators.leads import CareCycleUploadLeadsOperator

with DAG("carecycle_on_kill_upload", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    CareCycleUploadLeadsOperator(
        task_id="upload", source_path={source!r}, checkpoint_path={checkpoint!r}, rejected_path={rejected!r},
        sync_state_path={ledger!r}, max_rejected_ratio=0.5, batch_size={batch}, max_in_flight=2, retries=0,
    )
"""

EXPORT_DAG = """
from datetime import datetime
from airflow import DAG
from airflow_provider_carecycle.operators.customers import CareCycleExtractCustomersOperator

with DAG("carecycle_on_kill_export", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    CareCycleExtractCustomersOperator(task_id="export", output_path={output!r}, per_page=10, retries=0)
"""


def leads(n: int) -> list[dict[str, Any]]:
    return [
        {
            "externalId": f"lead-{i}",
            "phoneNumber": "0000" if i % BAD_EVERY == BAD_EVERY - 1 else f"305555{i:04d}",
            "postalCode": "33101",
            "firstName": f"N{i}",
        }
        for i in range(n)
    ]


def _env(dags: Path) -> dict[str, str]:
    """The test's environment (its throwaway AIRFLOW_HOME and DB, the emulator's connection), ``dags`` the only
    DAG folder / bundle, and this worktree first on the path."""
    from dev.dag_loader import dag_bundle_config

    return {
        **os.environ,
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": dag_bundle_config(dags),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }


def _airflow(*args: str) -> list[str]:
    return [sys.executable, "-m", "airflow", *args]


def _prepare_dag(dags: Path, source: str) -> dict[str, str]:
    """Write the DAG file; on Airflow 3 serialize it into the test's metadata DB (the ``airflow_db`` fixture)."""
    dags.mkdir()
    (dags / "dag.py").write_text(source)
    env = _env(dags)
    if AIRFLOW_V_3_0_PLUS:  # `airflow tasks test` reads the DAG from its bundle and from the metadata DB
        run = subprocess.run(
            _airflow("dags", "reserialize"), env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
        )
        assert run.returncode == 0, run.stderr[-3000:]
    return env


def _start(env: dict[str, str], dag_id: str, task_id: str, out: Path) -> subprocess.Popen[bytes]:
    with out.open("wb") as log:
        return subprocess.Popen(
            _airflow("tasks", "test", dag_id, task_id, DAY), env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )


def _run(env: dict[str, str], dag_id: str, task_id: str, out: Path) -> str:
    child = _start(env, dag_id, task_id, out)
    child.wait(timeout=300)
    return out.read_text(errors="replace")


def _terminate_when(child: subprocess.Popen[bytes], ready: Any, what: str) -> None:
    """SIGTERM ``child`` once ``ready()`` is true; wait for it to exit."""
    try:
        deadline = time.monotonic() + 180
        while not ready():
            assert child.poll() is None, f"the task ended before {what}"
            assert time.monotonic() < deadline, f"no {what} in time"
            time.sleep(0.02)
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def _upload_requests(emu: Any) -> list[dict[str, Any]]:
    return [e for e in emu.request_log() if e["path"] == "/v2/leads/upload"]


def _acknowledged_batches(emu: Any) -> Counter[int]:
    """How many times careCycle acknowledged each batch (numbered from the first lead's externalId)."""
    valid = [r["externalId"] for r in leads(LEADS) if r["phoneNumber"] != "0000"]
    first_of = {external_id: i // BATCH for i, external_id in enumerate(valid) if i % BATCH == 0}
    return Counter(
        first_of[e["batch"]["external_ids"][0]] for e in _upload_requests(emu) if e["status"] == 200 and e["batch"]
    )


def _partial_files(root: Path) -> list[str]:
    return sorted(str(p) for p in root.rglob("*.partial"))


@pytest.mark.slow
@pytest.mark.airflow_dag
def test_a_killed_upload_keeps_its_checkpoint_and_ledger_consistent_and_resumes(
    carecycle_emulator, airflow_db, tmp_path
):
    source, out = tmp_path / "leads.jsonl", tmp_path / "out"
    source.write_text("".join(json.dumps(r) + "\n" for r in leads(LEADS)))
    checkpoint, rejected, ledger = out / "checkpoint.json", out / "rejected.jsonl", out / "ledger"
    dag = UPLOAD_DAG.format(
        source=str(source), checkpoint=str(checkpoint), rejected=str(rejected), ledger=str(ledger), batch=BATCH
    )
    env = _prepare_dag(tmp_path / "dags", dag)
    batches = -(-(LEADS - LEADS // BAD_EVERY) // BATCH)
    carecycle_emulator.configure(latency_ms=250)  # two requests in flight, four answers a second

    child = _start(env, "carecycle_on_kill_upload", "upload", tmp_path / "first.log")
    _terminate_when(child, lambda: sum(_acknowledged_batches(carecycle_emulator).values()) >= 6, "6 batches")
    first_log = (tmp_path / "first.log").read_text(errors="replace")

    assert "Lead upload stopped" in first_log, first_log[-5000:]
    if AIRFLOW_V_3_0_PLUS:  # the task runner only calls on_kill: the upload itself raises
        assert "TaskKilledError" in first_log
    acknowledged = _acknowledged_batches(carecycle_emulator)
    assert 6 <= sum(acknowledged.values()) < batches and max(acknowledged.values()) == 1
    state = json.loads(checkpoint.read_text())
    # every acknowledged batch recorded, nothing recorded that was not
    assert set(state["done"]) == set(acknowledged) and state["partial"] == {}
    assert _partial_files(tmp_path) == [] and not rejected.exists()  # a failed run leaves no rejected file
    assert len(list(ledger.iterdir())) == 1  # the acknowledged leads were saved to the ledger

    carecycle_emulator.configure(latency_ms=0)
    second_log = _run(env, "carecycle_on_kill_upload", "upload", tmp_path / "second.log")

    assert "Lead upload stopped" not in second_log
    # the ledger held the acknowledged leads: the rerun sends only the others (new batches, new checkpoint)
    acknowledged_ids = Counter(
        external_id
        for e in _upload_requests(carecycle_emulator)
        if e["status"] == 200 and e["batch"]
        for external_id in e["batch"]["external_ids"]
    )
    valid_ids = {r["externalId"] for r in leads(LEADS) if r["phoneNumber"] != "0000"}
    assert set(acknowledged_ids) == valid_ids and max(acknowledged_ids.values()) == 1
    first_run = sum(acknowledged.values()) * BATCH
    assert f"Sync ledger: {first_run} of {len(valid_ids)} leads unchanged" in second_log, second_log[-5000:]
    stored = carecycle_emulator.get_customers_by_external_id()
    assert all(len(stored[external_id]) == 1 for external_id in valid_ids)
    assert len(rejected.read_text().splitlines()) == LEADS // BAD_EVERY
    assert _partial_files(tmp_path) == []


@pytest.mark.slow
@pytest.mark.airflow_dag
def test_a_killed_upload_resumes_from_its_checkpoint(carecycle_emulator, airflow_db, tmp_path):
    source, out = tmp_path / "leads.jsonl", tmp_path / "out"
    source.write_text("".join(json.dumps(r) + "\n" for r in leads(LEADS)))
    checkpoint, rejected = out / "checkpoint.json", out / "rejected.jsonl"
    dag = UPLOAD_DAG.replace("sync_state_path={ledger!r}, ", "").format(
        source=str(source), checkpoint=str(checkpoint), rejected=str(rejected), batch=BATCH
    )
    env = _prepare_dag(tmp_path / "dags", dag)
    batches = -(-(LEADS - LEADS // BAD_EVERY) // BATCH)
    carecycle_emulator.configure(latency_ms=250)

    child = _start(env, "carecycle_on_kill_upload", "upload", tmp_path / "first.log")
    _terminate_when(child, lambda: sum(_acknowledged_batches(carecycle_emulator).values()) >= 6, "6 batches")

    first = _acknowledged_batches(carecycle_emulator)
    assert set(json.loads(checkpoint.read_text())["done"]) == set(first)
    assert _partial_files(tmp_path) == []

    carecycle_emulator.configure(latency_ms=0)
    second_log = _run(env, "carecycle_on_kill_upload", "upload", tmp_path / "second.log")

    assert f"{len(first)} of {batches} batches already settled" in second_log, second_log[-5000:]
    acknowledged = _acknowledged_batches(carecycle_emulator)
    assert set(acknowledged) == set(range(batches)) and max(acknowledged.values()) == 1  # none sent twice
    stored = carecycle_emulator.get_customers_by_external_id()
    assert all(len(stored[r["externalId"]]) == 1 for r in leads(LEADS) if r["phoneNumber"] != "0000")
    assert len(rejected.read_text().splitlines()) == LEADS // BAD_EVERY
    assert _partial_files(tmp_path) == []


@pytest.mark.slow
@pytest.mark.airflow_dag
def test_a_killed_export_removes_its_temporary_file(carecycle_emulator, airflow_db, tmp_path):
    carecycle_emulator.reset(customers=400)
    output = tmp_path / "out" / "customers.jsonl"
    env = _prepare_dag(tmp_path / "dags", EXPORT_DAG.format(output=str(output)))
    carecycle_emulator.configure(latency_ms=250)

    def pages() -> int:
        return sum(1 for e in carecycle_emulator.request_log() if e["path"] == "/v2/customers" and e["status"] == 200)

    child = _start(env, "carecycle_on_kill_export", "export", tmp_path / "first.log")
    _terminate_when(child, lambda: pages() >= 4, "4 pages written")  # to a file with no name yet (O_TMPFILE)
    first_log = (tmp_path / "first.log").read_text(errors="replace")

    assert pages() < 40, "the export finished before the kill"
    if AIRFLOW_V_3_0_PLUS:
        assert "TaskKilledError" in first_log, first_log[-5000:]
    assert _partial_files(tmp_path) == [] and not output.exists()

    carecycle_emulator.configure(latency_ms=0)
    _run(env, "carecycle_on_kill_export", "export", tmp_path / "second.log")
    written = len(output.read_text().splitlines())  # a count only: a failing assert must not print the rows
    assert written == len(carecycle_emulator.query_customers({}))
    assert _partial_files(tmp_path) == []


# -- the engine's stop, in process: answered in the grace period (recorded) or abandoned (never recorded) --------


class GatedHook:
    """Answers uploads like careCycle, but holds request number ``hold`` (0-based) until ``gate`` is set.

    :param hold: the request to hold.
    """

    destination_id = "gated-api"

    def __init__(self, hold: int) -> None:
        self.hold = hold
        self.gate = threading.Event()
        self.holding = threading.Event()
        self.answered: list[str] = []  # first externalId of each batch answered
        self.three_answered = threading.Event()
        self.lock = threading.Lock()
        self.requests = 0

    def upload_lead_texts(self, texts: list[str]) -> dict[str, Any]:
        with self.lock:
            number, self.requests = self.requests, self.requests + 1
        if number == self.hold:
            self.holding.set()
            assert self.gate.wait(30), "the test never released the held request"
        with self.lock:
            self.answered.append(json.loads(texts[0])["externalId"])
            if len(self.answered) == 3:
                self.three_answered.set()
        return {"succeeded": len(texts), "failed": 0, "errors": []}


def _stop_while_held(
    tmp_path: Path, *, answer_in_grace: bool, stop_grace_s: float = STOP_GRACE_S
) -> tuple[GatedHook, BaseException | None]:
    hook = GatedHook(hold=2)
    uploader = LeadUploader(
        hook,
        LeadValidator(),
        batch_size=BATCH,
        max_in_flight=1,
        rejected_path=str(tmp_path / "rejected.jsonl"),
        checkpoint_path=str(tmp_path / "checkpoint.json"),
        stop_grace_s=stop_grace_s,
    )
    raised: list[BaseException] = []

    def run() -> None:
        try:
            uploader.run(leads(200))
        except BaseException as err:  # handed to the test
            raised.append(err)

    thread = threading.Thread(target=run)
    thread.start()
    assert hook.holding.wait(30)  # batches 0 and 1 are answered and recorded; batch 2 is in flight
    uploader.stop()
    if answer_in_grace:
        hook.gate.set()
    thread.join(30)
    assert not thread.is_alive()
    hook.gate.set()  # an abandoned request is answered only now, after the run gave up on it
    assert hook.three_answered.wait(30)
    assert len(hook.answered) == 3 and hook.requests == 3  # nothing sent after the stop
    return hook, raised[0] if raised else None


def test_a_stopped_upload_records_the_request_answered_in_its_grace_period(tmp_path):
    _, error = _stop_while_held(tmp_path, answer_in_grace=True)

    assert isinstance(error, TaskKilledError)
    assert "60 of 196 leads are settled (60 uploaded" in str(error)
    state = json.loads((tmp_path / "checkpoint.json").read_text())
    assert (state["done"], state["partial"]) == ([0, 1, 2], {})
    assert _partial_files(tmp_path) == [] and not (tmp_path / "rejected.jsonl").exists()


def test_a_stopped_upload_never_records_an_abandoned_request(tmp_path):
    hook, error = _stop_while_held(tmp_path, answer_in_grace=False, stop_grace_s=0.0)

    assert isinstance(error, TaskKilledError)
    assert "40 of 196 leads are settled" in str(error)
    # careCycle answered batch 2 after the run abandoned it: it stays unrecorded, so a rerun sends it again
    assert hook.answered[2] == "lead-40"
    state = json.loads((tmp_path / "checkpoint.json").read_text())
    assert (state["done"], state["partial"]) == ([0, 1], {})
    assert _partial_files(tmp_path) == []


def test_a_task_killed_before_its_upload_starts_sends_nothing(tmp_path):
    hook = GatedHook(hold=-1)
    op = CareCycleUploadLeadsOperator(task_id="upload", records=leads(40), rejected_path=str(tmp_path / "r.jsonl"))
    op.__dict__["hook"] = hook  # the cached hook property: no connection needed
    op.on_kill()

    with pytest.raises(TaskKilledError, match="while validating the records; nothing was sent"):
        op.execute({})
    assert hook.requests == 0 and _partial_files(tmp_path) == []
    assert op.__dict__["_uploader"] is None  # a kill after the run is a no-op


def test_a_killed_export_stops_waiting_for_its_next_page():
    killed = threading.Event()
    never = threading.Event()

    def pages() -> Any:
        yield 1
        never.wait(30)  # the next page never comes
        yield 2

    stream = _prefetched(pages(), killed=killed)
    assert next(stream) == 1
    killed.set()
    with pytest.raises(TaskKilledError, match="the task was killed"):
        next(stream)
    never.set()


class StoppingHook:
    """Answers uploads like careCycle; stops the uploader (as ``on_kill`` would) while request ``at`` is in flight."""

    destination_id = "stopping-api"

    def __init__(self, at: int) -> None:
        self.at = at
        self.requests = 0
        self.uploader: LeadUploader | None = None

    def upload_lead_texts(self, texts: list[str]) -> dict[str, Any]:
        self.requests += 1
        if self.requests - 1 == self.at and self.uploader is not None:
            self.uploader.stop()
        return {"succeeded": len(texts), "failed": 0, "errors": []}


@pytest.mark.parametrize(("at", "finishes"), [(9, True), (4, False)])
def test_a_kill_while_the_last_batch_is_in_flight_lets_the_upload_finish(tmp_path, at, finishes):
    hook = StoppingHook(at)  # 196 valid leads: 10 batches of 20, one request at a time
    hook.uploader = uploader = LeadUploader(
        hook, LeadValidator(), batch_size=BATCH, max_in_flight=1, checkpoint_path=str(tmp_path / "c.json")
    )

    if finishes:
        assert uploader.run(leads(200)).uploaded == 196
    else:
        with pytest.raises(TaskKilledError, match="100 of 196 leads are settled"):
            uploader.run(leads(200))
    assert hook.requests == at + 1  # nothing sent after the stop
    assert len(json.loads((tmp_path / "c.json").read_text())["done"]) == at + 1
