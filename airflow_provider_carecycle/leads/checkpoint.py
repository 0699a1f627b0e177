"""A durable record of which lead-upload batches the careCycle API has acknowledged, for resuming after a crash.

The checkpoint is one small JSON document on object storage (``file://``, ``s3://``, ``gs://``, ...), rewritten
atomically (a temporary name, then a move) each time a request is answered, so a worker killed at any moment leaves
either the previous or the new version, never half of one. It holds no records: only the input's fingerprint,
batch numbers, positions inside batches and, for API rejections, the API's reason text (which, like the rejected
file, may quote an offending value: keep the checkpoint where the rejected file goes).

Layout::

    {"version": 1, "fingerprint": "<sha256>", "batch_size": 200, "batches": 50,
     "done": [0, 1, 4],                                   # batches fully settled
     "partial": {"3": [0, 1, 2, ...]},                    # positions settled in a batch still in progress
     "rejected": {"1": [[17, "sourceId", "api_error", "API: Source not found"]]}}

A position is *settled* when the API accepted it (200) or rejected it for good (a per-record error, or a
``VALIDATION_ERROR`` isolated to it). Rejections whose record the API did not name carry ``null`` as position.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Iterable
from typing import Any

from airflow_provider_carecycle.storage import to_path

log = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1

#: ``(position or None, field or None, code, reason)``: one API rejection as stored in the checkpoint.
StoredRejection = tuple[int | None, str | None, str, str]


class UploadCheckpoint:
    """The acknowledged batches of one upload, kept at ``uri``.

    A checkpoint written for another input (a different fingerprint or batch size) is ignored, and the upload
    starts afresh; the old document is replaced at the first acknowledgement.

    :param uri: where the checkpoint lives (an ``ObjectStoragePath``-style URI or a local path).
    :param fingerprint: the sha256 of the normalised, deduplicated batches in order (see the upload engine).
    :param batch_size: the batch size the batches were cut with.
    :param batches: how many batches the input has.
    """

    def __init__(self, uri: str, *, fingerprint: str, batch_size: int, batches: int) -> None:
        self.path = to_path(uri)
        self.fingerprint = fingerprint
        self.batch_size = batch_size
        self.batches = batches
        self.resumed = False
        self._lock = threading.Lock()
        self._done: set[int] = set()
        self._partial: dict[int, set[int]] = {}
        self._rejected: dict[int, list[StoredRejection]] = {}
        self._load()

    # -- reading -------------------------------------------------------------------------------------------------

    def _load(self) -> None:
        if not self.path.exists():
            return
        try:
            state = json.loads(self.path.read_text())
        except (ValueError, OSError) as err:
            log.warning("Ignoring unreadable checkpoint %s (%s); starting afresh.", self.path, type(err).__name__)
            return
        if (
            not isinstance(state, dict)
            or state.get("version") != CHECKPOINT_VERSION
            or state.get("fingerprint") != self.fingerprint
            or state.get("batch_size") != self.batch_size
        ):
            log.info("Checkpoint %s was written for a different input; starting afresh.", self.path)
            return
        self._done = {int(b) for b in state.get("done", [])}
        self._partial = {int(b): {int(p) for p in ps} for b, ps in state.get("partial", {}).items()}
        self._rejected = {int(b): [(r[0], r[1], r[2], r[3]) for r in rs] for b, rs in state.get("rejected", {}).items()}
        self.resumed = bool(self._done or self._partial)

    def is_done(self, batch: int) -> bool:
        """Whether every record of ``batch`` is settled (accepted or rejected for good).

        :param batch: the batch number.
        """
        return batch in self._done

    def settled(self, batch: int) -> set[int]:
        """The settled positions of a batch that is still in progress.

        :param batch: the batch number.
        """
        return set(self._partial.get(batch, ()))

    def rejections(self, batch: int) -> list[StoredRejection]:
        """The API rejections recorded for ``batch``.

        :param batch: the batch number.
        """
        return list(self._rejected.get(batch, ()))

    @property
    def done_count(self) -> int:
        """How many batches are fully settled."""
        return len(self._done)

    # -- writing -------------------------------------------------------------------------------------------------

    def record(
        self, batch: int, positions: Iterable[int], rejections: Iterable[StoredRejection], *, batch_len: int
    ) -> None:
        """Record settled positions of ``batch`` (and their rejections) and rewrite the checkpoint durably.

        :param batch: the batch number.
        :param positions: positions (0-based, inside the batch) the API has just settled.
        :param rejections: the API rejections among them.
        :param batch_len: how many records the batch has (it is done when all are settled).
        """
        with self._lock:
            settled = self._partial.setdefault(batch, set())
            settled.update(positions)
            new = list(rejections)
            if new:
                self._rejected.setdefault(batch, []).extend(new)
            if len(settled) >= batch_len:
                self._done.add(batch)
                del self._partial[batch]
            self._write()

    def _state(self) -> dict[str, Any]:
        return {
            "version": CHECKPOINT_VERSION,
            "fingerprint": self.fingerprint,
            "batch_size": self.batch_size,
            "batches": self.batches,
            "done": sorted(self._done),
            "partial": {str(b): sorted(ps) for b, ps in sorted(self._partial.items())},
            "rejected": {str(b): [list(r) for r in rs] for b, rs in sorted(self._rejected.items())},
        }

    def _write(self) -> None:
        text = json.dumps(self._state(), separators=(",", ":"))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.parent / f".{self.path.name}.{uuid.uuid4().hex[:12]}.partial"
        tmp.write_text(text)
        tmp.rename(self.path)
