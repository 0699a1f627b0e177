"""What the lead sync needs from its collaborators, as structural types (pure Python: no Airflow).

* :class:`LeadUploadHook` and :class:`RecordSink`: what
  :class:`~airflow_provider_carecycle.sync.engine.LeadUploader` sends leads through and writes rejected records to
  (a :class:`~airflow_provider_carecycle.hooks.carecycle.CareCycleHook` and a
  :class:`~airflow_provider_carecycle.storage.RecordWriter` in a task, small stand-ins in tests).
* :class:`DocumentStore` and :class:`FolderStore`: where what outlives a run is kept. A document store holds one JSON
  document (the upload checkpoint, a CRM watermark); a folder store holds the sync ledger's files. The provider's
  own are in :mod:`~airflow_provider_carecycle.sync.stores` (a file on object storage, a folder on object storage)
  and :mod:`~airflow_provider_carecycle.sync.state_store` (Airflow 3.3's state stores); any object with these
  members works.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any, Protocol, runtime_checkable


class LeadUploadHook(Protocol):
    """Sends leads to one careCycle (a ``CareCycleHook``).

    A hook may also have a ``limiter`` property; the uploader reads it once before its threads start, so the
    connection and the shared rate limiter are resolved on the main thread.
    """

    @property
    def destination_id(self) -> str:
        """Names where the leads go, without revealing the key (checkpoints are bound to it)."""
        ...

    def upload_lead_texts(self, texts: Sequence[str]) -> dict[str, Any]:
        """Upload 1-200 leads in one request and return the API's answer as is.

        :param texts: each lead as one JSON object in careCycle's field names, sent as it is.
        """
        ...


class RecordSink(Protocol):
    """Where rejected records go: a ``RecordWriter`` used as a context manager, or a stand-in that counts."""

    #: the records written so far
    count: int

    def __enter__(self) -> RecordSink: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> object: ...

    def write_json_text(self, text: str) -> None:
        """Write one rejected-file line, JSON text built by
        :func:`~airflow_provider_carecycle.leads.rejection.rejected_line`.

        :param text: one JSON object, without a line break.
        """
        ...


@runtime_checkable
class DocumentStore(Protocol):
    """One small JSON document, loaded and saved whole: the upload checkpoint's, or a CRM watermark's.

    A store may also say, in a ``keeps_api_text`` attribute, whether it is a place for careCycle's per-record reason
    text, which may quote a value (a file the user keeps like the rejected file: yes; Airflow's metadata DB: no);
    the checkpoint takes a store that does not say as no.
    """

    #: names the place in messages (never a secret)
    location: str

    def load(self) -> Any:
        """The stored document (parsed JSON), or ``None`` when there is none yet.

        :raises ValueError: when what is stored is not JSON.
        :raises OSError: when it cannot be read.
        """
        ...

    def save(self, state: dict[str, Any]) -> None:
        """Replace the stored document with ``state``, so a reader sees the old or the new one, never half.

        :param state: the document (JSON-serialisable).
        """
        ...

    def delete(self) -> None:
        """Remove the document; a missing one is not an error."""
        ...


@runtime_checkable
class FolderStore(Protocol):
    """A folder of files, the few operations the sync ledger needs from it."""

    #: names the place in messages
    location: str

    def list_names(self) -> list[str]:
        """Names of the files in the folder (an absent folder has none)."""
        ...

    def download(self, name: str, local_path: str) -> None:
        """Copy file ``name`` to ``local_path``; ``FileNotFoundError`` when it is gone."""
        ...

    def upload(self, local_path: str, name: str) -> None:
        """Publish ``local_path`` as ``name`` atomically: a reader sees all of it or nothing."""
        ...

    def delete(self, name: str) -> None:
        """Remove file ``name``; a missing file is not an error."""
        ...
