"""One rejected lead, in one shape from the validator to the upload checkpoint to the rejected file.

Pure Python (no Airflow, no network). A :class:`Rejection` is built by the lead validator (one per problem found in
a record) and by the upload engine (one per record the API refused, with its ``position`` in the batch sent). Its
JSON form (:meth:`Rejection.to_json`, read back and checked by :meth:`Rejection.from_json`) is what the upload
checkpoint stores and what every line of the rejected file carries, so neither has a shape of its own::

    {"field": "dateOfBirth", "code": "invalid_format", "reason": "dateOfBirth: not a real date (...)"}
    {"field": null, "code": "api_error", "reason": "API: Source not found", "position": 17}

:func:`rejected_line` writes one line of the rejected file: the stage, the source row, the first rejection's
fields, every rejection (``errors``) and the original record, spliced in as the JSON text it was kept as (it is
neither parsed nor serialised again).

Leads carry PHI. A validation rejection's ``reason`` names the field and the problem, never the value (see
:mod:`~airflow_provider_carecycle.leads.validation`). An API rejection's reason is the API's own text (``API: ...``),
which may quote a value: it goes to the rejected file and the checkpoint (kept where the rejected file goes), never
to logs, exception texts or XCom, which carry only fields and codes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any


class RejectionCode:
    """The ``code`` values of a :class:`Rejection`."""

    REQUIRED = "required"
    INVALID_FORMAT = "invalid_format"
    INVALID_TYPE = "invalid_type"
    TOO_LONG = "too_long"
    TOO_MANY = "too_many"
    NOT_ALLOWED_VALUE = "not_allowed_value"
    OUT_OF_RANGE = "out_of_range"
    UNKNOWN_FIELD = "unknown_field"
    #: a phone number the numbering plan does not know (unassigned or reserved area code, wrong length)
    INVALID_PHONE_NUMBER = "invalid_phone_number"
    #: a phone number of a region outside ``allowed_regions``
    REGION_NOT_ALLOWED = "region_not_allowed"
    #: a phone number of a type outside ``allowed_number_types`` (toll-free, premium-rate, pager, ...)
    NUMBER_TYPE_NOT_ALLOWED = "number_type_not_allowed"
    #: a ZIP code that cannot exist (all zeros, or a prefix no ZIP code has)
    INVALID_POSTAL_CODE = "invalid_postal_code"
    #: a per-record error in careCycle's 200 answer to an upload
    API_ERROR = "api_error"
    #: a record careCycle refused with 400 ``VALIDATION_ERROR``
    API_VALIDATION_ERROR = "api_validation_error"


REJECTION_CODES: tuple[str, ...] = tuple(
    value for name, value in vars(RejectionCode).items() if not name.startswith("_")
)
"""Every code a :class:`Rejection` can carry."""

#: the ``stage`` of a rejected-file line: the validator rejected the record, or the API did
STAGE_VALIDATION = "validation"
STAGE_API = "api"
#: the ``stage`` of a warning line: the lead was sent, without the optional fields its ``errors`` name
STAGE_WARNING = "warning"

_KEYS = frozenset({"field", "code", "reason", "position"})

#: the reason :meth:`Rejection.without_api_text` puts in place of careCycle's own text
API_TEXT_WITHHELD = "API: record failed (careCycle's reason is not kept in Airflow's metadata DB)"


@dataclass(frozen=True)
class Rejection:
    """One problem found in a lead record, by the validator or by the careCycle API.

    :param field: the careCycle field (``"customFields[2].fieldKey"`` for an item, ``"postalCode|timezone"``
        for a cross-field rule, the source key for ``unknown_field``), or ``None`` for the record as a whole.
    :param reason: a self-contained message such as ``"dateOfBirth: date is in the future"`` (PHI-free from the
        validator; the API's text, prefixed ``API: ``, from the API).
    :param code: a machine-readable code, one of :data:`REJECTION_CODES`.
    :param position: for an API rejection, the record's position (0-based) in the upload batch it was sent in;
        ``None`` for a validation rejection.
    """

    field: str | None
    reason: str
    code: str
    position: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON form the checkpoint and the rejected file store (``position`` only when there is one)."""
        out: dict[str, Any] = {"field": self.field, "code": self.code, "reason": self.reason}
        if self.position is not None:
            out["position"] = self.position
        return out

    def without_api_text(self) -> Rejection:
        """This rejection with careCycle's free-text reason replaced (``api_error`` only: the per-record ``error``
        of a 200 answer, which may quote the rejected value); every other reason is PHI-free by construction. For
        stores outside the place the rejected file is kept, such as Airflow's task state store."""
        if self.code != RejectionCode.API_ERROR:
            return self
        return replace(self, reason=API_TEXT_WITHHELD)

    @classmethod
    def from_json(cls, value: Any) -> Rejection:
        """A rejection read back from :meth:`to_json`'s form, checked key by key.

        :param value: the decoded JSON.
        :raises ValueError: naming what is wrong (the keys and types, never a value).
        """
        if not isinstance(value, Mapping):
            raise ValueError("a rejection must be an object with field, code and reason")
        missing = sorted({"field", "code", "reason"} - set(value))
        if missing:
            raise ValueError(f"a rejection lacks {', '.join(missing)}")
        unknown = sorted(str(key) for key in value if key not in _KEYS)
        if unknown:
            raise ValueError(f"a rejection has unknown keys {', '.join(unknown)}")
        field, code, reason, position = value["field"], value["code"], value["reason"], value.get("position")
        if not (field is None or isinstance(field, str)):
            raise ValueError("a rejection's field must be text or null")
        if not isinstance(code, str) or not isinstance(reason, str):
            raise ValueError("a rejection's code and reason must be text")
        if position is not None and (isinstance(position, bool) or not isinstance(position, int) or position < 0):
            raise ValueError("a rejection's position must be a whole number >= 0")
        return cls(field=field, reason=reason, code=code, position=position)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def rejected_line(
    stage: str, row: int, rejections: Sequence[Rejection], record_text: str, *, batch: int | None = None
) -> str:
    """One line of the rejected file (JSON, no newline), with the original record written as the text it was kept as.

    ``{"stage", "row", ["batch",] "field", "code", "reason", "errors": [...], "record": <record_text>}``: the
    top-level ``field``/``code``/``reason`` are the first rejection's, ``errors`` holds every rejection's JSON form.

    :param stage: :data:`STAGE_VALIDATION`, :data:`STAGE_API` or :data:`STAGE_WARNING` (a lead sent without the
        invalid optional fields ``rejections`` name).
    :param row: the record's 1-based row in the source.
    :param rejections: the record's rejections, at least one.
    :param record_text: the original record as JSON text (see the upload engine's spool).
    :param batch: for an API rejection, the batch the record was sent in.
    """
    head: dict[str, Any] = {"stage": stage, "row": row}
    if batch is not None:
        head["batch"] = batch
    first = rejections[0]
    head.update(field=first.field, code=first.code, reason=first.reason)
    head["errors"] = [rejection.to_json() for rejection in rejections]
    return f'{_dumps(head)[:-1]},"record":{record_text}}}'


__all__ = [
    "REJECTION_CODES",
    "STAGE_API",
    "STAGE_VALIDATION",
    "STAGE_WARNING",
    "Rejection",
    "RejectionCode",
    "rejected_line",
]
