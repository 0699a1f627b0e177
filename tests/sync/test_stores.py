"""The sync's document store and folder store, and the one private atomic write both use."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_carecycle.sync.protocols import DocumentStore, FolderStore
from airflow_provider_carecycle.sync.stores import (
    FileDocumentStore,
    ObjectStorageFolderStore,
    SyncLedgerError,
    document_store,
    folder_store,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def memory_fs() -> Any:
    """memory:// stands for s3:// and gs://: the branch that writes an object under a temporary name, then moves it."""
    from fsspec.implementations.memory import MemoryFileSystem

    try:
        from airflow.sdk.io.store import attach
    except ImportError:  # Airflow 2
        from airflow.io.store import attach
    fs = MemoryFileSystem()
    attach("memory", fs=fs)
    return fs


def test_a_document_round_trips_in_a_private_file_and_a_missing_one_reads_as_none(tmp_path):
    store = FileDocumentStore(str(tmp_path / "deep" / "doc.json"))
    assert store.load() is None
    old_umask = os.umask(0o022)
    try:
        store.save({"version": 3, "done": [0, 1]})
    finally:
        os.umask(old_umask)
    path = tmp_path / "deep" / "doc.json"
    assert path.read_text() == '{"version":3,"done":[0,1]}'  # compact unless told otherwise
    assert mode(path) == 0o600
    assert store.load() == {"version": 3, "done": [0, 1]}
    assert [p.name for p in path.parent.iterdir()] == ["doc.json"]
    store.delete()
    store.delete()  # a missing document is not an error
    assert store.load() is None


def test_a_document_that_is_not_json_is_a_value_error(tmp_path):
    (tmp_path / "doc.json").write_text("{not json")
    with pytest.raises(ValueError):
        FileDocumentStore(str(tmp_path / "doc.json")).load()


def test_a_failed_write_leaves_the_old_document_and_no_temporary_file(tmp_path, monkeypatch):
    store = FileDocumentStore(str(tmp_path / "doc.json"))
    store.save({"n": 1})

    def full_disk(source: Any, target: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError, match="No space left"):
        store.save({"n": 2})
    monkeypatch.undo()
    assert store.load() == {"n": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["doc.json"]


def test_the_temporary_file_is_created_private_whatever_the_umask(tmp_path, monkeypatch):
    seen: list[tuple[str, int]] = []
    real_replace = os.replace

    def watching(source: Any, target: Any) -> None:
        seen.append((os.path.basename(str(source)), mode(Path(source))))
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", watching)
    old_umask = os.umask(0)
    try:
        FileDocumentStore(str(tmp_path / "doc.json")).save({"n": 1})
    finally:
        os.umask(old_umask)
    ((name, created),) = seen
    assert name.startswith(".doc.json.") and name.endswith(".partial") and created == 0o600


def test_on_object_storage_a_document_is_written_under_a_temporary_name_then_moved(memory_fs):
    store = FileDocumentStore("memory://sync-docs/feed/doc.json")
    store.save({"n": 1})
    store.save({"n": 2})
    assert store.load() == {"n": 2}
    assert memory_fs.ls("/sync-docs/feed", detail=False) == ["/sync-docs/feed/doc.json"]


def test_a_document_in_a_folder_keeps_the_folders_text_for_messages(tmp_path):
    store = FileDocumentStore.in_folder(str(tmp_path), "w.json", separators=(", ", ": "))
    store.save({"a": 1, "b": [1, 2]})
    assert (tmp_path / "w.json").read_text() == json.dumps({"a": 1, "b": [1, 2]})
    assert store.location == f"{tmp_path}/w.json" == str(store)


def test_the_folder_store_publishes_whole_files_privately(tmp_path):
    folder = ObjectStorageFolderStore(str(tmp_path / "ledger"))
    assert folder.list_names() == []  # an absent folder has no files
    source = tmp_path / "source.bin"
    source.write_bytes(b"x" * (3 << 20))  # larger than one copy chunk
    folder.upload(str(source), "ledger-a.sqlite")
    assert folder.list_names() == ["ledger-a.sqlite"]
    assert mode(tmp_path / "ledger" / "ledger-a.sqlite") == 0o600
    folder.download("ledger-a.sqlite", str(tmp_path / "copy.bin"))
    assert (tmp_path / "copy.bin").read_bytes() == source.read_bytes()
    with pytest.raises(FileNotFoundError):
        folder.download("ledger-gone.sqlite", str(tmp_path / "gone.bin"))
    folder.delete("ledger-a.sqlite")
    folder.delete("ledger-a.sqlite")
    assert folder.list_names() == []


def test_the_folder_store_on_object_storage(memory_fs, tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(b"ledger bytes")
    folder = ObjectStorageFolderStore("memory://sync-ledgers/feed")
    folder.upload(str(source), "ledger-b.sqlite")
    assert folder.list_names() == ["ledger-b.sqlite"]


def test_a_file_where_the_folder_should_be_is_a_clear_error(tmp_path):
    (tmp_path / "ledger").write_text("x")
    with pytest.raises(SyncLedgerError, match="is a file; it must be a folder"):
        ObjectStorageFolderStore(str(tmp_path / "ledger")).list_names()


class Document:
    location = "a stand-in"

    def load(self) -> Any:
        return None

    def save(self, state: dict[str, Any]) -> None:
        pass

    def delete(self) -> None:
        pass


class Folder:
    location = "a stand-in"

    def list_names(self) -> list[str]:
        return []

    def download(self, name: str, local_path: str) -> None:
        pass

    def upload(self, local_path: str, name: str) -> None:
        pass

    def delete(self, name: str) -> None:
        pass


def test_a_store_object_is_used_as_given_and_anything_else_names_a_place(tmp_path):
    document, folder = Document(), Folder()
    assert isinstance(document, DocumentStore) and isinstance(folder, FolderStore)
    assert document_store(document) is document and folder_store(folder) is folder
    assert isinstance(document_store(str(tmp_path / "d.json")), FileDocumentStore)
    assert isinstance(folder_store(str(tmp_path)), ObjectStorageFolderStore)
    assert isinstance(folder_store(tmp_path), ObjectStorageFolderStore)  # a path object names a place too
