"""The lead spool: every valid lead of one upload, deduplicated, in first-seen order, on disk under no name.

A lead travels as one :class:`LeadItem`, made once right after validation: its source row, its identity, its
normalised record as compact JSON text (:func:`lead_text`, the text careCycle is sent, the fingerprint covers and
the sync ledger hashes), the original record as JSON text (what the rejected file gets) and, with a sync ledger, its
two keyed hashes. The spool stores those values and gives the same values back; nothing is serialised or parsed
again on the way to the request and the ledger (a duplicate's record is merged into the earlier one's, the only
place a spooled text is read back as JSON).

Pure Python: no Airflow.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from airflow_provider_carecycle.leads.validation import EXTERNAL_ID_IDENTITY
from airflow_provider_carecycle.records import json_default
from airflow_provider_carecycle.scratch import scratch_database

#: ``(identity, lead text) -> (identity hash, lead hash)``: the sync ledger's keyed hashes
Hasher = Callable[[str, str], tuple[bytes, bytes]]


def lead_text(lead: Mapping[str, Any]) -> str:
    """A normalised lead as the one JSON text it is sent, fingerprinted and hashed as: compact, keys sorted, UTF-8.

    :param lead: the normalised lead.
    """
    return json.dumps(lead, separators=(",", ":"), sort_keys=True, ensure_ascii=False, default=json_default)


def record_text(record: Any) -> str:
    """The original source record as compact JSON text: made once, and written to the rejected file as it is.

    :param record: the record as read (a value JSON cannot encode is written as its ``repr``).
    """
    try:
        return json.dumps(record, separators=(",", ":"), ensure_ascii=False, default=json_default)
    except (TypeError, ValueError):
        return json.dumps(repr(record))


@dataclass(frozen=True, slots=True)
class LeadItem:
    """One valid lead on its way to careCycle, every form of it computed once.

    :param row: its source row (1-based; for merged duplicates, the last one's).
    :param identity: its dedupe key (:meth:`~airflow_provider_carecycle.leads.validation.LeadValidator.identity`).
    :param text: the normalised lead as :func:`lead_text`: what careCycle is sent and the ledger hashes.
    :param original: the source record as :func:`record_text`, for the rejected file.
    :param hashes: its sync ledger hashes (identity, lead), or ``None`` without a ledger.
    """

    row: int
    identity: str
    text: str
    original: str
    hashes: tuple[bytes, bytes] | None = None

    @classmethod
    def of(cls, row: int, identity: str, lead: Mapping[str, Any], original: str, hasher: Hasher | None) -> LeadItem:
        """The item of a lead just validated.

        :param row: its source row.
        :param identity: its identity.
        :param lead: the normalised lead.
        :param original: the source record's text.
        :param hasher: the sync ledger's hashes, or ``None``.
        """
        text = lead_text(lead)
        return cls(row, identity, text, original, None if hasher is None else hasher(identity, text))

    @property
    def external_id(self) -> str | None:
        """Its ``externalId`` (its identity names it), or ``None``: what careCycle's per-record errors name."""
        prefix = EXTERNAL_ID_IDENTITY
        return self.identity[len(prefix) :] if self.identity.startswith(prefix) else None


class UnchangedLeads(Protocol):
    """What the spool asks the sync ledger (a :class:`~airflow_provider_carecycle.sync.ledger.SyncLedger`)."""

    def unchanged(self, leads: Iterator[tuple[int, bytes, bytes]]) -> Iterator[int]: ...


class KnownLeads(Protocol):
    """What the spool asks the sync ledger to tell leads careCycle may hold from leads it never held."""

    def known(self, leads: Iterator[tuple[int, bytes]]) -> Iterator[int]: ...


class LeadSpool:
    """Valid leads keyed by identity, in first-seen order, on disk (bounded memory) in SQLite's temporary database:
    a file with no name, so nothing of it outlives the process, even a ``kill -9``
    (:func:`~airflow_provider_carecycle.scratch.scratch_database`).

    A later lead with the identity of an earlier one is merged into it field by field (the last value wins).

    Not thread-safe: only the engine's main thread touches it.

    :param hasher: the sync ledger's hashes, to hash a merged lead again (``None`` without a ledger).
    """

    def __init__(self, hasher: Hasher | None = None) -> None:
        self.hasher = hasher
        self._db = scratch_database("cache_size=-8000")
        self._db.execute(
            "CREATE TABLE leads (seq INTEGER PRIMARY KEY, identity TEXT NOT NULL UNIQUE, row INTEGER NOT NULL, "
            "lead TEXT NOT NULL, original TEXT NOT NULL, id_hash BLOB, lead_hash BLOB, send INTEGER NOT NULL DEFAULT 1)"
        )
        self.count = 0
        self.unchanged = 0
        self.suppressed = 0

    @property
    def to_send(self) -> int:
        """How many leads are to be sent (all but the unchanged and the suppressed ones)."""
        return self.count - self.unchanged - self.suppressed

    def add(self, item: LeadItem) -> bool:
        """Store a lead; merge it into an earlier one with the same identity. Return True for a duplicate."""
        id_hash, lead_hash = item.hashes or (None, None)
        cursor = self._db.execute(
            "INSERT INTO leads (identity, row, lead, original, id_hash, lead_hash) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(identity) DO NOTHING",
            (item.identity, item.row, item.text, item.original, id_hash, lead_hash),
        )
        if cursor.rowcount:
            self.count += 1
            return False
        (earlier,) = self._db.execute("SELECT lead FROM leads WHERE identity = ?", (item.identity,)).fetchone()
        merged = LeadItem.of(
            item.row, item.identity, {**json.loads(earlier), **json.loads(item.text)}, item.original, self.hasher
        )
        self._db.execute(
            "UPDATE leads SET row = ?, lead = ?, original = ?, lead_hash = ? WHERE identity = ?",
            (merged.row, merged.text, merged.original, merged.hashes[1] if merged.hashes else None, item.identity),
        )
        return True

    def mark_unchanged(self, ledger: UnchangedLeads) -> int:
        """Mark the leads the ledger holds as unchanged (they are not sent); return how many."""
        self._db.execute("CREATE TEMP TABLE unchanged (seq INTEGER PRIMARY KEY)")
        rows = self._db.execute("SELECT seq, id_hash, lead_hash FROM leads ORDER BY seq")
        insert = self._db.cursor()
        found = ledger.unchanged(rows)
        while chunk := list(itertools.islice(found, 10_000)):
            insert.executemany("INSERT INTO temp.unchanged (seq) VALUES (?)", ((seq,) for seq in chunk))
        self._db.execute("UPDATE leads SET send = 0 WHERE seq IN (SELECT seq FROM temp.unchanged)")
        (self.unchanged,) = self._db.execute("SELECT count(*) FROM leads WHERE send = 0").fetchone()
        self._db.execute("DROP TABLE temp.unchanged")
        return self.unchanged

    def mark_suppressed(self, ledger: KnownLeads) -> int:
        """Mark the leads to send that carry ``doNotCall`` and that careCycle never held (the ledger does not know
        their identity) as suppressed: they are not sent (careCycle has no delete: one it holds must be sent again
        with the flag; one it never held need not be sent at all). Return how many.

        :param ledger: the sync ledger.
        """
        rows = self._db.execute("SELECT seq, id_hash, lead FROM leads WHERE send = 1 ORDER BY seq")
        flagged = [
            (seq, id_hash)
            for seq, id_hash, text in rows
            if '"doNotCall"' in text and json.loads(text).get("doNotCall") is True
        ]
        known = set(ledger.known(iter(flagged)))
        suppressed = [seq for seq, _ in flagged if seq not in known]
        self._db.executemany("UPDATE leads SET send = 2 WHERE seq = ?", ((seq,) for seq in suppressed))
        self.suppressed += len(suppressed)
        return len(suppressed)

    def hashes_to_send(self) -> Iterator[tuple[bytes, bytes]]:
        """The ledger hashes ``(identity, lead)`` of every lead to send, in first-seen order."""
        yield from self._db.execute("SELECT id_hash, lead_hash FROM leads WHERE send = 1 ORDER BY seq")

    def batches(self, batch_size: int) -> Iterator[list[LeadItem]]:
        """Yield the leads to send in first-seen order, ``batch_size`` at a time."""
        cursor = self._db.execute(
            "SELECT row, identity, lead, original, id_hash, lead_hash FROM leads WHERE send = 1 ORDER BY seq"
        )
        while rows := cursor.fetchmany(batch_size):
            yield [
                LeadItem(row, identity, text, original, None if id_hash is None else (id_hash, lead_hash))
                for row, identity, text, original, id_hash, lead_hash in rows
            ]

    def fingerprint(self, batch_size: int) -> str:
        """sha256 over the batch size and every normalised lead to send, in order."""
        digest = hashlib.sha256(f"carecycle-leads:v1:batch_size={batch_size}\n".encode())
        for (text,) in self._db.execute("SELECT lead FROM leads WHERE send = 1 ORDER BY seq"):
            digest.update(text.encode())
            digest.update(b"\n")
        return digest.hexdigest()

    def close(self) -> None:
        self._db.close()
