"""The CRM watermark: the highest source change time a feed fully synced, and the customers careCycle refused since.

One small JSON document per feed (:func:`watermark_digest` of the key the CRM transfer builds from the CRM
connection, the query and the careCycle destination), kept next to the sync ledger in its folder or, on Airflow 3.3+,
in the careCycle leads asset's state store (:mod:`~airflow_provider_carecycle.sync.state_store`). A document is
followed only when it has exactly the provider's shape; anything else is ignored with a warning and never deleted.

Pure Python: no Airflow at import time (a file on object storage is reached through
:class:`~airflow_provider_carecycle.sync.stores.FileDocumentStore` when the watermark is built).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_provider_carecycle.sync.protocols import DocumentStore
from airflow_provider_carecycle.sync.stores import FileDocumentStore, SyncLedgerError

log = logging.getLogger(__name__)


def watermark_digest(key: str) -> str:
    """The short hash naming a watermark's feed (in its file name or store key, and in the document itself).

    :param key: names the feed (see :class:`SyncWatermark`).
    """
    return hashlib.blake2b(key.encode(), digest_size=8, person=b"ccsync-mark").hexdigest()


def watermark_file(folder: Any, key: str) -> FileDocumentStore:
    """The watermark next to the ledger: ``watermark-<hash of key>.json`` in the ledger's folder.

    :param folder: the ledger folder (a URI, a local path or a path object).
    :param key: names the feed the watermark is for (hashed: the name says nothing of it).
    """
    name = f"watermark-{watermark_digest(key)}.json"
    return FileDocumentStore.in_folder(folder, name, separators=_FILE_SEPARATORS)


#: the watermark document's version: 2 names its feed and carries the customers to try again
WATERMARK_VERSION = 2
#: the most CRM customers careCycle refused that a watermark keeps to try again (beyond, the watermark stays back)
MAX_RETRY_IDS = 500
#: how far ahead of this worker's clock a stored time may be (another worker's clock) before it is not believed
CLOCK_SKEW = timedelta(minutes=5)
_RETRY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: the watermark file's JSON spacing (``json.dumps``'s own), kept as it was first written
_FILE_SEPARATORS = (", ", ": ")


@dataclass(frozen=True)
class WatermarkState:
    """A watermark as read: where the next read may start, and the customers to fetch again whatever it says.

    :param last_change: every change at or after this instant (UTC) is still to be read.
    :param retry: CRM customer ids careCycle refused in an earlier run, to be fetched and sent again.
    :param legacy: read from the per-connection key of an earlier release, which several feeds may have shared: it
        is only a bound the read may start before, never a reason to start later.
    """

    last_change: datetime
    retry: tuple[str, ...] = ()
    legacy: bool = False


class SyncWatermark:
    """The highest source change time a feed fully synced, and the customers careCycle refused since.

    The document: ``{"version": 2, "feed": "<hash of key>", "last_change": "<UTC>", "written_at": "<UTC>",
    "retry": ["<customer id>", ...]}``. One per ``key`` (a feed: what it reads and where it sends, see the CRM
    transfer). Kept in a :class:`~airflow_provider_carecycle.sync.protocols.DocumentStore`: by default a file in the
    ledger's folder (:func:`watermark_file`); on Airflow 3.3+ an asset's state store
    (:class:`~airflow_provider_carecycle.sync.state_store.AssetStateWatermarkStore`), which anyone with edit rights can
    write. So a document is followed only when it has exactly the provider's shape: this version, this feed's hash,
    UTC times with ``last_change`` not after ``written_at`` and neither in the future, well-formed ids. Anything
    else is ignored with a warning (the run then reads from its data interval), and never deleted.

    :param location: a :class:`~airflow_provider_carecycle.sync.protocols.DocumentStore`, or the ledger folder (a URI
        or local path).
    :param key: names the feed the watermark is for.
    :param previous: where this feed's watermark was kept before (the ledger folder, when it moved to an asset state
        store): read when ``location`` has none yet, and removed once a watermark is written to ``location``.
    :param legacy: version 1 watermarks of an earlier release (kept per CRM connection and destination, so maybe
        shared by several feeds), read when this feed has none yet: :attr:`WatermarkState.legacy`. Never written or
        removed here (other feeds may still need them).
    :param clock: the current time (tests replace it).
    """

    def __init__(
        self,
        location: str | os.PathLike[str] | DocumentStore,
        *,
        key: str,
        previous: SyncWatermark | None = None,
        legacy: Iterable[DocumentStore] = (),
        clock: Any = None,
    ) -> None:
        self.store = location if isinstance(location, DocumentStore) else watermark_file(location, key)
        self.feed = watermark_digest(key)
        self.previous = previous
        self.legacy = list(legacy)
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self._carried = False

    @property
    def location(self) -> str:
        """Where the watermark is kept (for messages)."""
        return self.store.location

    def read(self) -> datetime | None:
        """The stored watermark (an aware datetime), or ``None`` when there is none (see :meth:`read_state`)."""
        state = self.read_state()
        return None if state is None else state.last_change

    def read_state(self) -> WatermarkState | None:
        """This feed's watermark, else the previous place's (carried over), else a legacy one; ``None`` if none.

        :raises SyncLedgerError: when a place cannot be read (not when what it holds is malformed: that is ignored).
        """
        state = self._load(self.store, self.location, legacy=False)
        if state is not None:
            return state
        if self.previous is not None:
            state = self.previous.read_state()
            if state is not None and not state.legacy:
                self._carried = True
                log.info("Carrying the watermark over from %s to %s.", self.previous.location, self.location)
                return state
        for store in self.legacy:
            state = self._load(store, store.location, legacy=True)
            if state is not None:
                log.info(
                    "No watermark yet in %s; %s holds one of an earlier release, kept per CRM connection and "
                    "careCycle destination (maybe shared by several feeds): the read starts no later than it.",
                    self.location,
                    store.location,
                )
                return state
        return None

    def _load(self, store: DocumentStore, location: str, *, legacy: bool) -> WatermarkState | None:
        try:
            document = store.load()
        except OSError as err:
            raise SyncLedgerError(f"Cannot read the watermark {location} ({type(err).__name__}: {err}).") from err
        except ValueError:
            problem = "not JSON"
        else:
            if document is None:
                return None
            try:
                return self._parse(document, legacy=legacy)
            except ValueError as err:
                problem = str(err)
        log.warning(
            "Ignoring the watermark %s: it is not one this provider wrote (%s). The run reads from its data "
            "interval's start; the value is left as it is (delete it to silence this warning).",
            location,
            problem,
        )
        return None

    def _parse(self, document: Any, *, legacy: bool) -> WatermarkState:
        """The document as a :class:`WatermarkState` if it has exactly the provider's shape, else ``ValueError``
        naming what is wrong (never quoting a value)."""
        if not isinstance(document, dict):
            raise ValueError(f"a JSON {type(document).__name__}, not an object")
        version = 1 if legacy else WATERMARK_VERSION
        keys = {"version", "last_change", "written_at"} | (set() if legacy else {"feed", "retry"})
        if set(document) != keys:
            raise ValueError(f"its keys are not {', '.join(sorted(keys))}")
        if document["version"] != version or isinstance(document["version"], bool):
            raise ValueError(f"not a version {version} watermark")
        if not legacy and document["feed"] != self.feed:
            raise ValueError("it names another feed")
        last_change, written_at = (_utc_time(document[name], name) for name in ("last_change", "written_at"))
        if last_change > written_at:
            raise ValueError("its last_change is after its written_at")
        if written_at > self.clock() + CLOCK_SKEW:
            raise ValueError("it was written in the future")
        retry = () if legacy else _retry_ids(document["retry"])
        return WatermarkState(last_change, retry, legacy)

    def write(self, value: datetime, retry: Iterable[str] = ()) -> None:
        """Store ``value`` (an aware datetime) and the customers to try again as this feed's watermark (and remove a
        carried-over one's old copy).

        :param value: the new watermark; never after now.
        :param retry: CRM customer ids careCycle refused, to fetch and send again (at most :data:`MAX_RETRY_IDS`).
        :raises SyncLedgerError: when the place cannot be written.
        """
        if value.tzinfo is None:
            raise ValueError("the watermark must be an aware datetime")
        now = self.clock()
        state = {
            "version": WATERMARK_VERSION,
            "feed": self.feed,
            "last_change": min(value, now).astimezone(timezone.utc).isoformat(),
            "written_at": now.astimezone(timezone.utc).isoformat(),
            "retry": list(_retry_ids(list(retry))),
        }
        try:
            self.store.save(state)
        except OSError as err:
            raise SyncLedgerError(
                f"Cannot write the watermark {self.location} ({type(err).__name__}: {err}); "
                "the next run reads from the previous watermark again."
            ) from err
        if self._carried and self.previous is not None:
            self.previous.delete()
            self._carried = False

    def delete(self) -> None:
        """Remove the watermark (the next run reads from its data interval)."""
        self.store.delete()


def _utc_time(value: Any, name: str) -> datetime:
    """A stored UTC time (ISO 8601 text with a zero offset), else ``ValueError`` naming it."""
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.utcoffset() != timedelta(0):
        raise ValueError(f"its {name} is not an ISO 8601 time in UTC")
    return parsed


def _retry_ids(value: Any) -> tuple[str, ...]:
    """Customer ids to try again, checked: a list of distinct CareCloud ids, at most :data:`MAX_RETRY_IDS`."""
    if not isinstance(value, list) or len(value) > MAX_RETRY_IDS:
        raise ValueError(f"its retry entry is not a list of at most {MAX_RETRY_IDS} ids")
    if not all(isinstance(v, str) and _RETRY_ID.fullmatch(v) for v in value) or len(set(value)) != len(value):
        raise ValueError("its retry entry holds something other than distinct customer ids")
    return tuple(value)
