"""The careCycle API's documented value sets and limits, in one place.

Taken from the vendor pages (``shared/api-docs``). The hooks, operators, sensors, the lead validator and the
campaign figures all import them from here (never through a hook module), so a value the vendor adds is added once.
The emulator keeps its own copy on purpose: a test oracle must not share the client's mistakes. Importing this
imports nothing else.
"""

from __future__ import annotations

#: ``customer.status``
CUSTOMER_STATUSES = ("Lead", "Active", "Inactive")
#: ``campaign.status``
CAMPAIGN_STATUSES = ("draft", "active", "paused", "completed", "archived", "inactive", "cancelled", "testing")
#: a customer's status within a campaign (``campaigns[].status``; the ``campaign_statuses`` filter)
CAMPAIGN_MEMBER_STATUSES = (
    "pending",
    "awaiting_call",
    "in_progress",
    "completed",
    "failed",
    "expired",
    "cancelled",
    "skipped",
    "exceeded_max_calls",
)
#: the keys of a campaign's ``customerStats.statusCounts``, in the documented order
STATUS_COUNT_KEYS = (
    "expired",
    "failed",
    "pending",
    "completed",
    "exceeded_max_calls",
    "in_progress",
    "cancelled",
    "skipped",
)
POLICY_STATUSES = (
    "Active",
    "Pending",
    "Pending Effectuation",
    "Pending Followup",
    "Suspended",
    "Cancelled",
    "Terminated",
    "Future Cancel",
    "Deceased",
    "Not Approved",
)
MEDICARE_POLICY_TYPES = ("MA", "MAPD", "PDP", "MS")
OTHER_POLICY_TYPES = (
    "ACA",
    "LTC",
    "Individual Health",
    "FE",
    "Annuity",
    "Life",
    "Dental",
    "Vision",
    "Hospital Indemnity",
    "Cancer",
    "Accident",
    "Group",
)
POLICY_TYPES = (*MEDICARE_POLICY_TYPES, *OTHER_POLICY_TYPES)
GENDERS = ("Male", "Female", "Non-Binary", "Other", "Prefer Not to Say")
MARITAL_STATUSES = ("Single", "Married", "Divorced", "Widowed", "Separated", "Domestic Partnership")
#: time zone abbreviations accepted besides IANA names
TIMEZONE_ABBREVIATIONS = ("EST", "CST", "MST", "PST")
SORT_DIRECTIONS = ("asc", "desc")
#: ``GET /v2/customers``: ``sortBy`` and ``dateField``
CUSTOMER_SORT_FIELDS = ("createdAt", "firstName", "lastName", "callerId")
CUSTOMER_DATE_FIELDS = ("createdAt", "effectiveDate", "enrollmentDate")
CAMPAIGN_SORT_FIELDS = ("createdAt", "updatedAt", "name", "status", "startDate")
CALL_SORT_FIELDS = ("createdAt", "disposition", "duration")
#: list endpoints: largest ``perPage``
MAX_PER_PAGE = 100
#: the key's documented rate limit, requests a minute (the hook's ``requests_per_minute`` when nothing says otherwise)
DEFAULT_REQUESTS_PER_MINUTE = 60
#: ``POST /v2/leads/upload``: records per request, custom fields per record
MAX_RECORDS_PER_UPLOAD = 200
MAX_CUSTOM_FIELDS = 50
#: the call disposition that means "do not call me again" (the write-back's default disposition)
DO_NOT_CALL_DISPOSITION = "Do Not Call"
#: the do-not-contact flags a lead and a customer carry
DO_NOT_CONTACT_FLAGS = ("doNotCall", "doNotSMS", "doNotEmail", "doNotMail")
