from __future__ import annotations

import datetime as dt

import pytest

from airflow_provider_carecycle.hooks.customer_filters import CUSTOMER_FILTERS, customer_query_params


def test_every_filter_encodes_to_its_api_name():
    params = customer_query_params(
        {
            "search": "smith",
            "sort_by": "lastName",
            "sort_direction": "asc",
            "include_test_numbers": True,
            "source_ids": ["s1", "s2"],
            "campaign_ids": "c1,c2",
            "customer_campaign_statuses": ["pending", "completed"],
            "has_prior_attempts": False,
            "pulse_node_id": "node-7",
            "policy_statuses": ["Active", "Future Cancel"],
            "assigned_member_ids": ["unassigned"],
            "statuses": ["Lead", "Active"],
            "date_field": "effectiveDate",
            "start_date": dt.date(2026, 1, 2),
            "end_date": dt.datetime(2026, 3, 4, 5, 6),
            "last_call_start_date": "2026-02-01",
            "last_call_end_date": "2026-02-28T00:00:00Z",
            "states": ["FL", "TX"],
            "counties": ["Miami-Dade"],
            "policy_types": ["MAPD", "Individual Health"],
            "aging_in_months": 6,
        }
    )
    assert params == {
        "search": "smith",
        "sortBy": "lastName",
        "sortDirection": "asc",
        "includeTestNumbers": "true",
        "sourceIds": "s1,s2",
        "campaignIds": "c1,c2",
        "customerCampaignStatuses": "pending,completed",
        "hasPriorAttempts": "false",
        "pulseNodeId": "node-7",
        "policyStatuses": "Active,Future Cancel",
        "assignedMemberIds": "unassigned",
        "statuses": "Lead,Active",
        "dateField": "effectiveDate",
        "startDate": "2026-01-02",
        "endDate": "2026-03-04",
        "lastCallStartDate": "2026-02-01",
        "lastCallEndDate": "2026-02-28",
        "states": "FL,TX",
        "counties": "Miami-Dade",
        "policyTypes": "MAPD,Individual Health",
        "agingInMonths": "6",
    }
    assert {f.api_name for f in CUSTOMER_FILTERS.values()} == set(params)


def test_none_and_empty_are_left_out_and_extra_params_pass_through():
    params = customer_query_params({"states": [], "search": None}, {"newFilter": "x", "statuses": "Raw"})
    assert params == {"newFilter": "x", "statuses": "Raw"}


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"statuses": ["Lead", "Prospect"]}, "'Prospect'. Valid values: Lead, Active, Inactive"),
        ({"policy_types": ["HMO"]}, "Valid values: MA, MAPD"),
        ({"aging_in_months": 4}, "Valid values: 3, 6, 12"),
        ({"sort_direction": "up"}, "Valid values: asc, desc"),
        ({"start_date": "01/02/2026"}, "takes a date"),
        ({"include_test_numbers": "yes"}, "takes True or False"),
        ({"state": ["FL"]}, "Unknown careCycle customer filter(s): state"),
    ],
)
def test_invalid_values_are_refused_before_any_request(filters, message):
    with pytest.raises(ValueError) as err:
        customer_query_params(filters)
    assert message in str(err.value)
