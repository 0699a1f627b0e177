"""The CareCloud CRM API's error family: a sibling of the careCycle family under the transport's ``ApiError``.

Raised by :class:`~airflow_provider_carecycle.carecloud.hook.CareCloudCrmHook`. Messages never hold customer data or
credentials.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_carecycle._compat import AirflowFailException
from airflow_provider_carecycle.exceptions import ApiError, ErrorFamily


class CareCloudAPIError(ApiError):
    """An error answer (or no answer) from the CareCloud CRM API: a sibling of the careCycle family, not part of it
    (``except CareCycleAPIError`` does not catch it; ``except ApiError`` catches both).

    :param message: a readable description (never contains customer data or credentials).
    :param invalid_params: the ``error_data.invalid_params`` of a 400 answer, as ``{name, reason}`` (the
        offending ``value`` and the free-text ``message`` are dropped: they may hold an email or a phone number).
    :param kwargs: ``status``, ``code`` (the ``exception`` name) and ``retry_after``.
    """

    def __init__(self, message: str, *, invalid_params: list[dict[str, Any]] | None = None, **kwargs: Any) -> None:
        self.invalid_params = invalid_params or []
        super().__init__(message, **kwargs)

    def field_errors(self) -> list[str]:
        """The invalid parameters as ``"birthdate: invalid_value_format"`` lines (no values)."""
        return [f"{p.get('name') or '?'}: {p.get('reason') or 'invalid'}" for p in self.invalid_params]


class CareCloudAuthError(CareCloudAPIError, AirflowFailException):
    """401 (bad credentials or an expired token, after one re-login) or 403 (interface/resource not allowed)."""


class CareCloudNotFoundError(CareCloudAPIError):
    """404."""


class CareCloudValidationError(CareCloudAPIError):
    """400 (or another 4xx): see :attr:`invalid_params` and :meth:`field_errors`."""

    def details(self) -> list[str]:
        lines = self.field_errors()
        return [f"Invalid parameters: {'; '.join(lines[:10])}"] if lines else []


class CareCloudRateLimitError(CareCloudAPIError):
    """429: retried with exponential backoff and jitter (CareCloud gives no wait)."""

    RETRYABLE = True


class CareCloudRetryAfterTooLongError(CareCloudRateLimitError):
    """429 asking for a wait longer than the connection's ``max_retry_after``: raised at once, not slept through."""


class CareCloudServerError(CareCloudAPIError):
    """500/502/503/504, a dropped connection or a timeout: retried with backoff."""

    RETRYABLE = True


class CareCloudMalformedAnswerError(CareCloudServerError):
    """A success answer that is not what the API documents (not JSON, empty, no ``data.customers`` list)."""


CARECLOUD_ERRORS = ErrorFamily(
    api="CareCloud API",
    base=CareCloudAPIError,
    auth=CareCloudAuthError,
    not_found=CareCloudNotFoundError,
    validation=CareCloudValidationError,
    rate_limit=CareCloudRateLimitError,
    retry_after_too_long=CareCloudRetryAfterTooLongError,
    server=CareCloudServerError,
    malformed=CareCloudMalformedAnswerError,
)


__all__ = [
    "CARECLOUD_ERRORS",
    "CareCloudAPIError",
    "CareCloudAuthError",
    "CareCloudMalformedAnswerError",
    "CareCloudNotFoundError",
    "CareCloudRateLimitError",
    "CareCloudRetryAfterTooLongError",
    "CareCloudServerError",
    "CareCloudValidationError",
]
