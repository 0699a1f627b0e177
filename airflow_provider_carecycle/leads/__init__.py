"""The rules a careCycle lead must meet: its fields, their validation and normalisation, and a rejection's shape.

* :mod:`~.fields`: one declarative :class:`FieldSpec` row per lead field (the table the validator and the docs use);
* :mod:`~.validation`: :class:`LeadValidator` (map, validate, normalise a source record; a lead's identity);
* :mod:`~.rejection`: :class:`Rejection`, the one shape of a rejected lead, and a rejected-file line.

Pure Python: every module here imports without loading Airflow, an HTTP client or the storage layer
(``tests/leads/test_purity.py``). Getting leads to careCycle is the lead sync's
(:mod:`airflow_provider_carecycle.sync`).

>>> from airflow_provider_carecycle.leads import LeadValidator
>>> v = LeadValidator(field_mapping={"phoneNumber": "phone", "postalCode": "address.zip"})
>>> v.validate({"phone": "(212) 555-0142", "address": {"zip": "10001-1234"}}).lead
{'phoneNumber': '+12125550142', 'postalCode': '10001'}
"""

from __future__ import annotations

from airflow_provider_carecycle.leads.fields import (
    AT_LEAST_ONE_OF,
    LEAD_FIELDS,
    LEAD_FIELDS_BY_NAME,
    AtLeastOneOf,
    FieldKind,
    FieldSpec,
)
from airflow_provider_carecycle.leads.rejection import REJECTION_CODES, Rejection, RejectionCode
from airflow_provider_carecycle.leads.validation import (
    LeadFieldError,
    LeadValidator,
    ValidationResult,
    normalize_date_of_birth,
    normalize_field,
    normalize_phone,
)
from airflow_provider_carecycle.vocabulary import MAX_CUSTOM_FIELDS, MAX_RECORDS_PER_UPLOAD

__all__ = [
    "AT_LEAST_ONE_OF",
    "LEAD_FIELDS",
    "LEAD_FIELDS_BY_NAME",
    "MAX_CUSTOM_FIELDS",
    "MAX_RECORDS_PER_UPLOAD",
    "REJECTION_CODES",
    "AtLeastOneOf",
    "FieldKind",
    "FieldSpec",
    "LeadFieldError",
    "LeadValidator",
    "Rejection",
    "RejectionCode",
    "ValidationResult",
    "normalize_date_of_birth",
    "normalize_field",
    "normalize_phone",
]
