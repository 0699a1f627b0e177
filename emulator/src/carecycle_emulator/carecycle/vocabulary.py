"""The careCycle API's documented value sets and limits, as the emulator enforces them.

Copied from the vendor pages, not imported from the provider: the emulator is the test oracle, so it shares no code
with the client it tests (a value the client gets wrong must be rejected here, not accepted by both). The provider's
test suite checks that the two copies still agree.
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
#: ``POST /v2/leads/upload``: records per request, custom fields per record
MAX_RECORDS_PER_UPLOAD = 200
MAX_CUSTOM_FIELDS = 50
#: the call disposition that means "do not call me again": it sets the customer's ``doNotCall``
DO_NOT_CALL_DISPOSITION = "Do Not Call"
