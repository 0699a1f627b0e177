"""Airflow 3.3's state stores (AIP-103) in real Airflow runs: a retried upload resumes without a ``checkpoint_path``,
and the CRM watermark lives in the careCycle leads asset's state store.

The DAGs run with ``dag.test()``, which on Airflow 3.3.2 retries a failed task (``retries=1``, no delay) as a new try
of the same task instance, whose ``context["task_state_store"]`` holds what the first try wrote. The first try fails
for real: once some batches are acknowledged, the emulator answers every request with a 500 (the hook has
``max_retries=0``, so the batch fails and the task with it, retryably); the fault is switched off as soon as a 500 is
logged. On Airflow 2.11 the same DAG checks that the fallback is unchanged: the retry sends every lead again.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_carecycle.sync.state_store import CHECKPOINT_KEY, WATERMARK_KEY_PREFIX
from dev.dag_loader import dag_bundle_config, load_dag, task_states

LEADS = 120
BATCH = 10
BATCHES = LEADS // BATCH


def _has_state_stores() -> bool:
    try:
        from airflow.sdk.execution_time import context
    except ImportError:
        return False
    return hasattr(context, "TaskStateStoreAccessor")


STATE_STORES = _has_state_stores()

UPLOAD_DAG = """
from datetime import datetime, timedelta
from airflow import DAG
from airflow_provider_carecycle.operators.leads import CareCycleUploadLeadsOperator

with DAG("carecycle_state_store_resume", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
    CareCycleUploadLeadsOperator(
        task_id="upload", source_path={source!r}, batch_size={batch}, max_in_flight=1,
        hook_params={{"max_retries": 0}}, retries=1, retry_delay=timedelta(seconds=0),
    )
"""


def leads(n: int) -> list[dict[str, Any]]:
    return [
        {"externalId": f"lead-{i}", "phoneNumber": f"305555{i:04d}", "postalCode": "33101", "firstName": f"N{i}"}
        for i in range(n)
    ]


def _uploads(emu: Any) -> list[dict[str, Any]]:
    return [e for e in emu.request_log() if e["path"] == "/v2/leads/upload"]


def _acknowledged(entries: list[dict[str, Any]]) -> Counter[str]:
    """How many times careCycle acknowledged each lead (by externalId)."""
    return Counter(i for e in entries if e["status"] == 200 and e["batch"] for i in e["batch"]["external_ids"])


class FailOnce(threading.Thread):
    """Make the emulator answer 500 once ``after`` upload requests were acknowledged, and stop as soon as an upload
    was answered 500: the try running then fails, the next one finds careCycle working."""

    def __init__(self, emu: Any, after: int) -> None:
        super().__init__(daemon=True)
        self.emu, self.after = emu, after
        self.done = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + 240
        revoked = False
        while time.monotonic() < deadline:
            statuses = [e["status"] for e in _uploads(self.emu)]
            if not revoked and statuses.count(200) >= self.after:
                self.emu.configure(fault_rate=1.0, fault_kinds=("500",))
                revoked = True
            if revoked and 500 in statuses:
                self.emu.configure(fault_rate=0.0)
                self.done.set()
                return
            time.sleep(0.002)


def _run_with_retries(path: Path, monkeypatch: pytest.MonkeyPatch, **test_kwargs: Any) -> Any:
    """``dag.test()`` of the DAG file ``path``, keeping its tasks' retries (``load_dag`` turns them off)."""
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", dag_bundle_config(path.parent))
    dag = load_dag(path)
    for task in dag.tasks:
        task.retries = 1
        task.retry_delay = timedelta(seconds=0)
    return dag.test(**test_kwargs)


def _write_dag(tmp_path: Path, source: str) -> Path:
    folder = tmp_path / "dags"
    folder.mkdir()
    path = folder / "dag_under_test.py"
    path.write_text(source)
    return path


def _task_state_rows(dag_id: str) -> dict[str, Any]:
    from airflow.models.task_state_store import TaskStateStoreModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(TaskStateStoreModel).filter(TaskStateStoreModel.dag_id == dag_id).all()
        return {row.key: json.loads(row.value) for row in rows}


@pytest.mark.slow
@pytest.mark.airflow_dag
def test_a_retried_upload_resumes_from_the_task_state_store_without_a_checkpoint_path(
    carecycle_emulator, airflow_db, tmp_path, monkeypatch
):
    source = tmp_path / "leads.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in leads(LEADS)))
    path = _write_dag(tmp_path, UPLOAD_DAG.format(source=str(source), batch=BATCH))
    carecycle_emulator.configure(latency_ms=50)
    revoker = FailOnce(carecycle_emulator, after=4)
    revoker.start()

    dag_run = _run_with_retries(path, monkeypatch)

    assert revoker.done.is_set(), "the first try was never refused"
    assert task_states(dag_run) == {"upload": "success"}
    (ti,) = dag_run.get_task_instances()
    assert ti.try_number == 2
    log = _uploads(carecycle_emulator)
    refused = next(n for n, e in enumerate(log) if e["status"] == 500)
    first, retry = log[:refused], log[refused + 1 :]
    first_acked, retry_acked = _acknowledged(first), _acknowledged(retry)
    all_ids = {r["externalId"] for r in leads(LEADS)}
    if STATE_STORES:
        # the retry sent only the batches the first try had not had acknowledged: none twice, none lost
        assert 4 <= len(first) < BATCHES and len(first) + len(retry) == BATCHES, (len(first), len(retry))
        assert not set(first_acked) & set(retry_acked)
        assert set(first_acked) | set(retry_acked) == all_ids
        assert CHECKPOINT_KEY not in _task_state_rows("carecycle_state_store_resume")  # deleted once finished
    else:  # Airflow before 3.3: no task state store, the retry sends every lead again (unchanged behaviour)
        assert len(retry) == BATCHES and set(retry_acked) == all_ids
        assert set(first_acked) and max((first_acked + retry_acked).values()) == 2
    stored = carecycle_emulator.get_customers_by_external_id()
    assert all(len(stored[external_id]) == 1 for external_id in all_ids)  # upserts: never a duplicate


CRM_DAG = """
from datetime import datetime, timedelta
from airflow import DAG
from airflow_provider_carecycle._compat import Asset
from airflow_provider_carecycle.transfers.carecloud import CareCloudCrmToCareCycleLeadsOperator

with DAG("carecycle_state_store_crm", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
    CareCloudCrmToCareCycleLeadsOperator(
        task_id="crm_to_leads", incremental=True, defaults={{"sourceId": "crm-feed"}}, max_rejected_ratio=1.0,
        changed_since={since!r}, changed_before={before!r}, outlets=[Asset({asset!r})], batch_size=5,
        max_in_flight=1, hook_params={{"max_retries": 0}}, {extra}
    )
"""


@pytest.fixture
def forget_leads_asset(carecycle_emulator: Any) -> Any:
    """Delete, after the test, the events and state this test's DAGs gave the emulator's leads asset (the session
    shares one metadata DB, and other tests count that asset's events)."""
    yield
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.models.asset_state_store import AssetStateStoreModel
    from airflow.utils.session import create_session

    from airflow_provider_carecycle.assets import leads_uri

    with create_session() as session:
        ids = [row.id for row in session.query(AssetModel).filter(AssetModel.uri == leads_uri(carecycle_emulator.url))]
        session.query(AssetEvent).filter(AssetEvent.asset_id.in_(ids)).delete(synchronize_session=False)
        session.query(AssetStateStoreModel).filter(AssetStateStoreModel.asset_id.in_(ids)).delete(
            synchronize_session=False
        )


def _asset_state_rows() -> dict[str, Any]:
    from airflow.models.asset_state_store import AssetStateStoreModel
    from airflow.utils.session import create_session

    with create_session() as session:
        return {row.key: json.loads(row.value) for row in session.query(AssetStateStoreModel).all()}


@pytest.mark.slow
@pytest.mark.airflow_dag
@pytest.mark.skipif(not STATE_STORES, reason="asset state stores arrived with Airflow 3.3")
def test_the_crm_watermark_lives_in_the_leads_asset_state_store_and_advances_only_when_every_lead_settled(
    carecloud_emulator, carecycle_emulator, airflow_db, tmp_path, monkeypatch, forget_leads_asset
):
    from airflow_provider_carecycle.assets import leads_uri
    from airflow_provider_carecycle.carecloud.hook import parse_carecloud_datetime
    from tests.transfers.test_carecloud import END, in_interval

    since, before = END - timedelta(days=15), END  # every seeded CRM customer
    expected = in_interval(carecloud_emulator, since, before)
    newest = max(parse_carecloud_datetime(c["last_change"], timezone.utc) for c in expected)
    ledger = tmp_path / "ledger"
    source = CRM_DAG.format(
        since=since.isoformat(),
        before=before.isoformat(),
        asset=leads_uri(carecycle_emulator.url),
        extra=f"sync_state_path={str(ledger)!r},",
    )
    path = _write_dag(tmp_path, source)
    # this feed's watermark that a run on an earlier Airflow left next to the ledger: carried over once, then removed
    from airflow_provider_carecycle.carecloud.hook import CareCloudCrmHook
    from airflow_provider_carecycle.hooks.carecycle import CareCycleHook
    from airflow_provider_carecycle.sync.watermark import SyncWatermark
    from airflow_provider_carecycle.transfers.carecloud import watermark_key

    feed = watermark_key("carecloud_crm_default", CareCloudCrmHook().base_url, CareCycleHook().destination_id, None)
    carried = END - timedelta(days=10)
    SyncWatermark(str(ledger), key=feed).write(carried)
    assert len(list(ledger.glob("watermark-*.json"))) == 1

    # 1. the first try is refused after some batches, the retry finishes: the watermark is written once, by it
    carecycle_emulator.configure(latency_ms=30)
    revoker = FailOnce(carecycle_emulator, after=2)
    revoker.start()
    first = _run_with_retries(path, monkeypatch)
    assert revoker.done.is_set() and task_states(first) == {"crm_to_leads": "success"}
    (ti,) = first.get_task_instances()
    assert ti.try_number == 2
    # nothing was written by the failed try: the retry still found no watermark in the asset state store and read
    # from the one carried over from the ledger folder (had the first try written its newer one, the retry would
    # have read fewer rows); the row there now was written by the retry
    assert _xcom(first, "crm_rows") == len(in_interval(carecloud_emulator, carried - OVERLAP, before))
    (key,) = [k for k in _asset_state_rows() if k.startswith(WATERMARK_KEY_PREFIX)]
    assert _asset_state_written_at(key) >= ti.start_date
    mark = datetime.fromisoformat(_asset_state_rows()[key]["last_change"])
    assert mark == newest > carried
    assert not list(ledger.glob("watermark-*.json"))  # carried over, then removed from the ledger folder

    # 2. the next run reads from the watermark (minus the overlap), not from its changed_since
    carecycle_emulator.configure(latency_ms=0)
    second = _run_with_retries(path, monkeypatch, logical_date=datetime(2026, 1, 2, tzinfo=timezone.utc))
    assert task_states(second) == {"crm_to_leads": "success"}
    assert _xcom(second, "crm_rows") == len(in_interval(carecloud_emulator, mark - OVERLAP, before))
    assert _xcom(second, "unchanged") == _xcom(second, "total")  # the overlap is free: the ledger had them all
    assert datetime.fromisoformat(_asset_state_rows()[key]["last_change"]) == mark  # no newer change in range


OVERLAP = timedelta(minutes=5)


def _xcom(dag_run: Any, key: str) -> Any:
    """One of the task's summary XComs (``multiple_outputs``) from the metadata DB."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter(XComModel.dag_id == dag_run.dag_id, XComModel.run_id == dag_run.run_id, XComModel.key == key)
            .one()
        )
        return row.value if not isinstance(row.value, str) else json.loads(row.value)


def _asset_state_written_at(key: str) -> datetime:
    """When the asset state store row ``key`` was last written (Airflow's own ``updated_at``)."""
    from airflow.models.asset_state_store import AssetStateStoreModel
    from airflow.utils.session import create_session

    with create_session() as session:
        return session.query(AssetStateStoreModel).filter(AssetStateStoreModel.key == key).one().updated_at


class RecordingStore:
    """A stand-in ``task_state_store`` that keeps every write (the real one is exercised above)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.writes: list[tuple[str, Any, Any]] = []

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any, *, retention: Any = None) -> None:
        self.values[key] = value
        self.writes.append((key, value, retention))

    def delete(self, key: str) -> None:
        self.values.pop(key, None)


@pytest.mark.skipif(not STATE_STORES, reason="task state stores arrived with Airflow 3.3")
def test_the_state_store_keeps_every_settlement_with_never_expire_and_a_checkpoint_path_wins(
    carecycle_emulator, tmp_path
):
    from airflow.sdk.execution_time.context import NEVER_EXPIRE

    from airflow_provider_carecycle.operators.leads import CareCycleUploadLeadsOperator

    ti = SimpleNamespace(dag_id="d", run_id="r", task_id="upload", map_index=-1)
    store = RecordingStore()
    CareCycleUploadLeadsOperator(task_id="upload", records=leads(30), batch_size=10).execute(
        {"task_state_store": store, "ti": ti}
    )
    checkpoints = [value for key, value, _ in store.writes if key == CHECKPOINT_KEY]
    assert [len(c["done"]) for c in checkpoints] == [0, 1, 2, 3]  # written at once, then at every answer
    assert all(retention is NEVER_EXPIRE for _, _, retention in store.writes)
    assert store.values == {}  # deleted once the upload finished

    given = tmp_path / "cp.json"
    other = RecordingStore()
    CareCycleUploadLeadsOperator(
        task_id="upload", records=leads(30), batch_size=10, checkpoint_path=str(given)
    ).execute({"task_state_store": other, "ti": ti})
    assert other.writes == [] and json.loads(given.read_text())["done"] == [0, 1, 2]


@pytest.mark.slow
@pytest.mark.airflow_dag
@pytest.mark.skipif(not STATE_STORES, reason="task state stores arrived with Airflow 3.3")
def test_a_killed_upload_resumes_from_the_task_state_store_in_the_same_dag_run(
    carecycle_emulator, airflow_db, tmp_path
):
    """SIGTERM (``on_kill``) of ``airflow tasks test`` in an existing DAG run, then the same command again.

    ``airflow tasks test`` with a logical date creates a temporary DAG run and deletes it (and its task state) at
    the end, so the run is created first (``airflow dags trigger``) and both commands name it.
    """
    import subprocess

    from tests.operators import test_on_kill as kill

    source, out = tmp_path / "leads.jsonl", tmp_path / "out"
    source.write_text("".join(json.dumps(r) + "\n" for r in kill.leads(kill.LEADS)))
    dag = (
        kill.UPLOAD_DAG.replace("checkpoint_path={checkpoint!r}, ", "")
        .replace("sync_state_path={ledger!r}, ", "")
        .format(source=str(source), rejected=str(out / "rejected.jsonl"), batch=kill.BATCH)
    )
    env = kill._prepare_dag(tmp_path / "dags", dag)
    trigger = subprocess.run(
        kill._airflow("dags", "trigger", "carecycle_on_kill_upload", "--run-id", "kill_run"),
        env=env,
        cwd=kill.ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert trigger.returncode == 0, trigger.stderr[-3000:]
    command = kill._airflow("tasks", "test", "carecycle_on_kill_upload", "upload", "kill_run")
    batches = -(-(kill.LEADS - kill.LEADS // kill.BAD_EVERY) // kill.BATCH)
    carecycle_emulator.configure(latency_ms=250)

    with (tmp_path / "first.log").open("wb") as log:
        child = subprocess.Popen(command, env=env, cwd=kill.ROOT, stdout=log, stderr=subprocess.STDOUT)
    kill._terminate_when(child, lambda: sum(kill._acknowledged_batches(carecycle_emulator).values()) >= 6, "6 batches")
    first = kill._acknowledged_batches(carecycle_emulator)
    assert 6 <= len(first) < batches
    assert set(_task_state_rows("carecycle_on_kill_upload")[CHECKPOINT_KEY]["done"]) == set(first)

    carecycle_emulator.configure(latency_ms=0)
    second = subprocess.run(command, env=env, cwd=kill.ROOT, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout[-3000:]
    assert f"{len(first)} of {batches} batches already settled" in second.stdout
    acknowledged = kill._acknowledged_batches(carecycle_emulator)
    assert set(acknowledged) == set(range(batches)) and max(acknowledged.values()) == 1  # none sent twice
    assert CHECKPOINT_KEY not in _task_state_rows("carecycle_on_kill_upload")  # deleted once finished
