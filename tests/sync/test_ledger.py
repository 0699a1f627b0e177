"""The sync ledger on its own: what it stores, its destination binding, concurrent writers, damaged files, crashes."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_carecycle.sync.ledger import HASH_BYTES, LEDGER_VERSION, REVOKED, SyncLedger, check_resend_after
from airflow_provider_carecycle.sync.stores import ObjectStorageFolderStore, SyncLedgerError

DEST = "destination-a"


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def lead_text(i: int, version: int = 1) -> str:
    return f'{{"externalId":"e{i}","firstName":"Zelda{i}","phoneNumber":"+1212555{i:04d}","v":{version}}}'


def leads(ids: range | list[int], version: int = 1) -> list[tuple[int, str, str]]:
    return [(i, f"ext:e{i}", lead_text(i, version)) for i in ids]


def hashed(ledger: SyncLedger, leads: list[tuple[int, str, str]]) -> list[tuple[int, bytes, bytes]]:
    """``(key, identity, text)`` as the ledger takes them: ``(key, identity hash, lead hash)``."""
    return [(key, *ledger.hasher(identity, text)) for key, identity, text in leads]


def ledger_at(folder: Any, **kwargs: Any) -> SyncLedger:
    kwargs.setdefault("destination", DEST)
    kwargs.setdefault("clock", Clock())
    return SyncLedger(str(folder), **kwargs)


def sync(folder: Any, ids: range | list[int], version: int = 1, **kwargs: Any) -> list[int]:
    """One run: the ids the ledger says are unchanged; then record all of them as accepted and save."""
    with ledger_at(folder, **kwargs) as ledger:
        unchanged = list(ledger.unchanged(hashed(ledger, leads(ids, version))))
        for _, identity, text in leads(ids, version):
            ledger.record(ledger.hasher(identity, text))
        ledger.save()
    return unchanged


def unchanged(folder: Any, ids: range | list[int], version: int = 1, **kwargs: Any) -> list[int]:
    with ledger_at(folder, **kwargs) as ledger:
        return list(ledger.unchanged(hashed(ledger, leads(ids, version))))


def ledger_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("ledger-"))


# -- the diff ------------------------------------------------------------------------------------------------------


def test_a_lead_is_unchanged_only_with_the_same_identity_and_the_same_content(tmp_path):
    assert sync(tmp_path, range(5)) == []  # a new ledger: everything is new
    with ledger_at(tmp_path) as ledger:
        probe = [*leads([0, 1]), (2, "ext:e2", lead_text(2, version=2)), (9, "ext:e9", lead_text(9))]
        assert list(ledger.unchanged(hashed(ledger, probe))) == [0, 1]
        assert ledger.loaded == 5


def test_only_recorded_leads_enter_the_ledger(tmp_path):
    with ledger_at(tmp_path) as ledger:
        list(ledger.unchanged(hashed(ledger, leads(range(4)))))
        ledger.record(ledger.hasher("ext:e1", lead_text(1)))  # only lead 1 was accepted
        ledger.save()
    assert unchanged(tmp_path, range(4)) == [1]


@pytest.mark.parametrize("full_sync", [False, True])
def test_saving_during_a_run_then_compacting_keeps_every_save(tmp_path, full_sync):
    sync(tmp_path, range(100, 103))
    with ledger_at(tmp_path, max_files=3, full_sync=full_sync) as ledger:
        for i in range(6):
            ledger.record(ledger.hasher(f"ext:e{i}", lead_text(i)))
            ledger.save()
        assert ledger.save().name is None  # nothing new: no file
    assert len(ledger_files(tmp_path)) <= 3
    kept = [] if full_sync else [100, 101, 102]
    assert unchanged(tmp_path, [*range(6), 100, 101, 102]) == [*range(6), *kept]


def test_unsaved_records_are_not_in_the_ledger(tmp_path):
    with ledger_at(tmp_path) as ledger:
        ledger.record(ledger.hasher("ext:e1", lead_text(1)))  # closed without save: as after a crash
    assert unchanged(tmp_path, range(4)) == []
    assert ledger_files(tmp_path) == []


def test_the_diff_covers_many_chunks(tmp_path):
    ids = range(45_000)
    sync(tmp_path, ids)
    changed = {7, 20_001, 44_999}
    probe = [(i, f"ext:e{i}", lead_text(i, 2 if i in changed else 1)) for i in ids]
    with ledger_at(tmp_path) as ledger:
        assert list(ledger.unchanged(hashed(ledger, probe))) == [i for i in ids if i not in changed]


def test_resend_after_sends_again_what_was_accepted_too_long_ago(tmp_path):
    clock = Clock()
    sync(tmp_path, [1], clock=clock)
    clock.now += 3600
    sync(tmp_path, [2], clock=clock)
    clock.now += 3600
    assert unchanged(tmp_path, [1, 2], clock=clock, resend_after=timedelta(hours=1.5)) == [2]
    assert unchanged(tmp_path, [1, 2], clock=clock, resend_after=3 * 3600) == [1, 2]
    assert unchanged(tmp_path, [1, 2], clock=clock) == [1, 2]


@pytest.mark.parametrize(("value", "seconds"), [(None, None), (60, 60.0), (1.5, 1.5), (timedelta(days=1), 86400.0)])
def test_resend_after_accepts_durations(value, seconds):
    assert check_resend_after(value) == seconds


@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf"), "1 day", True, timedelta(0)])
def test_resend_after_rejects_anything_else(value):
    with pytest.raises(ValueError, match="resend_after must be"):
        check_resend_after(value)


def test_full_sync_sends_everything_and_replaces_the_ledger(tmp_path):
    sync(tmp_path, range(10))
    sync(tmp_path, range(10, 12))
    assert len(ledger_files(tmp_path)) == 2

    assert sync(tmp_path, range(3), full_sync=True) == []  # nothing is unchanged in a full sync

    assert len(ledger_files(tmp_path)) == 1
    assert unchanged(tmp_path, range(12)) == [0, 1, 2]  # leads no longer in the source are forgotten


# -- what is stored ------------------------------------------------------------------------------------------------


def test_no_value_is_stored_in_clear_and_the_file_is_private(tmp_path):
    sync(tmp_path, range(3))
    (name,) = ledger_files(tmp_path)
    data = (tmp_path / name).read_bytes()
    for needle in (b"ext:e1", b"Zelda1", b"2125550001", b"externalId", DEST.encode()):
        assert needle not in data
    assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    db = sqlite3.connect(tmp_path / name)
    rows = db.execute("SELECT id, hash, ts FROM entries").fetchall()
    meta = dict(db.execute("SELECT key, value FROM meta"))
    db.close()
    assert len(rows) == 3
    assert all(len(i) == len(h) == HASH_BYTES and isinstance(ts, int) for i, h, ts in rows)
    assert set(meta) == {"format", "version", "binding", "generation", "entries", "written_at", "based_on"}


def test_the_hashes_are_keyed_by_the_secret(tmp_path):
    a = SyncLedger(str(tmp_path), destination=DEST)
    b = SyncLedger(str(tmp_path), destination=DEST, secret=b"another key")
    assert a.hasher.identity_hash("ext:e1") != b.hasher.identity_hash("ext:e1")
    assert a.hasher.lead_hash(lead_text(1)) != b.hasher.lead_hash(lead_text(1))
    assert a.binding != b.binding


# -- destination binding -------------------------------------------------------------------------------------------


def test_another_destination_starts_empty_and_leaves_the_first_ones_files_alone(tmp_path):
    sync(tmp_path, range(5))
    mine = ledger_files(tmp_path)

    assert sync(tmp_path, range(5), destination="destination-b", full_sync=True) == []
    assert sync(tmp_path, range(5), destination="destination-b", max_files=1) == [0, 1, 2, 3, 4]

    assert set(mine) <= set(ledger_files(tmp_path))  # a compaction of b removed none of a's files
    assert unchanged(tmp_path, range(5)) == [0, 1, 2, 3, 4]


# -- two writers ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_files", [8, 1])  # 1: both writers compact, each deleting what it had read
def test_two_writers_at_once_keep_each_others_entries(tmp_path, max_files):
    sync(tmp_path, range(3))
    sync(tmp_path, range(3, 6))
    a = ledger_at(tmp_path, max_files=max_files).open()
    b = ledger_at(tmp_path, max_files=max_files).open()
    for i in range(10, 15):
        a.record(a.hasher(f"ext:e{i}", lead_text(i)))
    for i in range(20, 25):
        b.record(b.hasher(f"ext:e{i}", lead_text(i)))
    a.save()
    b.save()
    a.close()
    b.close()

    everything = [*range(6), *range(10, 15), *range(20, 25)]
    assert unchanged(tmp_path, everything) == everything


def test_two_writers_with_different_versions_of_one_lead_forget_it(tmp_path):
    """careCycle holds whichever version it processed last, which acknowledgement times cannot tell: send again."""
    sync(tmp_path, [1, 2])
    clock = Clock(1_800_000_100.0)
    a = ledger_at(tmp_path, clock=clock).open()
    b = ledger_at(tmp_path, clock=clock).open()
    a.record(a.hasher("ext:e1", lead_text(1, version=2)))
    clock.now += 5
    b.record(b.hasher("ext:e1", lead_text(1, version=3)))
    a.save()
    b.save()
    a.close()
    b.close()

    for version in (1, 2, 3):
        assert unchanged(tmp_path, [1, 2], version=version, clock=clock) == ([2] if version == 1 else [])
    assert unchanged(tmp_path, [2], clock=clock) == [2]


@pytest.mark.parametrize("first", [[1], [1, 2, 3]])  # the later file merged into the earlier one, or the reverse
def test_a_later_run_that_read_the_earlier_ones_wins_at_once(tmp_path, first):
    clock = Clock()
    sync(tmp_path, first, version=1, clock=clock)
    clock.now += 1  # well inside the conflict window, but this run read the first one's file
    sync(tmp_path, [1], version=2, clock=clock)
    assert unchanged(tmp_path, [1], version=2, clock=clock) == [1]
    assert unchanged(tmp_path, [1], version=1, clock=clock) == []


class StaleListing:
    """A store whose first listing names a file a concurrent compaction has just deleted."""

    def __init__(self, folder: Path) -> None:
        self.inner = ObjectStorageFolderStore(str(folder))
        self.location = self.inner.location
        self.listings = 0

    def list_names(self) -> list[str]:
        self.listings += 1
        names = self.inner.list_names()
        if self.listings == 1:
            names.append("ledger-" + names[0].split("-")[1] + "-0000000000-gone00000000.sqlite")
        return names

    def download(self, name: str, local_path: str) -> None:
        self.inner.download(name, local_path)

    def upload(self, local_path: str, name: str) -> None:
        self.inner.upload(local_path, name)

    def delete(self, name: str) -> None:
        self.inner.delete(name)


def test_a_file_compacted_away_while_being_read_makes_the_reader_list_again(tmp_path):
    sync(tmp_path, range(3))
    store = StaleListing(tmp_path)
    with SyncLedger(store, destination=DEST, clock=Clock()) as ledger:
        assert list(ledger.unchanged(hashed(ledger, leads(range(3))))) == [0, 1, 2]
    assert store.listings == 2


# -- damaged or foreign files --------------------------------------------------------------------------------------


def _binding() -> str:
    return SyncLedger("/unused", destination=DEST).binding


def _make_db(path: Path, meta: dict[str, str], rows: list[tuple[Any, Any, Any]]) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("CREATE TABLE entries (id BLOB PRIMARY KEY, hash BLOB NOT NULL, ts INTEGER NOT NULL)")
    db.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
    db.executemany("INSERT INTO entries VALUES (?, ?, ?)", rows)
    db.commit()
    db.close()


def _good_meta(**changes: str) -> dict[str, str]:
    meta = {"format": "carecycle-sync-ledger", "version": str(LEDGER_VERSION), "binding": _binding(), "based_on": "[]"}
    return {**meta, **changes}


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda p: p.write_bytes(b"not a database at all, just some bytes" * 100), "not a SQLite file|unreadable"),
        (lambda p: _make_db(p, _good_meta(format="something else"), []), "not a careCycle sync ledger"),
        (lambda p: _make_db(p, _good_meta(version="99"), []), "ledger version '99'"),
        (lambda p: _make_db(p, _good_meta(binding="0000000000000000"), []), "name different destinations"),
        (lambda p: _make_db(p, _good_meta(based_on="{}"), []), "based_on"),
        (lambda p: _make_db(p, _good_meta(), [(b"short", b"x" * 16, 1)]), "1 malformed entries"),
        (lambda p: _make_db(p, _good_meta(), [(b"i" * 16, b"h" * 16, "yesterday")]), "1 malformed entries"),
    ],
)
def test_a_damaged_file_is_ignored_with_a_warning_and_its_leads_are_sent_again(tmp_path, caplog, make, problem):
    sync(tmp_path, [1])
    bad = tmp_path / f"ledger-{_binding()}-0000000009-badbadbadbad.sqlite"
    make(bad)
    with caplog.at_level(logging.WARNING, logger="airflow_provider_carecycle.sync.ledger"):
        assert unchanged(tmp_path, [1, 2]) == [1]
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert bad.name in warning and "sent again" in warning
    assert __import__("re").search(problem, warning)
    sync(tmp_path, [2], max_files=1)  # a compaction leaves the damaged file for a person to look at
    assert bad.exists()


def test_other_names_and_temporary_files_are_not_read(tmp_path):
    sync(tmp_path, [1])
    (tmp_path / f".ledger-{_binding()}-0000000005-abcdefabcdef.sqlite.0123456789ab.partial").write_bytes(b"half")
    (tmp_path / "notes.txt").write_text("hello")
    assert unchanged(tmp_path, [1]) == [1]


def test_a_file_where_the_folder_should_be_is_a_clear_error(tmp_path):
    target = tmp_path / "ledger.sqlite"
    target.write_text("x")
    with pytest.raises(SyncLedgerError, match="is a file; it must be a folder"):
        ledger_at(target).open()


def test_an_unreadable_folder_is_a_clear_error(tmp_path):
    class Unreadable(StaleListing):
        def list_names(self) -> list[str]:
            raise PermissionError(13, "Permission denied")

    with pytest.raises(SyncLedgerError, match="Cannot read the sync ledger at .*nothing was sent"):
        SyncLedger(Unreadable(tmp_path), destination=DEST).open()


# -- crash safety of the write -------------------------------------------------------------------------------------


def test_a_write_that_fails_before_the_rename_leaves_the_old_ledger_and_no_half_file(tmp_path, monkeypatch):
    sync(tmp_path, range(3))
    before = ledger_files(tmp_path)
    real_replace = os.replace

    def crash(source: str, target: str) -> None:
        if os.path.basename(str(target)).startswith("ledger-"):
            raise OSError(28, "No space left on device")
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", crash)
    with ledger_at(tmp_path, max_files=1) as ledger:  # a compaction: the old files must survive the failure
        ledger.record(ledger.hasher("ext:e7", lead_text(7)))
        with pytest.raises(SyncLedgerError, match="Cannot write the sync ledger .* the next run sends them again"):
            ledger.save()
    monkeypatch.undo()

    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert unchanged(tmp_path, [0, 1, 2, 7]) == [0, 1, 2]


def test_the_object_storage_path_publishes_through_a_temporary_name(tmp_path):
    """memory:// stands for s3:// and gs://: the copy-then-rename branch, and a reader of the result."""
    from fsspec.implementations.memory import MemoryFileSystem

    try:
        from airflow.sdk.io.store import attach
    except ImportError:  # Airflow 2
        from airflow.io.store import attach
    attach("memory", fs=MemoryFileSystem())
    folder = "memory://ledgers/feed-a"
    sync(folder, range(4))
    sync(folder, range(4, 6), max_files=1)
    names = ObjectStorageFolderStore(folder).list_names()
    assert len(names) == 1 and names[0].startswith("ledger-") and not any(n.endswith(".partial") for n in names)
    assert unchanged(folder, range(8)) == list(range(6))


# -- revocations (issue 20, item 1) -------------------------------------------------------------------------------


def test_revoke_publishes_at_once_and_only_for_leads_the_ledger_holds_in_another_version(tmp_path):
    sync(tmp_path, range(4))
    before = ledger_files(tmp_path)
    with ledger_at(tmp_path) as ledger:
        about_to_send = [
            ledger.hasher(identity, text) for _, identity, text in [*leads([0], version=2), *leads([1, 9])]
        ]
        assert ledger.revoke(about_to_send) == 1  # e0 changed; e1 is the same version (a resend); e9 is new
        assert len(ledger_files(tmp_path)) == len(before) + 1  # written before anything is sent
        assert ledger.revoke(about_to_send) == 0  # a revoked entry is not revoked again
    assert unchanged(tmp_path, range(4)) == [1, 2, 3]  # no version of e0 is vouched for
    assert unchanged(tmp_path, [0], version=2) == []
    assert sync(tmp_path, [0], version=2) == [] and unchanged(tmp_path, [0], version=2) == [0]  # acknowledged


def test_a_revoked_entry_never_matches_and_survives_a_compaction(tmp_path):
    sync(tmp_path, range(3))
    with ledger_at(tmp_path) as ledger:
        ledger.revoke([ledger.hasher("ext:e1", lead_text(1, version=2))])
    sync(tmp_path, [2], max_files=1)  # compacts every file into one
    (only,) = ledger_files(tmp_path)
    db = sqlite3.connect(tmp_path / only)
    assert db.execute("SELECT count(*) FROM entries WHERE hash = ?", (REVOKED,)).fetchone() == (1,)
    db.close()
    assert unchanged(tmp_path, range(3)) == [0, 2]


def test_a_ledger_file_of_an_earlier_version_is_not_trusted_and_is_replaced_at_the_first_save(tmp_path, caplog):
    sync(tmp_path, range(3))
    (current,) = ledger_files(tmp_path)
    db = sqlite3.connect(tmp_path / current)
    db.execute("UPDATE meta SET value = '1' WHERE key = 'version'")  # what the provider wrote before revocations
    db.commit()
    db.close()
    with caplog.at_level(logging.WARNING, logger="airflow_provider_carecycle.sync.ledger"):
        assert sync(tmp_path, range(3)) == []  # every lead is sent once again
    assert "earlier ledger version" in caplog.text
    assert current not in ledger_files(tmp_path) and len(ledger_files(tmp_path)) == 1
    assert unchanged(tmp_path, range(3)) == [0, 1, 2]
