"""What the lead upload engine needs from its collaborators, as structural types (pure Python: no Airflow).

:class:`~airflow_provider_carecycle.sync.engine.LeadUploader` takes any object with these methods, so it runs with
a :class:`~airflow_provider_carecycle.hooks.carecycle.CareCycleHook` and a
:class:`~airflow_provider_carecycle.storage.RecordWriter` in a task, and with small stand-ins in tests.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Protocol


class LeadUploadHook(Protocol):
    """Sends leads to one careCycle (a ``CareCycleHook``).

    A hook may also have a ``limiter`` property; the uploader reads it once before its threads start, so the
    connection and the shared rate limiter are resolved on the main thread.
    """

    @property
    def destination_id(self) -> str:
        """Names where the leads go, without revealing the key (checkpoints are bound to it)."""
        ...

    def upload_leads(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """Upload 1-200 leads in one request and return the API's answer as is.

        :param records: lead records in careCycle's field names.
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


def is_document_store(value: Any) -> bool:
    """Whether ``value`` is a store object (it loads and saves one document, like the checkpoint's and the
    watermark's stores) rather than a URI or path naming where a file goes.

    :param value: a store, or a URI or path.
    """
    return callable(getattr(value, "load", None)) and callable(getattr(value, "save", None))
