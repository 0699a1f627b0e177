"""Airflow's own state stores (AIP-103, Airflow 3.3+), used by the lead uploads when the running Airflow has them.

* :class:`TaskStateCheckpointStore`: an upload without a ``checkpoint_path`` keeps its resume state (the upload
  checkpoint's document) in ``context["task_state_store"]``, which a retried try of the same task instance reads
  back; it is deleted when the upload finishes.
* :func:`crm_watermark`: ``incremental=True`` keeps the CRM watermark in ``context["asset_state_store"]`` of the
  careCycle leads asset (``carecycle://<host>/leads``) the task declares, under a key naming the feed (the CRM
  connection and query, and the careCycle destination). The task state store is per DAG run, so it cannot carry a
  watermark from one run to the next; the asset state store is not.

Anyone with edit rights can write both stores (REST API, UI), so what is read from them is followed only when it has
the provider's own shape: a checkpoint reference only when it names the upload's own overflow file, a watermark only
when it is exactly the document the provider writes (see :class:`~airflow_provider_carecycle.sync.ledger.
SyncWatermark`). Anything else is ignored with a warning, and the provider never deletes an object it did not write.

Whether the stores exist is decided at run time from the task context: Airflow 2.10, 2.11 and 3.0-3.2 have neither
key, and the callers then keep the checkpoint at ``checkpoint_path`` (or nowhere) and the watermark next to the sync
ledger, as before. Nothing here imports Airflow until a store is used (``NEVER_EXPIRE`` and ``conf`` come through
:mod:`airflow_provider_carecycle._compat`).

.. seealso:: ``docs/operators/sync.md``
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from typing import Any

from airflow_provider_carecycle.sync.stores import FileDocumentStore
from airflow_provider_carecycle.sync.watermark import SyncWatermark, watermark_digest, watermark_file

log = logging.getLogger(__name__)

#: the task state store key of an upload's checkpoint
CHECKPOINT_KEY = "carecycle_upload_checkpoint"
#: the stored value when the checkpoint lives in an object instead: ``{"carecycle_checkpoint_ref": "<uri>"}``
CHECKPOINT_REF = "carecycle_checkpoint_ref"
#: the overflow object's name: ``checkpoint-<hash of the task instance and destination>.json`` in sync_state_path
OVERFLOW_PREFIX, OVERFLOW_SUFFIX = "checkpoint-", ".json"
#: the asset state store key prefix of a CRM watermark (followed by a hash of the feed: CRM connection and query,
#: careCycle destination)
WATERMARK_KEY_PREFIX = "carecloud_watermark_"
#: Airflow's default ``[state_store] max_value_storage_bytes``
DEFAULT_MAX_VALUE_BYTES = 65535


def task_state_store(context: Mapping[str, Any]) -> Any | None:
    """``context["task_state_store"]`` on Airflow 3.3+, else ``None``.

    :param context: the task's context.
    """
    return context.get("task_state_store")


def _max_value_bytes() -> int:
    """``[state_store] max_value_storage_bytes`` (0: no limit): above it Airflow warns that a value is too big."""
    from airflow_provider_carecycle._compat import conf

    return conf.getint("state_store", "max_value_storage_bytes", fallback=DEFAULT_MAX_VALUE_BYTES)


def _scope_hash(context: Mapping[str, Any], destination: str | None) -> str:
    """A short hash naming the task instance (DAG, run, task, map index) and the careCycle destination, for the
    overflow object's name."""
    ti = context.get("ti")
    parts = [str(getattr(ti, name, "")) for name in ("dag_id", "run_id", "task_id", "map_index")]
    parts.append(destination or "")
    return hashlib.blake2b("\n".join(parts).encode(), digest_size=8, person=b"ccsync-cp").hexdigest()


class TaskStateCheckpointStore:
    """The upload checkpoint in the task state store (a
    :class:`~airflow_provider_carecycle.sync.protocols.DocumentStore`).

    The store is a row in Airflow's metadata DB, written at every answered request. A checkpoint up to
    ``[state_store] max_value_storage_bytes`` (64 KiB by default; a 100,000-lead upload's is about 2-5 KiB, more
    only with many API rejections, whose reasons it keeps) is stored as is. A bigger one, when the upload has a
    ``sync_state_path``, is written as ``checkpoint-<hash>.json`` in that folder (atomically, like a
    ``checkpoint_path`` file; the hash names the task instance and the destination) and the store holds only its
    URI; without a folder it is stored as is all the same (the DB column takes it; Airflow logs a warning). Every
    value is written with ``NEVER_EXPIRE``, so the ``[state_store] default_retention_days`` clean-up cannot drop it
    between two tries; :meth:`delete` removes it when the upload finishes, and the row goes with its DAG run
    otherwise (``airflow db clean``).

    Anyone with edit rights can write the task state store (REST API, UI). A reference is followed only when it
    names exactly this upload's own overflow file (that name, under ``sync_state_path``); any other is ignored with
    a warning (the upload starts afresh) and the object it names is neither read nor deleted: :meth:`delete` removes
    only the overflow file this upload writes.

    :param store: ``context["task_state_store"]``.
    :param overflow: where a checkpoint too big for the store goes (an object URI or path), or ``None``.
    :param max_value_bytes: the largest checkpoint stored as is (0: any); default: Airflow's setting.
    :param retention: the values' retention; default: Airflow's ``NEVER_EXPIRE``.
    """

    #: a row of Airflow's metadata DB, readable in the UI: careCycle's free-text reasons stay out
    keeps_api_text = False
    location = f"the task state store (key {CHECKPOINT_KEY})"

    def __init__(
        self, store: Any, *, overflow: Any = None, max_value_bytes: int | None = None, retention: Any = None
    ) -> None:
        self.task_state_store = store
        self.overflow = overflow
        self.max_value_bytes = _max_value_bytes() if max_value_bytes is None else max_value_bytes
        self.retention = retention
        self._referenced: str | None = None
        self._objects: set[str] = set()
        self._warned = False

    @classmethod
    def from_context(
        cls, context: Mapping[str, Any], *, sync_state_path: Any = None, destination: str | None = None
    ) -> TaskStateCheckpointStore | None:
        """The store for this task instance, or ``None`` on an Airflow without a task state store.

        :param context: the task's context.
        :param sync_state_path: the upload's ledger folder, which takes a checkpoint too big for the store.
        :param destination: the careCycle the leads go to (the hook's ``destination_id``): the overflow file's name
            is bound to it.
        """
        store = task_state_store(context)
        if store is None:
            return None
        overflow = None
        if sync_state_path is not None:
            name = f"{OVERFLOW_PREFIX}{_scope_hash(context, destination)}{OVERFLOW_SUFFIX}"
            overflow = f"{str(sync_state_path).rstrip('/')}/{name}"
        return cls(store, overflow=overflow)

    def __str__(self) -> str:
        return self.location

    def load(self) -> Any:
        value = self.task_state_store.get(CHECKPOINT_KEY)
        if not (isinstance(value, dict) and CHECKPOINT_REF in value):
            return value
        if set(value) == {CHECKPOINT_REF} and self.overflow is not None and value[CHECKPOINT_REF] == self.overflow:
            self._referenced = self.overflow
            self._objects.add(self.overflow)  # this upload's own file, written by an earlier try
            return FileDocumentStore(self.overflow).load()
        log.warning(
            "Ignoring the checkpoint reference in %s: it does not name this upload's own overflow file (%s under "
            "sync_state_path, named for this task instance and destination), so the provider did not write it. The "
            "upload starts afresh; the object it names is neither read nor deleted.",
            self,
            f"{OVERFLOW_PREFIX}<hash>{OVERFLOW_SUFFIX}",
        )
        return None

    def save(self, state: dict[str, Any]) -> None:
        from airflow_provider_carecycle._compat import never_expire

        retention = self.retention if self.retention is not None else never_expire()
        size = len(json.dumps(state, separators=(",", ":")))
        if self.max_value_bytes and size > self.max_value_bytes:
            if self.overflow is not None:
                FileDocumentStore(self.overflow).save(state)
                self._objects.add(str(self.overflow))
                if self._referenced != str(self.overflow):
                    self.task_state_store.set(CHECKPOINT_KEY, {CHECKPOINT_REF: str(self.overflow)}, retention=retention)
                    self._referenced = str(self.overflow)
                return
            if not self._warned:
                self._warned = True
                log.warning(
                    "The upload checkpoint is %d bytes, above [state_store] max_value_storage_bytes=%d; it is kept "
                    "in the task state store all the same. Set sync_state_path (it then goes to that folder) or "
                    "checkpoint_path to keep it out of the metadata DB.",
                    size,
                    self.max_value_bytes,
                )
        self.task_state_store.set(CHECKPOINT_KEY, state, retention=retention)
        self._referenced = None

    def delete(self) -> None:
        """Forget the checkpoint (the upload finished): the store's key and this upload's own overflow file, if it
        wrote one (in this try or an earlier one). A failure is logged, not raised: a leftover checkpoint is bound to
        its input and only ever skips what careCycle acknowledged."""
        try:
            self.task_state_store.delete(CHECKPOINT_KEY)
            for uri in sorted(self._objects):
                FileDocumentStore(uri).delete()
        except Exception as err:  # the upload itself succeeded: do not fail the task over the clean-up
            log.warning("Could not delete the upload checkpoint in %s (%s).", self, type(err).__name__)


# -- the CRM watermark ---------------------------------------------------------------------------------------------


def declares_leads_asset(assets: Any) -> bool:
    """Whether ``assets`` (a task's inlets and outlets) hold a ``carecycle://<host>/leads`` asset, at DAG parse time.

    :param assets: the declared inlets and outlets.
    """
    return any(_leads_asset_uri(asset) is not None for asset in assets or ())


def _leads_asset_uri(asset: Any) -> str | None:
    uri = getattr(asset, "uri", None)
    if isinstance(uri, str) and uri.startswith("carecycle://") and uri.rstrip("/").endswith("/leads"):
        return uri.rstrip("/")
    return None


def leads_asset_state(operator: Any, context: Mapping[str, Any], base_url: str) -> Any | None:
    """The asset state store of the ``carecycle://<host>/leads`` asset the task declares for ``base_url``, or
    ``None`` (an Airflow before 3.3, or no such inlet or outlet).

    :param operator: the running task.
    :param context: its context.
    :param base_url: the careCycle base URL the leads go to.
    """
    from airflow_provider_carecycle.assets import leads_uri

    stores = context.get("asset_state_store")
    if stores is None:
        return None
    wanted = leads_uri(base_url)
    for asset in [*(getattr(operator, "outlets", None) or []), *(getattr(operator, "inlets", None) or [])]:
        if _leads_asset_uri(asset) == wanted:
            try:
                return stores[asset]
            except (KeyError, TypeError):
                continue
    return None


class AssetStateWatermarkStore:
    """A watermark document in an asset's state store (a
    :class:`~airflow_provider_carecycle.sync.protocols.DocumentStore`).

    :param accessor: ``context["asset_state_store"][asset]``.
    :param key: names the source and destination the watermark is for (hashed into the store's key).
    :param asset_uri: the asset's URI, for messages.
    """

    def __init__(self, accessor: Any, *, key: str, asset_uri: str) -> None:
        self.accessor = accessor
        self.key = f"{WATERMARK_KEY_PREFIX}{watermark_digest(key)}"
        self.location = f"the asset state store of {asset_uri} (key {self.key})"

    def load(self) -> Any:
        return self.accessor.get(self.key)

    def save(self, state: dict[str, Any]) -> None:
        self.accessor.set(self.key, state)

    def delete(self) -> None:
        self.accessor.delete(self.key)


def crm_watermark(
    operator: Any,
    context: Mapping[str, Any],
    *,
    key: str,
    base_url: str,
    sync_state_path: Any,
    legacy_key: str | None = None,
) -> SyncWatermark:
    """Where ``incremental=True`` keeps its feed's watermark: the leads asset's state store on Airflow 3.3+ when the
    task declares the asset (a watermark of this feed still next to the ledger is carried over once, then removed),
    else the ledger folder.

    :param operator: the running task.
    :param context: its context.
    :param key: names the feed (the CRM connection and query, and the careCycle destination).
    :param base_url: the careCycle base URL the leads go to.
    :param sync_state_path: the ledger folder, or ``None``.
    :param legacy_key: the key an earlier release kept the watermark under (per CRM connection and destination):
        its watermarks, in either place, are read when this feed has none yet (see
        :attr:`~airflow_provider_carecycle.sync.watermark.WatermarkState.legacy`), never written or removed.
    :raises ValueError: when there is neither.
    """
    from airflow_provider_carecycle.assets import leads_uri

    accessor = leads_asset_state(operator, context, base_url)
    legacy: list[Any] = []
    if legacy_key is not None:
        if accessor is not None:
            legacy.append(AssetStateWatermarkStore(accessor, key=legacy_key, asset_uri=leads_uri(base_url)))
        if sync_state_path is not None:
            legacy.append(watermark_file(sync_state_path, legacy_key))
    if accessor is not None:
        previous = None if sync_state_path is None else SyncWatermark(sync_state_path, key=key)
        store = AssetStateWatermarkStore(accessor, key=key, asset_uri=leads_uri(base_url))
        return SyncWatermark(store, key=key, previous=previous, legacy=legacy)
    if sync_state_path is None:
        raise ValueError(
            "incremental=True has nowhere to keep its watermark: this Airflow has no asset state store for "
            f"{leads_uri(base_url)} (Airflow 3.3+, with that asset among the task's outlets), so set sync_state_path."
        )
    return SyncWatermark(sync_state_path, key=key, legacy=legacy)
