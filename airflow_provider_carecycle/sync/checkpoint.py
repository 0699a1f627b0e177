"""A durable record of which lead-upload batches the careCycle API has acknowledged, for resuming after a crash.

The checkpoint is one small JSON document, rewritten each time a request is answered, in a
:class:`~airflow_provider_carecycle.sync.protocols.DocumentStore`: a
:class:`~airflow_provider_carecycle.sync.stores.FileDocumentStore` at ``checkpoint_path`` on object storage
(``file://``, ``s3://``, ``gs://``, ...), replaced atomically (a temporary name, then a move), so a worker killed at any
moment leaves either the previous or the new version, never half of one; on Airflow 3.3+ without a ``checkpoint_path``,
:class:`~airflow_provider_carecycle.sync.state_store.TaskStateCheckpointStore` in the task state store. Both hold the
same document and :class:`UploadCheckpoint` applies the same bindings and shape checks to either. It holds no records:
only the input's fingerprint, a hash naming the destination, batch numbers, positions inside batches and, for API
rejections, the API's reason text (which, like the rejected file, may quote an offending value: keep the checkpoint
where the rejected file goes). A store outside the user's files (the task state store, in Airflow's metadata DB) gets
careCycle's free-text reasons replaced (:meth:`Rejection.without_api_text`). On a local filesystem it and its temporary
files are created ``0600``.

Layout::

    {"version": 3, "fingerprint": "<sha256>", "destination": "<hash of base URL and API key>",
     "batch_size": 200, "batches": 50,
     "done": [0, 1, 4],                                   # batches fully settled
     "partial": {"3": [0, 1, 2, ...]},                    # positions settled in a batch still in progress
     "rejected": {"1": [{"field": "sourceId", "code": "api_error", "reason": "API: Source not found",
                         "position": 17}]}}

A rejection is stored in the JSON form of :class:`~airflow_provider_carecycle.leads.rejection.Rejection`, the one
the rejected file carries too; here it must have a ``position``. A checkpoint of an earlier layout (version 2 held
each rejection as a ``[position, field, code, reason]`` list) is ignored with a warning, like any checkpoint of
another version: the upload starts afresh and re-sends every batch (careCycle's upload is an upsert by
``externalId``, so nothing is duplicated).

A position is *settled* when the API accepted it (an answer accounting for every record sent) or rejected it for
good (a per-record error tied to it, or a ``VALIDATION_ERROR`` isolated to it).

A checkpoint is bound to its input (the fingerprint and batch size) and to its destination (the base URL and a hash
of the API key, never the key): one written for another input or another careCycle (staging, then production) is
ignored, and so is one that is not a well-formed checkpoint (with a warning). The upload then starts afresh, and the
old document is replaced before the first request, which also proves the place writable.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from airflow_provider_carecycle.leads.rejection import Rejection
from airflow_provider_carecycle.sync.protocols import DocumentStore
from airflow_provider_carecycle.sync.stores import document_store

log = logging.getLogger(__name__)

CHECKPOINT_VERSION = 3


class CheckpointShapeError(ValueError):
    """A checkpoint document that is valid JSON but not a well-formed upload checkpoint."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _index(value: Any, limit: int, what: str) -> int:
    """``value`` as an index from 0 to ``limit - 1``; batch numbers arrive as JSON object keys, i.e. text."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not _is_int(value) or not 0 <= value < limit:
        raise CheckpointShapeError(f"{what} must be a whole number from 0 to {limit - 1}")
    return value


def _mapping(state: dict[str, Any], key: str) -> dict[str, Any]:
    value = state[key]
    if not isinstance(value, dict):
        raise CheckpointShapeError(f"{key!r} must be an object")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise CheckpointShapeError(f"{what} must be a list")
    return value


def _rejection(value: Any, batch_size: int) -> Rejection:
    try:
        rejection = Rejection.from_json(value)
    except ValueError as err:
        raise CheckpointShapeError(str(err)) from None
    if rejection.position is None:
        raise CheckpointShapeError("a rejection must have a position")
    _index(rejection.position, batch_size, "a rejection's position")
    return rejection


class UploadCheckpoint:
    """The acknowledged batches of one upload to one destination, kept in ``store``.

    Constructing it reads the document (ignoring one for another input or destination, or of the wrong shape) and
    writes the state back at once, so an unwritable place fails before any lead is sent.

    :param store: where the checkpoint lives: a :class:`~airflow_provider_carecycle.sync.protocols.DocumentStore`,
        or an ``ObjectStoragePath``-style URI or local path (a
        :class:`~airflow_provider_carecycle.sync.stores.FileDocumentStore`).
    :param fingerprint: the sha256 of the normalised, deduplicated batches in order (see the upload engine).
    :param batch_size: the batch size the batches were cut with.
    :param batches: how many batches the input has.
    :param destination: names the careCycle the leads go to (the hook's ``destination_id``: a hash of the base URL
        and the API key).
    :raises OSError: when the checkpoint file cannot be written.
    """

    def __init__(
        self, store: str | DocumentStore, *, fingerprint: str, batch_size: int, batches: int, destination: str
    ) -> None:
        self.store = document_store(store)
        self.fingerprint = fingerprint
        self.batch_size = batch_size
        self.batches = batches
        self.destination = destination
        self.resumed = False
        self._lock = threading.Lock()
        self._done: set[int] = set()
        self._partial: dict[int, set[int]] = {}
        self._rejected: dict[int, list[Rejection]] = {}
        self._load()
        try:
            self._write()
        except OSError as err:
            raise OSError(
                f"Cannot write the upload checkpoint {self.store} ({type(err).__name__}: {err.strerror or err}). "
                "Nothing was sent. Point checkpoint_path at a file in a writable directory (or drop it)."
            ) from err

    # -- reading -------------------------------------------------------------------------------------------------

    def _load(self) -> None:
        try:
            state = self.store.load()
        except (ValueError, OSError) as err:
            log.warning("Ignoring unreadable checkpoint %s (%s); starting afresh.", self.store, type(err).__name__)
            return
        if state is None:
            return
        if isinstance(state, dict) and state.get("version") != CHECKPOINT_VERSION:
            log.warning(
                "Checkpoint %s was written by another version of the provider (or is not a checkpoint); "
                "starting afresh.",
                self.store,
            )
            return
        if isinstance(state, dict) and (
            state.get("fingerprint") != self.fingerprint or state.get("batch_size") != self.batch_size
        ):
            log.info("Checkpoint %s was written for a different input; starting afresh.", self.store)
            return
        if isinstance(state, dict) and state.get("destination") != self.destination:
            log.warning(
                "Checkpoint %s was written for another careCycle destination (another base URL or API key); "
                "starting afresh: every batch is sent to this one.",
                self.store,
            )
            return
        try:
            done, partial, rejected = self._parse(state)
        except (CheckpointShapeError, KeyError) as err:
            problem = f"missing {err}" if isinstance(err, KeyError) else str(err)
            log.warning("Checkpoint %s is not a valid upload checkpoint (%s); starting afresh.", self.store, problem)
            return
        self._done, self._partial, self._rejected = done, partial, rejected
        self.resumed = bool(self._done or self._partial)

    def _parse(self, state: Any) -> tuple[set[int], dict[int, set[int]], dict[int, list[Rejection]]]:
        """The settled state of a checkpoint of this input and destination, checked field by field."""
        if not isinstance(state, dict):
            raise CheckpointShapeError(f"a {type(state).__name__}, not an object")
        if state["batches"] != self.batches or not _is_int(state["batches"]):
            raise CheckpointShapeError(f"'batches' must be {self.batches}")
        done = {_index(b, self.batches, "a done batch") for b in _list(state["done"], "'done'")}
        partial: dict[int, set[int]] = {}
        for key, positions in _mapping(state, "partial").items():
            batch = _index(key, self.batches, "a partial batch")
            if batch in done:
                raise CheckpointShapeError("a batch cannot be both done and partial")
            partial[batch] = {_index(p, self.batch_size, "a settled position") for p in _list(positions, "positions")}
        rejected: dict[int, list[Rejection]] = {}
        for key, entries in _mapping(state, "rejected").items():
            batch = _index(key, self.batches, "a batch with rejections")
            rejected[batch] = [_rejection(entry, self.batch_size) for entry in _list(entries, "rejections")]
            if batch not in done and not {r.position for r in rejected[batch]} <= partial.get(batch, set()):
                raise CheckpointShapeError("a rejection must be of a settled position")
        return done, partial, rejected

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

    def rejections(self, batch: int) -> list[Rejection]:
        """The API rejections recorded for ``batch``.

        :param batch: the batch number.
        """
        return list(self._rejected.get(batch, ()))

    @property
    def done_count(self) -> int:
        """How many batches are fully settled."""
        return len(self._done)

    # -- writing -------------------------------------------------------------------------------------------------

    def record(self, batch: int, positions: Iterable[int], rejections: Iterable[Rejection], *, batch_len: int) -> None:
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
            "destination": self.destination,
            "batch_size": self.batch_size,
            "batches": self.batches,
            "done": sorted(self._done),
            "partial": {str(b): sorted(ps) for b, ps in sorted(self._partial.items())},
            "rejected": {str(b): [self._stored(r).to_json() for r in rs] for b, rs in sorted(self._rejected.items())},
        }

    def _stored(self, rejection: Rejection) -> Rejection:
        """``rejection`` as this store may hold it (without careCycle's free text outside the user's files)."""
        return rejection if getattr(self.store, "keeps_api_text", False) else rejection.without_api_text()

    def _write(self) -> None:
        self.store.save(self._state())
