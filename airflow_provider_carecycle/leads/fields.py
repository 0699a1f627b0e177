"""The careCycle lead record fields: one declarative table, the single source of truth.

Every field of a ``POST /v2/leads/upload`` record is one :class:`FieldSpec` row in :data:`LEAD_FIELDS`.
The validator (:mod:`airflow_provider_carecycle.leads.validation`) picks the rule from ``kind`` and the
limits from the other attributes, and the field reference (``docs/lead-fields.md``) follows this table, so
adding a field is one line here.

Sources: the captured vendor page ``003_*.txt`` (types, lengths, enum values, the DOB regex) and
``api-facts.md`` section 1.5 (the field names, mapped to the page's type list by position, plus
``sourceId`` and ``leadCost`` from the newer page). Pure Python: imports nothing from Airflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from airflow_provider_carecycle.vocabulary import (
    GENDERS,
    MARITAL_STATUSES,
)

INT32_MIN = -(2**31)
"""Smallest value of an ``integer`` field (int32)."""
INT32_MAX = 2**31 - 1
"""Largest value of an ``integer`` field (int32)."""
CUSTOM_FIELD_KEY_MAX_LENGTH = 100
"""``customFields[].fieldKey`` is 1..100 characters."""
DATE_OF_BIRTH_MAX_AGE_YEARS = 120
"""Dates of birth more than this many years ago are rejected as implausible for a living person."""


class FieldKind(str, Enum):
    """What rule a lead field follows. The validator has one normaliser per kind."""

    STRING = "string"
    EMAIL = "email"
    ENUM = "enum"
    INT32 = "int32"
    NUMBER = "number"
    BOOL = "bool"
    DATE = "date"
    PHONE = "phone"
    POSTAL = "postal"
    TIMEZONE = "timezone"
    CUSTOM_FIELDS = "customFields"


@dataclass(frozen=True)
class FieldSpec:
    """One careCycle lead field.

    :param name: the field name in the careCycle record (camelCase, as the API spells it).
    :param kind: which rule applies (see :class:`FieldKind`).
    :param max_length: longest accepted text, in characters (string-like kinds); ``None`` for no limit.
    :param required: the record is rejected without this field.
    :param accepts_int: an ``int`` is accepted and sent as text (identifier fields that CSV/DB sources often
        hand over as numbers).
    :param choices: the canonical values of an enum field, as sent to the API.
    :param aliases: extra accepted spellings of an enum field, ``(alias, canonical)`` pairs.
    :param minimum: smallest accepted number (numeric kinds).
    :param maximum: largest accepted number (numeric kinds).
    :param plain_text: a person's name: control characters and the invisible bidirectional controls (which can
        make text display, and read aloud, differently from what is stored) are rejected. NUL is rejected in
        every text field.
    :param droppable: an optional field whose invalid value must not cost the call: by default the value is dropped,
        the lead sent without it and the drop counted (``fields_dropped``) and written to the rejected file as a
        warning line; ``invalid_optional="reject"`` rejects the lead instead.
    :param description: one line for the field reference.
    """

    name: str
    kind: FieldKind
    max_length: int | None = None
    required: bool = False
    accepts_int: bool = False
    choices: tuple[str, ...] = ()
    aliases: tuple[tuple[str, str], ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    plain_text: bool = False
    droppable: bool = False
    description: str = ""


@dataclass(frozen=True)
class AtLeastOneOf:
    """A record must carry at least one of ``fields``; otherwise it is rejected with ``reason``.

    :param fields: the alternative field names.
    :param reason: why (goes into the rejection reason).
    """

    fields: tuple[str, ...]
    reason: str

    @property
    def label(self) -> str:
        """The rejection's field label, e.g. ``"postalCode|timezone"``."""
        return "|".join(self.fields)


_K = FieldKind
_GENDER_ALIASES = (("M", "Male"), ("F", "Female"))
_LO, _HI = INT32_MIN, INT32_MAX

# fmt: off
LEAD_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("phoneNumber", _K.PHONE, required=True, description="Phone number, sent in E.164 as +1XXXXXXXXXX."),
    FieldSpec("firstName", _K.STRING, max_length=255, plain_text=True, description="First name."),
    FieldSpec("lastName", _K.STRING, max_length=255, plain_text=True, description="Last name."),
    FieldSpec("email", _K.EMAIL, max_length=255, droppable=True, description="Email address (syntax checked)."),
    FieldSpec("postalCode", _K.POSTAL, max_length=5, description="5-digit US ZIP code."),
    FieldSpec("timezone", _K.TIMEZONE, description="IANA zone or EST/CST/MST/PST."),
    FieldSpec("state", _K.STRING, max_length=50, description="State."),
    FieldSpec("city", _K.STRING, max_length=255, description="City."),
    FieldSpec("county", _K.STRING, max_length=255, description="County."),
    FieldSpec("address", _K.STRING, max_length=255, description="Street address."),
    FieldSpec("address2", _K.STRING, max_length=255, description="Street address, second line."),
    FieldSpec("dateOfBirth", _K.DATE, droppable=True, description="Date of birth, sent as MM-DD-YYYY."),
    FieldSpec("language", _K.STRING, max_length=50, description="Preferred language."),
    FieldSpec("gender", _K.ENUM, choices=GENDERS, aliases=_GENDER_ALIASES, droppable=True, description="Gender."),
    FieldSpec("maritalStatus", _K.ENUM, choices=MARITAL_STATUSES, droppable=True, description="Marital status."),
    FieldSpec("filingStatus", _K.STRING, max_length=50, description="Tax filing status."),
    FieldSpec("dependentCount", _K.INT32, minimum=_LO, maximum=_HI, description="Number of dependents."),
    FieldSpec("householdIncome", _K.INT32, minimum=_LO, maximum=_HI, description="Household income."),
    FieldSpec("isDecisionMaker", _K.BOOL, description="The customer is the decision maker."),
    FieldSpec("medicaid", _K.BOOL, description="Has Medicaid."),
    FieldSpec("medicaidNumber", _K.STRING, max_length=255, description="Medicaid number."),
    FieldSpec("veteran", _K.BOOL, description="Is a veteran."),
    FieldSpec("vaNumber", _K.STRING, max_length=255, description="VA number."),
    FieldSpec("socialSecurityDisability", _K.BOOL, description="Receives Social Security disability."),
    FieldSpec("carrierAssignedCustomerId", _K.STRING, max_length=255, accepts_int=True,
              description="Carrier-assigned customer ID."),
    FieldSpec("healthSherpaCustomerId", _K.STRING, max_length=255, accepts_int=True,
              description="Health Sherpa customer ID."),
    FieldSpec("mbiNumber", _K.STRING, max_length=255, description="Medicare Beneficiary Identifier."),
    FieldSpec("doNotCall", _K.BOOL, description="Do not call."),
    FieldSpec("doNotSMS", _K.BOOL, description="Do not text."),
    FieldSpec("doNotEmail", _K.BOOL, description="Do not email."),
    FieldSpec("doNotMail", _K.BOOL, description="Do not send mail."),
    FieldSpec("externalId", _K.STRING, max_length=255, accepts_int=True, description="Your own customer ID."),
    FieldSpec("sourceId", _K.STRING, accepts_int=True, description="careCycle source ID or UUID."),
    FieldSpec("leadCost", _K.NUMBER, minimum=0, description="Per-lead cost (CPL billing)."),
    FieldSpec("customFields", _K.CUSTOM_FIELDS, description="Custom field values (max 50)."),
)
# fmt: on
"""The careCycle lead record fields, in the order of the vendor's type list."""

LEAD_FIELDS_BY_NAME: dict[str, FieldSpec] = {spec.name: spec for spec in LEAD_FIELDS}
""":data:`LEAD_FIELDS` keyed by field name."""

AT_LEAST_ONE_OF: tuple[AtLeastOneOf, ...] = (
    AtLeastOneOf(
        ("postalCode", "timezone"),
        "at least one is required: TCPA calling-hours compliance needs the lead's location or time zone",
    ),
)
"""Cross-field rules: each group needs at least one present field."""
