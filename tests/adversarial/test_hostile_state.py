"""State the provider did not write is not trusted (issue 20, item 3).

Airflow 3.3's task and asset state stores can be written by anyone with edit rights (REST API, UI); a ledger folder
can hold files someone else put there. A checkpoint reference is followed only when it names the upload's own
overflow file, a watermark only when it is exactly the document the provider writes; anything else is ignored with a
warning, and the provider never deletes a file it did not create. Every run here is a real operator over real HTTP
against the emulators; the stores are Airflow 3.3's interface, in memory.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_carecycle._compat import Asset
from airflow_provider_carecycle.assets import leads_uri
from airflow_provider_carecycle.operators.leads import CareCycleUploadLeadsOperator
from airflow_provider_carecycle.sync.ledger import SyncLedger
from airflow_provider_carecycle.transfers.carecloud import CareCloudCrmToCareCycleLeadsOperator
from carecycle_emulator import CARECLOUD_ANCHOR as ANCHOR
from tests.adversarial.test_hostile_sync import held
from tests.adversarial.test_hostile_upload import DictStateStore
from tests.operators.test_state_store import STATE_STORES

CHECKPOINT_KEY = "carecycle_upload_checkpoint"
CHECKPOINT_REF = "carecycle_checkpoint_ref"
UTC = timezone.utc


def leads(n: int, version: int = 1) -> list[dict[str, Any]]:
    return [
        {"externalId": f"st-{i}", "phoneNumber": f"212555{i:04d}", "postalCode": "10001", "firstName": f"V{version}"}
        for i in range(n)
    ]


def task_context(store: DictStateStore) -> dict[str, Any]:
    ti = SimpleNamespace(dag_id="feed", run_id="scheduled__2026-03-01", task_id="upload", map_index=-1)
    return {"task_state_store": store, "ti": ti}


# -- a checkpoint reference ----------------------------------------------------------------------------------------


#: the task state store's retention (NEVER_EXPIRE) exists from Airflow 3.3 on; before, the operators never get one
needs_task_state = pytest.mark.skipif(not STATE_STORES, reason="the task state store arrived with Airflow 3.3")


@needs_task_state
@pytest.mark.parametrize("target", ["outside-the-folder", "a-ledger-file", "in-the-folder-by-another-name"])
def test_a_checkpoint_reference_the_provider_did_not_write_is_neither_followed_nor_deleted(
    target, carecycle_emulator, tmp_path, caplog
):
    ledger = tmp_path / "ledger"
    CareCycleUploadLeadsOperator(task_id="upload", records=leads(10), sync_state_path=str(ledger)).execute({})
    if target == "outside-the-folder":
        victim = tmp_path / "finance" / "quarter.json"
        victim.parent.mkdir()
        victim.write_text(json.dumps({"version": 3, "note": "someone else's file"}))
    elif target == "a-ledger-file":
        victim = next(ledger.glob("ledger-*.sqlite"))  # what the ledger has acknowledged: deleting it re-sends
    else:
        victim = ledger / "checkpoint-0123456789abcdef.json"
        victim.write_text(json.dumps({"version": 3}))
    before = victim.read_bytes()
    store = DictStateStore()
    store.values[CHECKPOINT_KEY] = {CHECKPOINT_REF: str(victim)}  # written by an editor through the REST API

    with caplog.at_level(logging.WARNING):
        result = CareCycleUploadLeadsOperator(
            task_id="upload", records=leads(10, version=2), sync_state_path=str(ledger)
        ).execute(task_context(store))

    assert victim.exists() and victim.read_bytes() == before, "the provider deleted a file it did not write"
    assert result["uploaded"] == 10 and held(carecycle_emulator, "st-") == {f"st-{i}": "V2" for i in range(10)}
    assert "Ignoring the checkpoint reference" in caplog.text
    assert CHECKPOINT_KEY not in store.values  # its own key is cleaned up when the upload finishes


@needs_task_state
def test_a_checkpoint_reference_to_the_uploads_own_overflow_file_is_still_followed(
    carecycle_emulator, tmp_path, caplog
):
    """The positive control: a checkpoint too big for the store goes to the ledger folder, and a retried try
    resumes from it (and removes it at the end)."""
    from airflow_provider_carecycle.sync.state_store import TaskStateCheckpointStore

    ledger = tmp_path / "ledger"
    store = DictStateStore()
    context = task_context(store)
    op = CareCycleUploadLeadsOperator(task_id="upload", records=leads(10), sync_state_path=str(ledger), batch_size=5)
    own = TaskStateCheckpointStore.from_context(
        context, sync_state_path=str(ledger), destination=op.hook.destination_id
    )
    assert own is not None and own.overflow is not None
    Path(own.overflow).parent.mkdir(parents=True)
    Path(own.overflow).write_text("{}")
    store.values[CHECKPOINT_KEY] = {CHECKPOINT_REF: own.overflow}
    with caplog.at_level(logging.WARNING):
        assert op.execute(context)["uploaded"] == 10
    assert "Ignoring the checkpoint reference" not in caplog.text
    assert not Path(own.overflow).exists()  # the provider's own file: removed once the upload finished


# -- a watermark ---------------------------------------------------------------------------------------------------


def _future(days: float) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


HOSTILE_WATERMARKS = {
    "in-the-future": {"version": 1, "last_change": _future(365), "written_at": _future(365)},
    "moved-past-its-writing": {
        "version": 1,
        "last_change": _future(30),
        "written_at": (datetime.now(UTC) - timedelta(days=1)).isoformat(),
    },
    "not-utc": {"version": 1, "last_change": "2099-01-01T00:00:00+14:00", "written_at": "2099-01-01T00:00:00+14:00"},
    "extra-keys": {"version": 1, "last_change": _future(9), "written_at": _future(9), "by": "ui"},
    "another-feeds-document": {
        "version": 2,
        "feed": "0000000000000000",
        "last_change": ANCHOR.replace(tzinfo=UTC).isoformat(),
        "written_at": ANCHOR.replace(tzinfo=UTC).isoformat(),
        "retry": [],
    },
}


class PlantedAccessor(DictStateStore):
    """An asset's state store in which an editor planted ``document`` under every watermark key the provider may
    read, until the provider writes its own."""

    def __init__(self, document: dict[str, Any]) -> None:
        super().__init__()
        self.document = document

    def get(self, key: str, default: Any = None) -> Any:
        if key.startswith("carecloud_watermark_") and key not in self.values:
            return json.loads(json.dumps(self.document))
        return super().get(key, default)


class Accessors:
    def __init__(self, accessor: PlantedAccessor) -> None:
        self.accessor = accessor

    def __getitem__(self, asset: Any) -> PlantedAccessor:
        return self.accessor


@pytest.mark.parametrize("planted", list(HOSTILE_WATERMARKS))
def test_a_watermark_the_provider_did_not_write_is_ignored_with_a_warning(
    planted, carecloud_emulator, carecycle_emulator, tmp_path, caplog
):
    accessor = PlantedAccessor(HOSTILE_WATERMARKS[planted])
    since, before = (
        (ANCHOR - timedelta(days=3)).replace(tzinfo=UTC),
        (ANCHOR + timedelta(seconds=1)).replace(tzinfo=UTC),
    )
    op = CareCloudCrmToCareCycleLeadsOperator(
        task_id="crm_to_leads",
        defaults={"sourceId": "crm-feed"},
        incremental=True,
        max_rejected_ratio=1.0,
        changed_since=since.isoformat(),
        changed_before=before.isoformat(),
        outlets=[Asset(leads_uri(carecycle_emulator.url))],
    )
    with caplog.at_level(logging.WARNING):
        result = op.execute({"asset_state_store": Accessors(accessor)})

    expected = [
        c
        for c in carecloud_emulator.customers()
        if since.strftime("%F %T") <= c["last_change"] < before.strftime("%F %T")
    ]
    assert result["crm_rows"] == len(expected) > 0, "a planted watermark made the run skip the CRM's changes"
    assert "Ignoring the watermark" in caplog.text
    (own,) = [k for k in accessor.values if k.startswith("carecloud_watermark_")]
    assert accessor.values[own]["version"] == 2  # the run wrote its own watermark, and only that


# -- the ledger folder ---------------------------------------------------------------------------------------------


def test_a_full_sync_never_deletes_a_file_it_did_not_write(carecycle_emulator, tmp_path, caplog):
    ledger = tmp_path / "ledger"
    op = CareCycleUploadLeadsOperator(task_id="upload", records=leads(5), sync_state_path=str(ledger))
    op.execute({})
    binding = SyncLedger(str(ledger), destination=op.hook.destination_id).binding
    stranger = ledger / f"ledger-{binding}-0000000001-aaaaaaaaaaaa.sqlite"  # a ledger's name, someone else's bytes
    stranger.write_bytes(b"quarterly figures, not a ledger" * 10)

    with caplog.at_level(logging.WARNING):
        CareCycleUploadLeadsOperator(
            task_id="upload", records=leads(5, version=2), sync_state_path=str(ledger), full_sync=True
        ).execute({})
    assert stranger.exists(), "full_sync deleted a file it did not write"
    assert stranger.name in caplog.text
    assert held(carecycle_emulator, "st-") == {f"st-{i}": "V2" for i in range(5)}
