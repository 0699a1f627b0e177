"""The sync ledger: which version of each lead careCycle has acknowledged, so a run sends only what changed.

Pure Python (no Airflow at import time): the folder is a
:class:`~airflow_provider_carecycle.sync.protocols.FolderStore`, by default an
:class:`~airflow_provider_carecycle.sync.stores.ObjectStorageFolderStore`.

What is stored
--------------
A ledger is a **folder** (``sync_state_path``: ``s3://``, ``gs://``, ``file://``, a local path) of immutable SQLite
files named ``ledger-<binding>-<generation>-<random>.sqlite``. Each holds:

- ``meta``: ``format`` (``carecycle-sync-ledger``), ``version``, ``binding``, ``generation``, ``entries``,
  ``written_at`` (UTC, ISO 8601), ``based_on`` (the names of the files its run had read);
- ``entries(id, hash, ts)``: one row per lead, where ``id`` is a 16-byte keyed BLAKE2b hash of the lead's identity
  (:meth:`~airflow_provider_carecycle.leads.validation.LeadValidator.identity`: ``externalId``, else the phone
  number), ``hash`` a 16-byte keyed BLAKE2b hash of the normalised lead exactly as sent (compact JSON, sorted keys),
  and ``ts`` the Unix time (seconds) at which careCycle acknowledged it. A ``hash`` of :data:`REVOKED` (16 zero bytes)
  vouches for no version: it is what a lead's entry becomes before a changed version of it is sent.

No field value is stored in clear: not the identity, not the lead. The hash key is derived from a secret (by
default the destination id, itself a hash of the careCycle base URL and API key); ``binding`` is another hash of
the destination and the key, so the files say which careCycle they belong to without saying which. A phone number
has few possible values, so someone who holds both the ledger and the key (the API key, or the destination id that
an upload checkpoint stores) could test guesses: keep the ledger where the rejected file and the checkpoint go.

How it is read and written
--------------------------
Every run merges all files of its binding into a local working copy (SQLite's temporary database: on disk under no
name, so a killed worker leaves nothing of it behind; files of another destination are left alone:
another destination starts empty; a file that is not a well-formed ledger is ignored with a warning, so its leads
are sent again). A lead is *unchanged* when the ledger holds its identity with the same hash, acknowledged less
than ``resend_after`` ago. Each save (the upload engine saves every minute and at the end of a run) writes the leads
careCycle acknowledged since the last one into **one new file** (written under a temporary name, then renamed, so a
reader never sees half of one); when there are more than ``max_files`` files of this binding, or at a
``full_sync``'s first save, the new file holds the whole ledger instead and the files it replaces are deleted (only
files that check out as this destination's ledgers, of this version or an earlier one: a file with a ledger's name
and other contents is ignored with a warning and left alone). Files are never overwritten, so two runs saving the
same ledger at once both keep their entries.

Before the first request of a run, every entry that holds another version of a lead about to be sent is replaced
by a revocation, saved as a new file at once (:meth:`SyncLedger.revoke`; a ``full_sync`` publishes its empty
replacement instead). A lead whose send has an unknown outcome (no answer, a 5xx or a timeout after careCycle stored
it, a kill, an abandoned request) is then not vouched for in any version until careCycle acknowledges one, so a
source that goes back to the version the ledger held before is sent again. A file of ledger version 1 (written
before revocations existed) may vouch for a version careCycle no longer holds: it is not read (its leads are sent
once again) and the first save replaces it.

Merging keeps, per identity, the latest acknowledgement: each file names the files its run had read
(``based_on``), so a later run's version replaces an earlier one at once. Two *different* versions of one lead
acknowledged by runs that had not read each other's files, within ``conflict_window_s`` of each other (two runs
sending different data for the same lead at once: careCycle holds whichever it processed last, which the
acknowledgement times cannot tell), are both forgotten, so the next run sends the lead again. Every doubt resolves
towards sending again, never towards skipping.

Why one module of this size: the ledger's file format, its destination binding, the merge of concurrent writers
and the save are one set of crash-safety rules; split, each part would depend on the others' details.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_provider_carecycle.scratch import scratch_database
from airflow_provider_carecycle.sync.protocols import FolderStore
from airflow_provider_carecycle.sync.stores import SyncLedgerError, folder_store

log = logging.getLogger(__name__)

LEDGER_FORMAT = "carecycle-sync-ledger"
#: version 2 added revocations (see :data:`REVOKED`); a version 1 file may vouch for a version careCycle no longer
#: holds (a later send's answer was lost), so it is not read: its leads are sent once again
LEDGER_VERSION = 2
HASH_BYTES = 16
#: the ``hash`` of an entry that vouches for no version of its lead: written, and published, before a changed lead
#: is sent, and replaced when careCycle acknowledges the new version (no keyed hash of a lead has this value)
REVOKED = bytes(HASH_BYTES)
#: files of one binding beyond which a save compacts them into one
DEFAULT_MAX_FILES = 8
#: two different versions of a lead acknowledged this close together (seconds) are forgotten
DEFAULT_CONFLICT_WINDOW_S = 600
_NAME_PREFIX = "ledger-"
_NAME_SUFFIX = ".sqlite"
_PROBE_CHUNK = 20_000
_RECORD_CHUNK = 5_000
_LIST_ATTEMPTS = 5
#: :func:`_check_file`'s problem for a well-formed ledger file of this destination written by an earlier version
_OUTDATED = "written by an earlier ledger version"


def check_resend_after(value: Any) -> float | None:
    """``resend_after`` as seconds (``None``: never re-send an unchanged lead for its age).

    :param value: a ``timedelta``, a number of seconds, or ``None``.
    :raises ValueError: when it is not a positive duration.
    """
    if value is None:
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise ValueError(f"resend_after must be a timedelta or a number of seconds, got {type(value).__name__}.")
    if not seconds > 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"resend_after must be a positive duration, got {value!r}.")
    return seconds


# -- the hashes ----------------------------------------------------------------------------------------------------


class LeadHasher:
    """The stored forms of one destination's leads: keyed BLAKE2b hashes, computed without the ledger's files.

    The upload engine hashes each lead once, as it spools it, and hands the hashes to the ledger
    (:meth:`SyncLedger.unchanged`, :meth:`SyncLedger.revoke`, :meth:`SyncLedger.record`).

    :param destination: names the careCycle the leads go to (the hook's ``destination_id``).
    :param secret: the key of the hashes (default: derived from ``destination``).
    """

    def __init__(self, destination: str, secret: bytes | None = None) -> None:
        key_material = secret if secret is not None else destination.encode()
        self._key = hashlib.blake2b(key_material, digest_size=32, person=b"ccsync-key").digest()
        #: names the destination (and the key) in the ledger's file names, without saying which it is
        self.binding = hashlib.blake2b(
            destination.encode() + b"\0" + self._key, digest_size=8, person=b"ccsync-bind"
        ).hexdigest()

    def identity_hash(self, identity: str) -> bytes:
        """The stored form of a lead identity (16 bytes, keyed)."""
        return hashlib.blake2b(identity.encode(), digest_size=HASH_BYTES, key=self._key, person=b"ccsync-id").digest()

    def lead_hash(self, lead_text: str) -> bytes:
        """The stored form of a normalised lead, given as the exact JSON text sent (16 bytes, keyed)."""
        return hashlib.blake2b(
            lead_text.encode(), digest_size=HASH_BYTES, key=self._key, person=b"ccsync-lead"
        ).digest()

    def __call__(self, identity: str, lead_text: str) -> tuple[bytes, bytes]:
        """A lead's two stored forms, ``(identity hash, lead hash)``.

        :param identity: the lead's identity (``LeadValidator.identity``).
        :param lead_text: the normalised lead's JSON text exactly as sent.
        """
        return self.identity_hash(identity), self.lead_hash(lead_text)


# -- the ledger ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LedgerSave:
    """What :meth:`SyncLedger.save` wrote: the new file's name, its entry count, whether it compacted the ledger."""

    name: str | None
    entries: int
    compacted: bool
    removed: int


@dataclass(frozen=True)
class _File:
    name: str
    generation: int


class SyncLedger:
    """The acknowledged version of each lead of one destination, kept in a folder.

    Use it as a context manager (or call :meth:`close`): :meth:`open` reads the folder, :meth:`unchanged` says which
    leads need not be sent, :meth:`record` notes a lead careCycle acknowledged, :meth:`save` publishes the notes.

    :param location: the ledger folder (a URI or local path), or a
        :class:`~airflow_provider_carecycle.sync.protocols.FolderStore`.
    :param destination: names the careCycle the leads go to (the hook's ``destination_id``); a ledger written for
        another destination is not used.
    :param secret: the key of the identity and lead hashes (default: derived from ``destination``).
    :param full_sync: treat every lead as changed, and replace the ledger with this run's acknowledgements.
    :param resend_after: re-send a lead acknowledged longer ago than this (a ``timedelta`` or seconds).
    :param max_files: files of this destination beyond which a save compacts them into one.
    :param conflict_window_s: see the module docstring (two versions acknowledged this close are forgotten).
    :param clock: the current Unix time (tests replace it).
    """

    def __init__(
        self,
        location: str | os.PathLike[str] | FolderStore,
        *,
        destination: str,
        secret: bytes | None = None,
        full_sync: bool = False,
        resend_after: timedelta | float | None = None,
        max_files: int = DEFAULT_MAX_FILES,
        conflict_window_s: float = DEFAULT_CONFLICT_WINDOW_S,
        clock: Any = time.time,
    ) -> None:
        if not destination:
            raise ValueError("destination must name the careCycle the leads go to.")
        if max_files < 1:
            raise ValueError(f"max_files must be at least 1, got {max_files!r}.")
        self.store = folder_store(location)
        self.full_sync = bool(full_sync)
        self.resend_after_s = check_resend_after(resend_after)
        self.max_files = max_files
        self.conflict_window_s = conflict_window_s
        self.clock = clock
        #: the keyed hashes of this destination's leads
        self.hasher = LeadHasher(destination, secret)
        self.binding = self.hasher.binding
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._run: sqlite3.Connection | None = None
        self._pending: list[tuple[bytes, bytes, int]] = []
        self._read: list[_File] = []
        self.recorded = 0
        self.unsaved = 0
        self._replaced = False
        self.loaded = 0
        self.ignored: list[str] = []
        #: files of this destination written by an earlier ledger version: not read, deleted by the first save
        self.outdated: list[str] = []
        self.revoked = 0

    # -- opening -------------------------------------------------------------------------------------------------

    def __enter__(self) -> SyncLedger:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> SyncLedger:
        """Read every file of this destination into a local working copy.

        The working copy and this run's acknowledgements are SQLite temporary databases (on disk under no name: the
        kernel reclaims them when the process dies). The files read are downloaded into a private temporary folder
        for the time it takes to check and merge them.

        :raises SyncLedgerError: when the folder cannot be listed or read.
        """
        if self._db is not None:
            return self
        for attempt in range(_LIST_ATTEMPTS):
            try:
                with tempfile.TemporaryDirectory(prefix="carecycle-ledger-") as transfers:
                    self._load(transfers)
                break
            except FileNotFoundError:  # a concurrent save compacted a file away between listing and reading it
                log.info("Sync ledger %s changed while being read; reading it again.", self.store.location)
                self._reset_working_copy()
                if attempt == _LIST_ATTEMPTS - 1:
                    raise SyncLedgerError(
                        f"The sync ledger at {self.store.location} kept changing while being read "
                        f"({_LIST_ATTEMPTS} attempts); another run is compacting it. Retry the task."
                    ) from None
            except SyncLedgerError:
                self.close()
                raise
            except (OSError, sqlite3.Error) as err:
                self.close()
                raise SyncLedgerError(
                    f"Cannot read the sync ledger at {self.store.location} ({type(err).__name__}: {err}). "
                    "Check that sync_state_path is a folder this worker can read and write; nothing was sent."
                ) from err
        self._run = self._connect()
        _create_schema(self._run)
        return self

    def _reset_working_copy(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @staticmethod
    def _connect() -> sqlite3.Connection:
        """A new, empty scratch database (SQLite's temporary database: under no name on disk)."""
        return scratch_database("cache_size=-32000", check_same_thread=False, isolation_level=None)

    def _load(self, transfers: str) -> None:
        """Merge the files of this binding into a new working copy.

        :param transfers: a private folder for the downloaded files (removed after).
        """
        files: list[_File] = []
        others = 0
        for name in self.store.list_names():
            parsed = _parse_name(name)
            if parsed is None:
                continue
            binding, generation = parsed
            if binding != self.binding:
                others += 1
                continue
            files.append(_File(name, generation))
        if others:
            log.info("Sync ledger %s: %d file(s) of other destinations left alone.", self.store.location, others)
        self._read = []
        self.ignored = []
        self.outdated = []
        self.loaded = 0
        self._db = self._connect()
        valid: list[tuple[_File, str, int, frozenset[str]]] = []
        for file in files:
            local = os.path.join(transfers, f"in-{len(valid)}-{file.generation}.sqlite")
            self.store.download(file.name, local)
            problem, count, based_on = _check_file(local, self.binding)
            if problem == _OUTDATED:
                self.outdated.append(file.name)
                os.unlink(local)
                continue
            if problem:  # not this provider's ledger of this destination: ignored, and never deleted
                self.ignored.append(file.name)
                log.warning(
                    "Ignoring sync ledger file %s/%s: %s. Its leads will be sent again; delete the file to silence "
                    "this warning.",
                    self.store.location,
                    file.name,
                    problem,
                )
                os.unlink(local)
                continue
            valid.append((file, local, count, based_on))
        self._read = [file for file, _, _, _ in valid]
        if self.full_sync:  # checked (the replacement deletes only ledger files), but nothing read is used
            for _, local, _, _ in valid:
                os.unlink(local)
            _create_schema(self._db)
            return
        if self.outdated:
            log.warning(
                "Sync ledger %s: %d file(s) of an earlier ledger version are not read (one may vouch for a version "
                "careCycle no longer holds): their leads are sent once again, and the files are replaced at this "
                "run's first save.",
                self.store.location,
                len(self.outdated),
            )
        if not valid:
            _create_schema(self._db)
            return
        ancestors = _ancestors({file.name: based_on for file, _, _, based_on in valid})
        # a file's generation is above those of the files its run had read: this order merges them before it
        ordered = sorted(valid, key=lambda v: (v[0].generation, v[0].name))
        # the oldest file, usually the compacted one (the largest), starts the copy
        _copy_database(ordered[0][1], self._db)
        os.unlink(ordered[0][1])
        self._db.execute("CREATE TEMP TABLE forgotten (id BLOB PRIMARY KEY, ts INTEGER NOT NULL) WITHOUT ROWID")
        merged = [ordered[0][0].name]
        for file, local, _, _ in ordered[1:]:
            # newer: its run had read (the files behind) every file merged so far, so its entries win outright
            newer = all(name in ancestors[file.name] for name in merged)
            self._merge_file(local, newer=newer)
            merged.append(file.name)
            os.unlink(local)
        (self.loaded,) = self._db.execute("SELECT count(*) FROM entries").fetchone()
        log.info(
            "Sync ledger %s: %d leads acknowledged earlier, from %d file(s).",
            self.store.location,
            self.loaded,
            len(valid),
        )

    def _merge_file(self, local: str, *, newer: bool) -> None:
        """Merge another file of this binding into the working copy (see the module docstring for the rule).

        :param newer: the file's run had read every file merged so far: its entries win. Otherwise the runs were
            concurrent: the later acknowledgement wins, and two versions acknowledged close together are forgotten.
        """
        db = self._db
        assert db is not None
        window = self.conflict_window_s
        db.execute("ATTACH DATABASE ? AS other", (local,))
        try:
            db.execute("BEGIN")
            if newer:
                db.execute("DELETE FROM temp.forgotten WHERE id IN (SELECT id FROM other.entries)")
                db.execute(
                    "INSERT INTO main.entries (id, hash, ts) SELECT id, hash, ts FROM other.entries WHERE true "
                    "ON CONFLICT(id) DO UPDATE SET hash = excluded.hash, ts = excluded.ts"
                )
                db.execute("COMMIT")
                return
            db.execute("DROP TABLE IF EXISTS temp.clash")
            db.execute(
                "CREATE TEMP TABLE clash AS SELECT o.id AS id, max(o.ts, m.ts) AS ts FROM other.entries o "
                "JOIN main.entries m ON m.id = o.id WHERE o.hash != m.hash AND abs(o.ts - m.ts) < ?",
                (window,),
            )
            db.execute("DELETE FROM main.entries WHERE id IN (SELECT id FROM temp.clash)")
            db.execute(
                "INSERT INTO temp.forgotten (id, ts) SELECT id, ts FROM temp.clash WHERE true "
                "ON CONFLICT(id) DO UPDATE SET ts = max(ts, excluded.ts)"
            )
            db.execute(
                "INSERT INTO main.entries (id, hash, ts) SELECT o.id, o.hash, o.ts FROM other.entries o "
                "WHERE NOT EXISTS (SELECT 1 FROM temp.forgotten f WHERE f.id = o.id AND abs(f.ts - o.ts) < ?) "
                "ON CONFLICT(id) DO UPDATE SET hash = excluded.hash, ts = excluded.ts "
                "WHERE excluded.ts > entries.ts OR (excluded.ts = entries.ts AND excluded.hash > entries.hash)",
                (window,),
            )
            db.execute("COMMIT")
        finally:
            db.execute("DETACH DATABASE other")

    # -- diffing -------------------------------------------------------------------------------------------------

    def unchanged(self, leads: Iterable[tuple[Any, bytes, bytes]]) -> Iterator[Any]:
        """The keys of the leads careCycle already holds as they are now (they need not be sent).

        A lead is unchanged when the ledger holds its identity with the same hash, acknowledged less than
        ``resend_after`` ago. With ``full_sync`` nothing is unchanged.

        :param leads: ``(key, identity hash, lead hash)``: any key the caller likes (a row number) and the lead's
            hashes (:class:`LeadHasher`).
        :return: the keys of the unchanged leads, in the order given.
        """
        db = self._require_open()
        if self.full_sync or not self.loaded:
            for _ in leads:
                pass
            return
        cutoff = -1 if self.resend_after_s is None else int(self.clock() - self.resend_after_s)
        db.execute(
            "CREATE TEMP TABLE IF NOT EXISTS probe (n INTEGER PRIMARY KEY, id BLOB NOT NULL, hash BLOB NOT NULL)"
        )
        keys: list[Any] = []
        rows: list[tuple[int, bytes, bytes]] = []

        def flush() -> Iterator[Any]:
            db.execute("BEGIN")
            db.executemany("INSERT INTO temp.probe (n, id, hash) VALUES (?, ?, ?)", rows)
            found = db.execute(
                "SELECT p.n FROM temp.probe p JOIN main.entries e ON e.id = p.id "
                "WHERE e.hash = p.hash AND e.ts >= ? ORDER BY p.n",
                (cutoff,),
            ).fetchall()
            db.execute("DELETE FROM temp.probe")
            db.execute("COMMIT")
            for (n,) in found:
                yield keys[n]
            keys.clear()
            rows.clear()

        for key, id_hash, lead_hash in leads:
            rows.append((len(keys), id_hash, lead_hash))
            keys.append(key)
            if len(rows) >= _PROBE_CHUNK:
                yield from flush()
        if rows:
            yield from flush()

    def known(self, leads: Iterable[tuple[Any, bytes]]) -> Iterator[Any]:
        """The keys of the leads whose identity the ledger holds in any version (acknowledged, or revoked because its
        sending was in doubt): careCycle may hold them. Unlike :meth:`unchanged`, ``full_sync`` and ``resend_after``
        play no part.

        :param leads: ``(key, identity hash)``.
        :return: the keys of the leads careCycle may hold, in the order given.
        """
        db = self._require_open()
        if not self.loaded:
            for _ in leads:
                pass
            return
        for key, id_hash in leads:
            if db.execute("SELECT 1 FROM main.entries WHERE id = ?", (id_hash,)).fetchone() is not None:
                yield key

    def revoke(self, leads: Iterable[tuple[bytes, bytes]]) -> int:
        """Stop vouching for any version of the leads about to be sent, and publish that before the first is sent.

        Call it once the leads to send are known and before the first request. An entry that holds another version
        of a lead about to be sent is replaced by a revocation (:data:`REVOKED`), and the revocations are saved at
        once as a new file: from then until careCycle acknowledges the new version, no ledger read anywhere (this
        run's, a crashed run's next try, a concurrent run's) counts any version of the lead as unchanged. So when
        the outcome of the send stays unknown (no answer, a 5xx or a timeout after careCycle stored it, a kill, an
        abandoned request), a later run sends the lead again, whichever version its source then holds. With
        ``full_sync``, the ledger's replacement (empty until careCycle acknowledges leads) is published here instead,
        and the files it replaces are deleted.

        :param leads: the hashes ``(identity hash, lead hash)`` of each lead about to be sent.
        :return: how many entries were revoked (with ``full_sync``: how many the ledger held).
        :raises SyncLedgerError: when the revocations cannot be written (then nothing may be sent).
        """
        db = self._require_open()
        if self.full_sync:
            for _ in leads:
                pass
            if not self._replaced:
                self.save()
            return 0
        if not self.loaded:
            for _ in leads:
                pass
            return 0
        db.execute("CREATE TEMP TABLE IF NOT EXISTS stale (id BLOB PRIMARY KEY, hash BLOB NOT NULL) WITHOUT ROWID")
        db.execute("DELETE FROM temp.stale")
        batch: list[tuple[bytes, bytes]] = []

        def flush() -> None:
            db.execute("BEGIN")
            db.executemany("INSERT OR REPLACE INTO temp.stale (id, hash) VALUES (?, ?)", batch)
            db.execute("COMMIT")
            batch.clear()

        for hashes in leads:
            batch.append(hashes)
            if len(batch) >= _PROBE_CHUNK:
                flush()
        if batch:
            flush()
        ids = [
            row[0]
            for row in db.execute(
                "SELECT s.id FROM temp.stale s JOIN main.entries e ON e.id = s.id WHERE e.hash != s.hash "
                "AND e.hash != ?",
                (REVOKED,),
            )
        ]
        db.execute("DELETE FROM temp.stale")
        if not ids:
            return 0
        now = int(self.clock())
        with self._lock:
            assert self._run is not None
            self._flush_pending()
            self._run.execute("BEGIN")
            self._run.executemany(
                "INSERT INTO entries (id, hash, ts) VALUES (?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET hash = excluded.hash, ts = excluded.ts",
                ((id_, REVOKED, now) for id_ in ids),
            )
            self._run.execute("COMMIT")
        self.save()
        self.revoked += len(ids)
        log.info(
            "Sync ledger %s: %d changed lead(s) no longer count as held by careCycle until it acknowledges them.",
            self.store.location,
            len(ids),
        )
        return len(ids)

    # -- recording -----------------------------------------------------------------------------------------------

    def record(self, hashes: tuple[bytes, bytes]) -> None:
        """Note that careCycle acknowledged this lead, as sent (call it only after the acknowledgement).

        :param hashes: the lead's hashes (:class:`LeadHasher`), of its normalised JSON text exactly as sent.
        """
        id_hash, lead_hash = hashes
        entry = (id_hash, lead_hash, int(self.clock()))
        with self._lock:
            self._require_open()
            self._pending.append(entry)
            self.recorded += 1
            self.unsaved += 1
            if len(self._pending) >= _RECORD_CHUNK:
                self._flush_pending()

    def _flush_pending(self) -> None:
        if not self._pending or self._run is None:
            return
        self._run.execute("BEGIN")
        self._run.executemany(
            "INSERT INTO entries (id, hash, ts) VALUES (?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET hash = excluded.hash, ts = excluded.ts",
            self._pending,
        )
        self._run.execute("COMMIT")
        self._pending.clear()

    # -- saving --------------------------------------------------------------------------------------------------

    def save(self) -> LedgerSave:
        """Publish the acknowledgements noted since the last save as a new file.

        The new file holds only those, unless the ledger has more than ``max_files`` files of this destination, or
        this is a full sync's first save: then it holds the whole ledger, and the files it replaces are deleted.
        It can be called as often as wanted during a run (each call that has something to say writes a file).

        :raises SyncLedgerError: when the folder cannot be written; the leads acknowledged since the last save will
            then be sent again by the next run.
        """
        with self._lock:
            db = self._require_open()
            assert self._run is not None
            self._flush_pending()
            (count,) = self._run.execute("SELECT count(*) FROM entries").fetchone()
            replace = self.full_sync and not self._replaced
            if not count and not replace:
                return LedgerSave(None, 0, False, 0)
            compact = replace or bool(self.outdated) or len(self._read) + 1 > self.max_files
            generation = max((f.generation for f in self._read), default=0) + 1
            name = f"{_NAME_PREFIX}{self.binding}-{generation:010d}-{uuid.uuid4().hex[:12]}{_NAME_SUFFIX}"
            if compact:
                self._merge_run()
            target = db if compact else self._run
            (entries,) = target.execute("SELECT count(*) FROM entries").fetchone()
            _write_meta(target, self.binding, generation, entries, [f.name for f in self._read])
            try:
                # the file to publish exists for the upload only, in a private folder (keyed hashes, no values)
                with tempfile.TemporaryDirectory(prefix="carecycle-ledger-") as transfers:
                    source = os.path.join(transfers, name)
                    _copy_database(target, source)
                    self.store.upload(source, name)
            except (OSError, sqlite3.Error) as err:
                raise SyncLedgerError(
                    f"Cannot write the sync ledger at {self.store.location} ({type(err).__name__}: {err}). The "
                    f"{self.unsaved} leads acknowledged since it was last saved are not recorded: the next run sends "
                    "them again."
                ) from err
            removed = 0
            if compact:
                for stale in [*(file.name for file in self._read), *self.outdated]:
                    self.store.delete(stale)
                    removed += 1
                self._read = [_File(name, generation)]
                self.outdated = []
                self._replaced = True
            else:
                self._merge_run()  # the working copy holds everything saved, for a later compaction
                self._read.append(_File(name, generation))
            self.unsaved = 0
            log.info(
                "Sync ledger %s: wrote %s (%d leads%s).",
                self.store.location,
                name,
                entries,
                f", replacing {removed} file(s)" if compact else "",
            )
            return LedgerSave(name, entries, compact, removed)

    def _merge_run(self) -> None:
        """Move this run's acknowledgements into the working copy: they are the newest, so they win."""
        db = self._require_open()
        assert self._run is not None
        rows = self._run.execute("SELECT id, hash, ts FROM entries")
        db.execute("BEGIN")
        while chunk := rows.fetchmany(_RECORD_CHUNK):
            db.executemany(
                "INSERT INTO main.entries (id, hash, ts) VALUES (?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET hash = excluded.hash, ts = excluded.ts",
                chunk,
            )
        db.execute("COMMIT")
        self._run.execute("DELETE FROM entries")

    def _require_open(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("SyncLedger is not open: call open() or use it as a context manager.")
        return self._db

    def close(self) -> None:
        """Drop the local working copy (unsaved acknowledgements are lost: the next run sends them again)."""
        for db in (self._db, self._run):
            if db is not None:
                db.close()
        self._db = self._run = None


# -- the file format -----------------------------------------------------------------------------------------------


def _create_schema(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID")
    db.execute(
        "CREATE TABLE IF NOT EXISTS entries "
        "(id BLOB PRIMARY KEY, hash BLOB NOT NULL, ts INTEGER NOT NULL) WITHOUT ROWID"
    )


def _write_meta(db: sqlite3.Connection, binding: str, generation: int, entries: int, based_on: list[str]) -> None:
    values = {
        "based_on": json.dumps(sorted(based_on)),
        "format": LEDGER_FORMAT,
        "version": str(LEDGER_VERSION),
        "binding": binding,
        "generation": str(generation),
        "entries": str(entries),
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    db.execute("BEGIN")
    db.execute("DELETE FROM meta")
    db.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", values.items())
    db.execute("COMMIT")


def _copy_database(source: str | sqlite3.Connection, target: str | sqlite3.Connection) -> None:
    """Copy a whole SQLite database, page by page (SQLite's backup): a downloaded file into a scratch database,
    or a scratch database into a file to publish.

    :param source: a database file (opened read-only) or an open connection.
    :param target: a new database file or an open connection.
    """
    reader = sqlite3.connect(f"file:{source}?mode=ro", uri=True) if isinstance(source, str) else source
    writer = sqlite3.connect(target) if isinstance(target, str) else target
    try:
        reader.backup(writer)
    finally:
        if reader is not source:
            reader.close()
        if writer is not target:
            writer.close()


def _ancestors(based_on: dict[str, frozenset[str]]) -> dict[str, set[str]]:
    """For each file, every file its run had read, directly or through a file it read that is still there."""
    found: dict[str, set[str]] = {}

    def walk(name: str, path: frozenset[str]) -> set[str]:
        if name not in found:
            result: set[str] = set(based_on.get(name, ()))
            for parent in based_on.get(name, ()):
                if parent in based_on and parent not in path:
                    result |= walk(parent, path | {name})
            found[name] = result
        return found[name]

    for name in based_on:
        walk(name, frozenset())
    return found


def _parse_name(name: str) -> tuple[str, int] | None:
    """``(binding, generation)`` of a ledger file name, or ``None`` for any other name (temporary files too)."""
    if not name.startswith(_NAME_PREFIX) or not name.endswith(_NAME_SUFFIX):
        return None
    parts = name[len(_NAME_PREFIX) : -len(_NAME_SUFFIX)].split("-")
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1])


def _check_file(local: str, binding: str) -> tuple[str | None, int, frozenset[str]]:
    """``(problem or None, entries, based_on)``: whether a downloaded file is a well-formed ledger of this binding,
    how many entries it has and the names of the files its run had read."""
    try:
        db = sqlite3.connect(f"file:{local}?mode=ro", uri=True)
    except sqlite3.Error as err:
        return f"not a SQLite file ({err})", 0, frozenset()
    try:
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("format") != LEDGER_FORMAT:
            return "not a careCycle sync ledger", 0, frozenset()
        version = meta.get("version")
        if version != str(LEDGER_VERSION):
            if str(version).isdigit() and int(str(version)) < LEDGER_VERSION and meta.get("binding") == binding:
                return _OUTDATED, 0, frozenset()
            return (
                f"ledger version {meta.get('version')!r}, this provider reads version {LEDGER_VERSION}",
                0,
                frozenset(),
            )
        if meta.get("binding") != binding:
            return "its name and contents name different destinations", 0, frozenset()
        try:
            based_on = json.loads(meta.get("based_on", ""))
        except ValueError:
            based_on = None
        if not isinstance(based_on, list) or not all(isinstance(n, str) for n in based_on):
            return "its based_on entry is not a list of file names", 0, frozenset()
        columns = [row[1] for row in db.execute("PRAGMA table_info(entries)")]
        if columns != ["id", "hash", "ts"]:
            return "its entries table has the wrong columns", 0, frozenset()
        (bad,) = db.execute(
            "SELECT count(*) FROM entries WHERE typeof(id) != 'blob' OR length(id) != ? "
            "OR typeof(hash) != 'blob' OR length(hash) != ? OR typeof(ts) != 'integer'",
            (HASH_BYTES, HASH_BYTES),
        ).fetchone()
        if bad:
            return f"{bad} malformed entries", 0, frozenset()
        (count,) = db.execute("SELECT count(*) FROM entries").fetchone()
        return None, count, frozenset(based_on)
    except sqlite3.Error as err:
        return f"unreadable ({type(err).__name__}: {err})", 0, frozenset()
    finally:
        db.close()
