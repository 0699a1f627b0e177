"""The upload checkpoint on its own: its bindings, its document, earlier layouts, where it can be kept.

The checkpoint in uploads that resume is in ``tests/sync/test_engine.py`` and ``tests/operators/test_leads.py``; in
the task state store, ``tests/sync/test_state_store.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_provider_carecycle.leads import Rejection
from airflow_provider_carecycle.sync.checkpoint import UploadCheckpoint


def checkpoint_at(uri: str, fingerprint: str = "a", batch_size: int = 10, batches: int = 2, destination: str = "d"):
    return UploadCheckpoint(
        uri, fingerprint=fingerprint, batch_size=batch_size, batches=batches, destination=destination
    )


def test_checkpoint_for_other_input_or_destination_is_ignored(tmp_path):
    uri = str(tmp_path / "cp.json")
    refused = Rejection(None, "API: x", "api_error", position=3)
    checkpoint_at(uri).record(0, range(10), [refused], batch_len=10)
    assert checkpoint_at(uri).is_done(0) and checkpoint_at(uri).rejections(0) == [refused]
    assert not checkpoint_at(uri, fingerprint="b").is_done(0)
    assert not checkpoint_at(uri, destination="e").is_done(0)
    assert not checkpoint_at(uri, batch_size=20, batches=1).is_done(0)
    Path(uri).write_text("{not json")
    assert not checkpoint_at(uri).resumed


EARLIER_LAYOUTS = {
    "version 1": {"version": 1, "done": [0], "partial": {}, "rejected": {}},
    # version 2 stored a rejection as [position, field, code, reason]
    "version 2": {"version": 2, "done": [0], "partial": {}, "rejected": {"0": [[3, None, "api_error", "API: x"]]}},
}


@pytest.mark.parametrize("layout", list(EARLIER_LAYOUTS.values()), ids=list(EARLIER_LAYOUTS))
def test_a_checkpoint_of_an_earlier_layout_starts_afresh_with_a_warning(layout, tmp_path, caplog):
    uri = tmp_path / "cp.json"
    uri.write_text(json.dumps({"fingerprint": "a", "destination": "d", "batch_size": 10, "batches": 2, **layout}))
    with caplog.at_level("WARNING"):
        checkpoint = checkpoint_at(str(uri))
    assert not checkpoint.resumed and not checkpoint.is_done(0) and checkpoint.rejections(0) == []
    assert "written by another version of the provider" in caplog.text
    state = json.loads(uri.read_text())  # rewritten at once, before any request
    assert (state["version"], state["done"], state["rejected"]) == (3, [], {})


def test_a_checkpoint_is_written_at_once_and_replaced_atomically_0600(tmp_path):
    uri = tmp_path / "deep" / "cp.json"
    checkpoint_at(str(uri))
    assert json.loads(uri.read_text())["done"] == [] and oct(uri.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in uri.parent.iterdir()] == ["cp.json"]


def test_a_checkpoint_on_other_object_storage_is_written_through_fsspec():
    from fsspec.implementations.memory import MemoryFileSystem

    try:
        from airflow.sdk.io.store import attach
    except ImportError:  # Airflow 2
        from airflow.io.store import attach
    attach("memory", fs=MemoryFileSystem())  # Airflow 2 knows no memory:// until told
    uri = "memory://checkpoints/cp.json"
    checkpoint_at(uri).record(1, range(3), [], batch_len=3)
    assert checkpoint_at(uri).is_done(1)
