"""The transport's base error, the careCycle exception family, and the error of a task that was killed.

:class:`ApiError` is what the vendor-neutral transport (:mod:`airflow_provider_carecycle.hooks._http`) knows: a
message, the HTTP status, an error ``code``, ``retry_after`` and whether a retry may succeed (``retryable``). Every
error the careCycle hook raises for an API answer is a :class:`CareCycleAPIError` under it, which also carries the
validation ``errors`` and ``failed_records``; the CareCloud CRM family is its sibling, not its child. Messages never
contain record contents or the API key.

:class:`TaskKilledError` is how every long-running task of the provider (a lead upload, an export) ends after
``on_kill``: it stopped where it was safe to, and the message says how far it got.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from airflow_provider_carecycle._compat import AirflowException, AirflowFailException

#: What an API-supplied token (an error ``code``, a rule, a path segment) may look like to be kept: a short
#: identifier. Anything else (free text, a value the API echoed back) is dropped, since it may hold patient data.
_TOKEN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\[\]-]{0,63}$")
#: What a field error's ``expected`` may look like to be kept: short printable ASCII.
_RULE = re.compile(r"^[\x20-\x7e]{1,80}$")


def api_token(value: Any) -> str | None:
    """``value`` if it is a short identifier (``VALIDATION_ERROR``, ``invalid_string``, ``dateOfBirth``), else ``None``.

    :param value: something the API sent.
    """
    return value if isinstance(value, str) and _TOKEN.match(value) else None


def _path_segment(value: Any) -> str | int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return api_token(value) or "?"


def _expected(err: dict[str, Any]) -> str | None:
    """A field error's ``expected`` (a type, a format, a bound such as ``<=255``), unless it could be a value: longer
    than 80 characters, not printable ASCII, or containing what the API says it ``received``."""
    expected, received = err.get("expected"), err.get("received")
    if isinstance(expected, (int, float)) and not isinstance(expected, bool):
        expected = str(expected)
    if not isinstance(expected, str) or not _RULE.match(expected):
        return None
    if isinstance(received, (str, int, float)) and len(str(received)) >= 3 and str(received) in expected:
        return None
    return expected


def sanitize_field_errors(errors: Any) -> list[dict[str, Any]]:
    """The API's ``errors[]`` reduced to what holds no values: ``path``, ``code``, ``expected`` and a ``message``
    rebuilt from those two (``too_big (expected <=255)``). The API's own ``message`` and ``received`` are dropped:
    they may echo the rejected value (``Invalid enum value ..., received 'Jane Doe'``).

    :param errors: the ``errors`` list of an error answer (anything else gives ``[]``).
    """
    kept: list[dict[str, Any]] = []
    for err in errors if isinstance(errors, list) else []:
        if not isinstance(err, dict):
            continue
        path = err.get("path")
        code = api_token(err.get("code"))
        expected = _expected(err)
        rule = (code or "invalid") + (f" (expected {expected})" if expected else "")
        kept.append(
            {
                "path": [_path_segment(p) for p in path] if isinstance(path, list) else [],
                "code": code,
                "expected": expected,
                "message": rule,
            }
        )
    return kept


def sanitize_failed_records(records: Any) -> list[dict[str, Any]]:
    """The ``failedRecords`` of an error answer reduced to ``index`` and ``externalId``.

    :param records: the ``failedRecords`` list (anything else gives ``[]``).
    """
    kept: list[dict[str, Any]] = []
    for record in records if isinstance(records, list) else []:
        if isinstance(record, dict):
            kept.append({key: record[key] for key in ("index", "externalId") if record.get(key) is not None})
    return kept


class ApiError(AirflowException):
    """An error answer (or no answer) from an HTTP API the provider talks to: the transport's base error.

    Each vendor has its own family under it (:class:`CareCycleAPIError` here, ``CareCloudAPIError`` in
    :mod:`airflow_provider_carecycle.carecloud.exceptions`); the families are siblings, so catching one vendor's error
    never catches the other's. Catch ``ApiError`` for both.

    The message is built once, here: ``message`` followed by what the error's details say (:meth:`details`).

    :param message: a readable, PHI-free description.
    :param status: the HTTP status, or ``None`` when no answer arrived.
    :param code: the API's error code (a short identifier only).
    :param retry_after: seconds to wait before retrying, from a 429 answer.
    """

    #: Whether the same request may succeed if sent again later (see :attr:`retryable`).
    RETRYABLE = False

    def __init__(
        self, message: str, *, status: int | None = None, code: str | None = None, retry_after: float | None = None
    ) -> None:
        self.status = status
        self.code = code
        self.retry_after = retry_after
        self.message = " ".join([message, *self.details()])
        super().__init__(self.message)

    @property
    def retryable(self) -> bool:
        """Whether the same request may succeed if sent again later (no answer, 5xx, 429)."""
        return self.RETRYABLE

    def details(self) -> list[str]:
        """Sentences the message ends with (a validation error's field errors); none by default."""
        return []

    def field_errors(self) -> list[str]:
        """The API's per-field errors as ``"path: rule"`` lines, never values; none by default."""
        return []


@dataclass(frozen=True)
class ErrorFamily:
    """One vendor's exception classes by kind, so the transport can raise them without knowing the vendor.

    :param api: how messages name the API (``"careCycle API"``).
    :param base: the family's root (a redirect, an unexpected status).
    :param auth: 401/403 (an ``AirflowFailException``: task retries cannot fix it).
    :param not_found: 404.
    :param validation: 400 and other 4xx.
    :param rate_limit: 429 (retryable).
    :param retry_after_too_long: a 429 asking for more than ``max_retry_after`` (not slept through).
    :param server: 5xx and no answer (retryable).
    :param malformed: a success answer that is not what the API documents.
    """

    api: str
    base: type[ApiError]
    auth: type[ApiError]
    not_found: type[ApiError]
    validation: type[ApiError]
    rate_limit: type[ApiError]
    retry_after_too_long: type[ApiError]
    server: type[ApiError]
    malformed: type[ApiError]


class CareCycleAPIError(ApiError):
    """An error answer (or no answer) from the careCycle API.

    :param message: a readable, PHI-free description.
    :param status: the HTTP status, or ``None`` when no answer arrived.
    :param code: the API's error ``code`` (``UNAUTHORIZED``, ``VALIDATION_ERROR``, ...).
    :param errors: the per-field validation errors of a ``VALIDATION_ERROR`` answer, kept as ``path``, ``code``,
        ``expected`` and a rebuilt ``message`` only (see :func:`sanitize_field_errors`).
    :param failed_records: the ``failedRecords`` of a lead upload ``VALIDATION_ERROR`` answer (``index`` and
        ``externalId`` only).
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
        self.errors = sanitize_field_errors(errors)
        self.failed_records = sanitize_failed_records(failed_records)
        super().__init__(message, status=status, code=code, retry_after=retry_after)


class CareCycleAuthError(CareCycleAPIError, AirflowFailException):
    """401 ``UNAUTHORIZED`` or 403 ``FORBIDDEN``: a key problem that retrying cannot fix, so the task fails at once."""


class CareCycleNotFoundError(CareCycleAPIError):
    """404 ``NOT_FOUND``."""


class CareCycleValidationError(CareCycleAPIError):
    """400 ``VALIDATION_ERROR`` (or another 4xx the API rejected as invalid)."""

    def field_errors(self) -> list[str]:
        """The validation errors as ``"records.3.dateOfBirth: invalid_string"`` lines: the path and the rule (the
        error ``code``, plus ``expected`` for a type error), never the API's message or the value it received."""
        return [
            "{}: {}".format(".".join(str(p) for p in err["path"]) or "(request)", err["message"]) for err in self.errors
        ]

    def details(self) -> list[str]:
        lines = self.field_errors()
        return [f"Field errors: {'; '.join(lines[:10])}"] if lines else []


class CareCycleRateLimitError(CareCycleAPIError):
    """429 ``RATE_LIMIT_EXCEEDED``; ``retry_after`` says how long to wait."""

    RETRYABLE = True


class CareCycleRetryAfterTooLongError(CareCycleRateLimitError):
    """429 whose ``retryAfter`` is longer than the connection's ``max_retry_after``.

    The hook does not sleep that long in a worker: it raises this at once, and Airflow's task ``retries`` (with
    a ``retry_delay`` of at least ``retry_after``) take over. ``retry_after`` says how long careCycle asked to wait.
    """


class CareCycleServerError(CareCycleAPIError):
    """A 5xx answer, a dropped connection or a timeout: transient, retried with backoff."""

    RETRYABLE = True


class CareCycleMalformedAnswerError(CareCycleServerError):
    """A success answer that is not what the API documents: not JSON, an empty body, a list without ``items``.

    It is raised after the request succeeded, so the hook does not send the request again; the task fails and
    Airflow's task retries apply.
    """


CARECYCLE_ERRORS = ErrorFamily(
    api="careCycle API",
    base=CareCycleAPIError,
    auth=CareCycleAuthError,
    not_found=CareCycleNotFoundError,
    validation=CareCycleValidationError,
    rate_limit=CareCycleRateLimitError,
    retry_after_too_long=CareCycleRetryAfterTooLongError,
    server=CareCycleServerError,
    malformed=CareCycleMalformedAnswerError,
)


class TaskKilledError(RuntimeError):
    """The task was killed (``on_kill``: marked failed or cleared in the UI, a SIGTERM) and stopped where it was safe
    to: a lead upload once the requests in flight were settled (what careCycle acknowledged is in the checkpoint and
    the sync ledger, nothing else), an export once its temporary file was removed. The message says how far it got.
    """
