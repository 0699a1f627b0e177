"""One column schema per exported entity (customers, calls): the columns' order and types of a typed (Parquet) export.

Pure Python (no pyarrow here): :mod:`~airflow_provider_carecycle.parquet` turns these into Arrow types, and
``docs/operators/extract-customers.md`` lists them, so a warehouse's ``COPY INTO`` or BigQuery load job needs no
hand-written schema. The fields and their order are the vendor's documented ones (``GET /v2/customers`` and
``GET /v2/customers/{id}/calls``); a field careCycle adds later, or a dotted path into a nested object that is not
listed, is a ``text`` column.

Types:

=============  =================================================================================================
``string``     text as the API gives it
``int64``      a whole number (counts, amounts, durations)
``bool``       true/false
``timestamp``  an instant, UTC, millisecond precision (the API's ISO 8601 text, e.g. ``2026-03-01T09:00:00.000Z``)
``date``       a calendar day (the API's ``YYYY-MM-DD``; a full timestamp keeps its day)
``json``       a nested object or list, as compact JSON text (a warehouse's ``PARSE_JSON``/``JSON`` column)
``text``       a column not in the schema: text as is, any other value as JSON text
=============  =================================================================================================
"""

from __future__ import annotations

from collections.abc import Sequence

Schema = list[tuple[str, str]]

#: the customers' columns, in the vendor's order (``GET /v2/customers``), plus ``externalId`` where the API echoes it
CUSTOMER_SCHEMA: Schema = [
    ("id", "string"),
    ("createdAt", "timestamp"),
    ("createdBy", "string"),
    ("updatedAt", "timestamp"),
    ("updatedBy", "string"),
    ("clientId", "string"),
    ("clientCustomerId", "string"),
    ("status", "string"),
    ("qualificationStatus", "string"),
    ("intent", "string"),
    ("isDecisionMaker", "bool"),
    ("disqualificationReason", "string"),
    ("productInterest", "string"),
    ("productFamily", "string"),
    ("salutation", "string"),
    ("suffix", "string"),
    ("firstName", "string"),
    ("middleName", "string"),
    ("lastName", "string"),
    ("preferredName", "string"),
    ("callerId", "string"),
    ("lineType", "string"),
    ("email", "string"),
    ("dateOfBirth", "date"),
    ("language", "string"),
    ("ethnicity", "string"),
    ("gender", "string"),
    ("maritalStatus", "string"),
    ("postalCode", "string"),
    ("timezone", "string"),
    ("state", "string"),
    ("city", "string"),
    ("county", "string"),
    ("address", "string"),
    ("address2", "string"),
    ("mbiNumber", "string"),
    ("medicareCard", "bool"),
    ("medicarePartADate", "date"),
    ("medicarePartBDate", "date"),
    ("medicaid", "bool"),
    ("medicaidNumber", "string"),
    ("socialSecurityDisability", "bool"),
    ("veteran", "bool"),
    ("vaNumber", "string"),
    ("healthSherpaCustomerId", "string"),
    ("householdIncome", "int64"),
    ("annualIncome", "int64"),
    ("filingStatus", "string"),
    ("dependentCount", "int64"),
    ("subsidyAmount", "int64"),
    ("subsidyEligible", "bool"),
    ("existingCoverage", "string"),
    ("existingCoveragePlanName", "string"),
    ("existingCoverageCarrier", "string"),
    ("desiredCoverageStartDate", "date"),
    ("currentSourceId", "string"),
    ("originalSourceId", "string"),
    ("agentName", "string"),
    ("agentNpn", "int64"),
    ("memberId", "string"),
    ("carrierName", "string"),
    ("planName", "string"),
    ("planCode", "string"),
    ("enrollmentDate", "date"),
    ("effectiveDate", "date"),
    ("carrierAssignedCustomerId", "string"),
    ("doNotCall", "bool"),
    ("doNotSMS", "bool"),
    ("doNotEmail", "bool"),
    ("doNotMail", "bool"),
    ("lastContactedAt", "timestamp"),
    ("convertedAt", "timestamp"),
    ("testCustomer", "bool"),
    ("desiredCoverageStart", "date"),
    ("totalCalls", "int64"),
    ("lastCallDate", "timestamp"),
    ("lastCallDisposition", "string"),
    ("campaigns", "json"),
    ("source", "json"),
    ("customFields", "json"),
    ("policies", "json"),
    ("prescriptions", "json"),
    ("providers", "json"),
    ("scopeOfAppointments", "json"),
    ("dependents", "json"),
    ("assignedMember", "json"),
    ("externalId", "string"),
]

#: the calls' columns, in the vendor's order (``GET /v2/customers/{id}/calls``), after the export's ``customerId``
CALL_SCHEMA: Schema = [
    ("customerId", "string"),
    ("id", "string"),
    ("campaignId", "string"),
    ("disposition", "string"),
    ("callerId", "string"),
    ("twilioSid", "string"),
    ("service", "string"),
    ("testFlag", "bool"),
    ("direction", "string"),
    ("recordingUrl", "string"),
    ("recordingId", "string"),
    ("stereoRecordingUrl", "string"),
    ("assistantType", "string"),
    ("successEvaluation", "string"),
    ("summary", "string"),
    ("transcript", "string"),
    ("durationMs", "int64"),
    ("createdAt", "timestamp"),
    ("mainRecordingUrl", "string"),
    ("isTestNumber", "bool"),
    ("sourceName", "string"),
]

#: the columns an export adds (``changed`` exports: ``extractedAt``; ``diff``: ``changeType``)
ADDED_COLUMNS: dict[str, str] = {"extractedAt": "timestamp", "changeType": "string"}

#: dotted paths into the customers' nested objects, typed
NESTED_COLUMNS: dict[str, str] = {
    "source.id": "string",
    "source.name": "string",
    "source.sourceId": "string",
    "assignedMember.id": "string",
    "assignedMember.name": "string",
    "assignedMember.email": "string",
}

SCHEMAS: dict[str, Schema] = {"customers": CUSTOMER_SCHEMA, "calls": CALL_SCHEMA}


def export_schema(entity: str, columns: Sequence[str] | None, added: Sequence[str] = ()) -> Schema:
    """The typed columns of an export of ``entity``: the chosen ``columns`` in their order, else the whole schema,
    then the ``added`` ones (``extractedAt``, ``changeType``).

    :param entity: ``customers`` or ``calls``.
    :param columns: the exported columns (keys or dotted paths), or ``None`` for whole records.
    :param added: columns the export adds after them.
    """
    base = SCHEMAS[entity]
    types = {**dict(base), **NESTED_COLUMNS, **ADDED_COLUMNS}
    names = list(columns) if columns is not None else [name for name, _ in base]
    names += [name for name in added if name not in names]
    return [(name, types.get(name, "text")) for name in names]
