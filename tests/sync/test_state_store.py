"""The state-store backends (:mod:`airflow_provider_carecycle.sync.state_store`) with small stand-ins for Airflow's
accessors: the narrow shape and size cases. The real stores in real Airflow runs are in
``tests/operators/test_state_store.py``."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_carecycle.leads.rejection import Rejection
from airflow_provider_carecycle.sync.checkpoint import UploadCheckpoint
from airflow_provider_carecycle.sync.state_store import (
    CHECKPOINT_KEY,
    CHECKPOINT_REF,
    WATERMARK_KEY_PREFIX,
    AssetStateWatermarkStore,
    TaskStateCheckpointStore,
    crm_watermark,
    declares_leads_asset,
    leads_asset_state,
)
from airflow_provider_carecycle.sync.watermark import SyncWatermark

FOREVER = timedelta.max


class FakeStore:
    """``task_state_store`` / an asset's accessor: a dict, with the retention of each write."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.retention: dict[str, Any] = {}
        self.fail_delete = False

    def get(self, key: str, default: Any = None) -> Any:
        return json.loads(json.dumps(self.values[key])) if key in self.values else default

    def set(self, key: str, value: Any, *, retention: Any = None) -> None:
        self.values[key] = json.loads(json.dumps(value))  # what the DB row holds: JSON
        self.retention[key] = retention

    def delete(self, key: str) -> None:
        if self.fail_delete:
            raise RuntimeError("the API server is gone")
        self.values.pop(key, None)


def checkpoint(store: Any, **kwargs: Any) -> UploadCheckpoint:
    args = {"fingerprint": "f", "batch_size": 10, "batches": 3, "destination": "d", **kwargs}
    return UploadCheckpoint(store, **args)


def test_the_checkpoint_resumes_from_the_task_state_store_with_the_same_bindings(caplog):
    fake = FakeStore()
    checkpoint(TaskStateCheckpointStore(fake, max_value_bytes=0, retention=FOREVER)).record(
        0,
        range(10),
        [Rejection("sourceId", "API: sourceId: invalid", "api_validation_error", position=4)],
        batch_len=10,
    )
    assert fake.values[CHECKPOINT_KEY]["done"] == [0] and fake.retention[CHECKPOINT_KEY] is FOREVER

    again = checkpoint(TaskStateCheckpointStore(fake, max_value_bytes=0, retention=FOREVER))
    refused = Rejection("sourceId", "API: sourceId: invalid", "api_validation_error", position=4)  # PHI-free text
    assert again.resumed and again.is_done(0) and again.rejections(0) == [refused]
    # another input or destination: ignored, and replaced at once
    assert not checkpoint(TaskStateCheckpointStore(fake, retention=FOREVER), destination="e").resumed
    assert fake.values[CHECKPOINT_KEY]["destination"] == "e" and fake.values[CHECKPOINT_KEY]["done"] == []

    fake.values[CHECKPOINT_KEY] = {**fake.values[CHECKPOINT_KEY], "destination": "d", "done": ["x"]}
    with caplog.at_level(logging.WARNING):
        assert not checkpoint(TaskStateCheckpointStore(fake, retention=FOREVER)).resumed
    assert "not a valid upload checkpoint" in caplog.text and "task state store" in caplog.text


def test_a_checkpoint_above_the_size_limit_goes_to_the_ledger_folder_and_the_store_keeps_its_uri(tmp_path):
    fake = FakeStore()
    overflow = tmp_path / "ledger" / "checkpoint-x.json"
    store = TaskStateCheckpointStore(fake, overflow=str(overflow), max_value_bytes=200, retention=FOREVER)
    cp = checkpoint(store)
    assert CHECKPOINT_REF not in fake.values[CHECKPOINT_KEY]  # small: stored as is
    cp.record(
        1,
        range(10),
        [Rejection("phoneNumber", "API: a long reason " * 3, "api_error", position=p) for p in range(10)],
        batch_len=10,
    )
    assert fake.values[CHECKPOINT_KEY] == {CHECKPOINT_REF: str(overflow)}
    assert json.loads(overflow.read_text())["done"] == [1]
    assert oct(overflow.stat().st_mode & 0o777) == "0o600"  # written like a checkpoint_path file

    reader = TaskStateCheckpointStore(fake, overflow=str(overflow), max_value_bytes=200, retention=FOREVER)
    assert checkpoint(reader).is_done(1)
    reader.delete()
    assert CHECKPOINT_KEY not in fake.values and not overflow.exists()


def test_a_big_checkpoint_without_a_folder_stays_in_the_store_with_one_warning(caplog):
    fake = FakeStore()
    cp = checkpoint(TaskStateCheckpointStore(fake, max_value_bytes=50, retention=FOREVER))
    with caplog.at_level(logging.WARNING):
        cp.record(0, range(10), [], batch_len=10)
        cp.record(1, range(10), [], batch_len=10)
    assert fake.values[CHECKPOINT_KEY]["done"] == [0, 1]
    assert caplog.text.count("above [state_store] max_value_storage_bytes=50") == 1


def test_a_failed_clean_up_is_logged_not_raised(caplog):
    fake = FakeStore()
    store = TaskStateCheckpointStore(fake, max_value_bytes=0, retention=FOREVER)
    checkpoint(store)
    fake.fail_delete = True
    with caplog.at_level(logging.WARNING):
        store.delete()
    assert "Could not delete the upload checkpoint" in caplog.text and "RuntimeError" in caplog.text


def test_without_a_task_state_store_there_is_no_state_checkpoint(tmp_path):
    assert TaskStateCheckpointStore.from_context({"ti": None}) is None
    context = {
        "task_state_store": FakeStore(),
        "ti": SimpleNamespace(dag_id="d", run_id="r", task_id="t", map_index=-1),
    }
    store = TaskStateCheckpointStore.from_context(context, sync_state_path=str(tmp_path / "ledger"))
    assert store is not None and str(store.overflow).startswith(str(tmp_path / "ledger" / "checkpoint-"))


# -- the watermark -------------------------------------------------------------------------------------------------


LEADS = "carecycle://api.carecycle.test/leads"


def test_the_watermark_in_an_asset_state_store_round_trips_and_ignores_a_malformed_value(caplog):
    fake = FakeStore()
    store = AssetStateWatermarkStore(fake, key="crm\nhost\ndest", asset_uri="carecycle://host/leads")
    mark = SyncWatermark(store, key="crm\nhost\ndest")
    assert mark.read() is None
    value = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
    mark.write(value)
    (key,) = fake.values
    assert key.startswith(WATERMARK_KEY_PREFIX) and "crm" not in key and "dest" not in key
    assert mark.read() == value and fake.values[key]["version"] == 2

    fake.values[key] = {**fake.values[key], "last_change": "yesterday"}
    with caplog.at_level(logging.WARNING):
        assert mark.read() is None
    assert "Ignoring the watermark the asset state store" in caplog.text and "last_change" in caplog.text
    assert key in fake.values  # ignored, not deleted
    mark.delete()
    assert fake.values == {}


def test_a_watermark_next_to_the_ledger_is_carried_over_once_then_removed(tmp_path):
    old = SyncWatermark(str(tmp_path), key="k")
    value = datetime(2026, 3, 1, tzinfo=timezone.utc)
    old.write(value)
    fake = FakeStore()
    mark = SyncWatermark(
        AssetStateWatermarkStore(fake, key="k", asset_uri="carecycle://host/leads"),
        key="k",
        previous=SyncWatermark(str(tmp_path), key="k"),
    )
    assert mark.read() == value and list(tmp_path.glob("watermark-*.json"))
    mark.write(value + timedelta(hours=1))
    assert not list(tmp_path.glob("watermark-*.json")) and mark.read() == value + timedelta(hours=1)


class FakeAccessors:
    """``context["asset_state_store"]``: subscripted by a declared asset."""

    def __init__(self, *assets: Any) -> None:
        self.by_uri = {asset.uri: FakeStore() for asset in assets}

    def __getitem__(self, asset: Any) -> FakeStore:
        return self.by_uri[asset.uri]


def test_the_watermark_uses_the_declared_leads_asset_of_this_destination_else_the_ledger(tmp_path):
    other, leads = SimpleNamespace(uri="s3://bucket/x"), SimpleNamespace(uri=LEADS)
    operator = SimpleNamespace(outlets=[other, leads], inlets=[])
    context = {"asset_state_store": FakeAccessors(other, leads)}
    assert declares_leads_asset(operator.outlets) and not declares_leads_asset([other])
    assert (
        leads_asset_state(operator, context, "https://api.carecycle.test") is context["asset_state_store"].by_uri[LEADS]
    )
    assert leads_asset_state(operator, context, "https://staging.carecycle.test") is None  # another destination
    assert leads_asset_state(operator, {}, "https://api.carecycle.test") is None  # Airflow before 3.3

    in_store = crm_watermark(operator, context, key="k", base_url="https://api.carecycle.test", sync_state_path=None)
    assert isinstance(in_store.store, AssetStateWatermarkStore)
    in_folder = crm_watermark(
        operator, {}, key="k", base_url="https://api.carecycle.test", sync_state_path=str(tmp_path)
    )
    assert in_folder.location.startswith(str(tmp_path))
    with pytest.raises(ValueError, match="set sync_state_path"):
        crm_watermark(operator, {}, key="k", base_url="https://api.carecycle.test", sync_state_path=None)


def test_incremental_accepts_a_declared_leads_asset_instead_of_sync_state_path():
    from airflow_provider_carecycle._compat import Asset
    from airflow_provider_carecycle.transfers.carecloud import CareCloudCrmToCareCycleLeadsOperator

    operator = CareCloudCrmToCareCycleLeadsOperator(task_id="t", incremental=True, outlets=[Asset(LEADS)])
    assert operator.sync_state_path is None
    with pytest.raises(ValueError, match="declare the careCycle leads asset"):
        CareCloudCrmToCareCycleLeadsOperator(task_id="t", incremental=True, outlets=[Asset("s3://bucket/x")])


def test_incremental_with_only_the_asset_on_an_airflow_without_state_stores_asks_for_sync_state_path(
    carecloud_emulator, carecycle_emulator
):
    from airflow_provider_carecycle._compat import Asset
    from airflow_provider_carecycle.assets import leads_uri
    from airflow_provider_carecycle.transfers.carecloud import CareCloudCrmToCareCycleLeadsOperator
    from tests.transfers.test_carecloud import run_context

    operator = CareCloudCrmToCareCycleLeadsOperator(
        task_id="t", incremental=True, outlets=[Asset(leads_uri(carecycle_emulator.url))]
    )
    with pytest.raises(ValueError, match="no asset state store for carecycle://.*set sync_state_path"):
        operator.execute(run_context())  # a context without asset_state_store: Airflow before 3.3
    assert not [e for e in carecloud_emulator.request_log() if e["path"].endswith("/customers")]  # nothing read
    assert not [e for e in carecycle_emulator.request_log() if e["path"] == "/v2/leads/upload"]
