"""The careCycle exception family.

Every error the hook raises for an API answer is a :class:`CareCycleAPIError` carrying what the API said: HTTP
status, ``code``, ``message``, the validation ``errors`` and ``failed_records``, and ``retry_after``. Messages never
contain record contents or the API key.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_carecycle._compat import AirflowException, AirflowFailException


class CareCycleAPIError(AirflowException):
    """An error answer (or no answer) from the careCycle API.

    :param message: a readable, PHI-free description.
    :param status: the HTTP status, or ``None`` when no answer arrived.
    :param code: the API's error ``code`` (``UNAUTHORIZED``, ``VALIDATION_ERROR``, ...).
    :param errors: the per-field validation errors of a ``VALIDATION_ERROR`` answer.
    :param failed_records: the ``failedRecords`` of a lead upload ``VALIDATION_ERROR`` answer.
    :param retry_after: seconds to wait before retrying, from a 429 answer.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        failed_records: list[dict[str, Any]] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.errors = errors or []
        self.failed_records = failed_records or []
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        """Whether the same request may succeed if sent again later."""
        return False


class CareCycleAuthError(CareCycleAPIError, AirflowFailException):
    """401 ``UNAUTHORIZED`` or 403 ``FORBIDDEN``: a key problem that retrying cannot fix, so the task fails at once."""


class CareCycleNotFoundError(CareCycleAPIError):
    """404 ``NOT_FOUND``."""


class CareCycleValidationError(CareCycleAPIError):
    """400 ``VALIDATION_ERROR`` (or another 4xx the API rejected as invalid)."""

    def field_errors(self) -> list[str]:
        """The validation errors as ``"records.3.dateOfBirth: Invalid date"`` lines (paths and messages only)."""
        return [
            "{}: {}".format(".".join(str(p) for p in err.get("path") or []) or "(request)", err.get("message", ""))
            for err in self.errors
        ]


class CareCycleRateLimitError(CareCycleAPIError):
    """429 ``RATE_LIMIT_EXCEEDED``; ``retry_after`` says how long to wait."""

    @property
    def retryable(self) -> bool:
        return True


class CareCycleServerError(CareCycleAPIError):
    """A 5xx answer, a dropped connection or a timeout: transient, retried with backoff."""

    @property
    def retryable(self) -> bool:
        return True
