"""Where the lead sync keeps what outlives a run, on object storage or the local disk, written one way.

* :class:`FileDocumentStore`: one JSON document in one file (a
  :class:`~airflow_provider_carecycle.sync.protocols.DocumentStore`): the upload checkpoint at ``checkpoint_path``
  or in the ledger folder (a checkpoint too big for the task state store), a CRM watermark next to the ledger.
* :class:`ObjectStorageFolderStore`: the sync ledger's folder (a
  :class:`~airflow_provider_carecycle.sync.protocols.FolderStore`).

Both write through :func:`_write_privately`, the one private atomic write: the bytes go to a hidden
``.<name>.<random>.partial`` next to the target, created ``0600`` and fsynced on the local disk, then renamed onto
the target; a failure removes the temporary file. A reader (or a worker killed at any moment) sees the old file or the
new one, never half of one.

No Airflow at import time: object storage paths (:func:`airflow_provider_carecycle.storage.to_path`) are made when a
store is built.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

from airflow_provider_carecycle.scratch import partial_name
from airflow_provider_carecycle.sync.protocols import DocumentStore, FolderStore

if TYPE_CHECKING:
    from airflow_provider_carecycle._compat import ObjectStoragePath

#: ``ObjectStoragePath`` protocols that are the local disk (files there get mode 0600 and an fsync)
_LOCAL_PROTOCOLS = ("file", "local")
_COPY_CHUNK = 1 << 20


class SyncLedgerError(RuntimeError):
    """The sync ledger (or a CRM watermark kept with it) cannot be read or written (the message names the place and
    what to do)."""


def _object_path(location: Any) -> ObjectStoragePath:
    from airflow_provider_carecycle.storage import to_path  # here: the sync modules import no Airflow

    return to_path(location)


def _is_local(path: ObjectStoragePath) -> bool:
    return getattr(path, "protocol", None) in _LOCAL_PROTOCOLS


def _write_privately(path: ObjectStoragePath, data: IO[bytes]) -> None:
    """Replace ``path`` with the bytes of ``data`` atomically, through a hidden temporary file next to it.

    On the local disk the temporary file is created ``0600`` (whatever the umask) and fsynced before the rename, and
    the folder is created if missing; on object storage the object is written under the temporary name, then moved.

    :param path: the file to write.
    :param data: its new contents, read from the current position to the end.
    """
    if _is_local(path):
        final = path.path
        folder = os.path.dirname(final)
        os.makedirs(folder or ".", exist_ok=True)
        temporary = os.path.join(folder, partial_name(os.path.basename(final)))
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(handle, "wb") as out:
                shutil.copyfileobj(data, out, _COPY_CHUNK)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, final)
        except BaseException:
            _quietly(lambda: os.unlink(temporary))
            raise
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    target = path.parent / partial_name(path.name)
    try:
        with target.open("wb") as out:
            shutil.copyfileobj(data, out, _COPY_CHUNK)
        target.rename(path)
    except BaseException:
        _quietly(lambda: target.unlink())
        raise


def _quietly(action: Callable[[], object]) -> None:
    try:
        action()
    except OSError:
        pass


class FileDocumentStore:
    """A JSON document kept in one file on object storage (``s3://``, ``gs://``, ...) or the local disk.

    It is read whole and replaced whole (:func:`_write_privately`), so a worker killed while saving leaves the old
    document or the new one.

    :param uri: the file: an ``ObjectStoragePath``-style URI, a local path, or a path object.
    :param location: how messages name it (default: the path).
    :param separators: ``json.dumps`` separators of the file (the checkpoint is compact; the watermark file has kept
        ``json.dumps``'s own spacing since it was first written).
    """

    #: a file the user keeps like the rejected file: careCycle's per-record reason text may go in it
    keeps_api_text = True

    def __init__(self, uri: Any, *, location: str | None = None, separators: tuple[str, str] = (",", ":")) -> None:
        self.path = _object_path(uri)
        self.location = location if location is not None else str(self.path)
        self.separators = separators

    @classmethod
    def in_folder(cls, folder: Any, name: str, **kwargs: Any) -> FileDocumentStore:
        """The document ``name`` in ``folder`` (a URI, a local path or a path object, whose storage options it keeps).

        :param folder: the folder.
        :param name: the file's name.
        :param kwargs: as for the constructor; ``location`` defaults to ``<folder as given>/<name>``.
        """
        kwargs.setdefault("location", f"{folder}/{name}")
        return cls(_object_path(folder) / name, **kwargs)

    def __str__(self) -> str:
        return self.location

    def load(self) -> Any:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        return json.loads(text)

    def save(self, state: dict[str, Any]) -> None:
        _write_privately(self.path, io.BytesIO(json.dumps(state, separators=self.separators).encode()))

    def delete(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


def document_store(location: Any) -> DocumentStore:
    """``location`` if it is a :class:`~airflow_provider_carecycle.sync.protocols.DocumentStore`, else the
    :class:`FileDocumentStore` the URI, path or path object names."""
    return location if isinstance(location, DocumentStore) else FileDocumentStore(location)


class ObjectStorageFolderStore:
    """A folder on object storage (or a local folder), through ``ObjectStoragePath``: the sync ledger's files.

    :param uri: the folder: ``s3://bucket/ledgers/feed``, ``file:///data/ledger``, ``/data/ledger``.
    """

    def __init__(self, uri: Any) -> None:
        self.folder = _object_path(uri)
        self.location = str(uri)

    def list_names(self) -> list[str]:
        if not self.folder.exists():
            return []
        if not self.folder.is_dir():
            raise SyncLedgerError(
                f"sync_state_path {self.location} is a file; it must be a folder (the ledger keeps several files)."
            )
        return sorted(child.name for child in self.folder.iterdir())

    def download(self, name: str, local_path: str) -> None:
        with (self.folder / name).open("rb") as source, open(local_path, "wb") as target:
            shutil.copyfileobj(source, target, _COPY_CHUNK)

    def upload(self, local_path: str, name: str) -> None:
        with open(local_path, "rb") as data:
            _write_privately(self.folder / name, data)

    def delete(self, name: str) -> None:
        try:
            (self.folder / name).unlink()
        except FileNotFoundError:
            pass


def folder_store(location: Any) -> FolderStore:
    """``location`` if it is a :class:`~airflow_provider_carecycle.sync.protocols.FolderStore`, else the
    :class:`ObjectStorageFolderStore` the URI, path or path object names."""
    return location if isinstance(location, FolderStore) else ObjectStorageFolderStore(location)
