from __future__ import annotations

import json

import pytest

from airflow_provider_carecycle.campaign_stats import (
    COMPARISONS,
    THRESHOLD_KEYS,
    Condition,
    campaign_summary,
    evaluate,
    flatten_stats,
    parse_threshold,
    threshold_figures,
    threshold_to_json,
)

STATS = {
    "total": 10,
    "totalCalls": 25,
    "todayCalls": 4,
    "statusCounts": {"completed": 8, "pending": 1, "failed": 1, "in_progress": 0},
}
CAMPAIGN_ID = "1369e7fe-6ed5-49b5-8b46-243bf8918958"
CAMPAIGN = {"id": CAMPAIGN_ID, "name": "T65", "status": "active", "customerStats": STATS, "description": "x"}


def test_flatten_stats_has_every_documented_status_and_keeps_new_ones():
    flat = flatten_stats({**STATS, "statusCounts": {**STATS["statusCounts"], "voicemail": 3}})
    assert flat["total"] == 10 and flat["totalCalls"] == 25 and flat["todayCalls"] == 4
    assert flat["status_completed"] == 8
    assert flat["status_skipped"] == 0  # absent in the answer, present as a column
    assert flat["status_voicemail"] == 3
    assert list(flat)[:3] == ["total", "totalCalls", "todayCalls"]


def test_flatten_stats_tolerates_missing_stats():
    assert flatten_stats(None)["total"] == 0


def test_campaign_summary_keeps_only_id_name_status_and_figures():
    summary = campaign_summary(CAMPAIGN)
    assert summary["id"] == CAMPAIGN_ID and summary["status"] == "active"
    assert "description" not in summary and "customerStats" not in summary


@pytest.mark.parametrize(
    ("threshold", "expected"),
    [
        ({"completed_ratio": 0.8}, [Condition("completed_ratio", ">=", 0.8)]),
        ({"completed": 500}, [Condition("completed", ">=", 500)]),
        ({"pending": ("<=", 0)}, [Condition("pending", "<=", 0)]),
        (
            {"totalCalls": [">", 3], "todayCalls": ("==", 2)},
            [Condition("totalCalls", ">", 3), Condition("todayCalls", "==", 2)],
        ),
    ],
)
def test_parse_threshold(threshold, expected):
    assert list(parse_threshold(threshold)) == expected


@pytest.mark.parametrize(
    ("threshold", "message"),
    [
        ({"completd": 1}, "Valid keys: total, totalCalls, todayCalls, expired"),
        ({"completed": ("=>", 1)}, "Valid operators: >=, >, <=, <, =="),
        ({"completed": "many"}, "a number (meaning '>=') or a pair"),
        ({"completed": -1}, "number >= 0"),
        ({"completed": True}, "a number (meaning '>=') or a pair"),
        ({"completed_ratio": 1.5}, "ratio between 0 and 1"),
        ({}, "non-empty dict"),
        ("completed", "non-empty dict"),
    ],
)
def test_parse_threshold_rejects_with_the_valid_choices(threshold, message):
    with pytest.raises(ValueError, match=None) as err:
        parse_threshold(threshold)
    assert message in str(err.value)


def test_threshold_keys_cover_figures_statuses_and_ratios():
    assert {"total", "totalCalls", "todayCalls", "completed", "exceeded_max_calls", "failed_ratio"} <= set(
        THRESHOLD_KEYS
    )


def test_threshold_json_form_round_trips_through_json():
    conditions = parse_threshold({"completed_ratio": 0.8, "pending": ("<=", 0)})
    assert parse_threshold(json.loads(json.dumps(threshold_to_json(conditions)))) == conditions


@pytest.mark.parametrize(
    ("threshold", "met"),
    [
        ({"completed_ratio": 0.8}, True),
        ({"completed_ratio": (">", 0.8)}, False),
        ({"completed": 8, "pending": ("<=", 1)}, True),
        ({"completed": 8, "pending": ("<", 1)}, False),
        ({"failed_ratio": ("==", 0.1)}, True),
        ({"todayCalls": 5}, False),
    ],
)
def test_evaluate(threshold, met):
    result = evaluate(CAMPAIGN, parse_threshold(threshold), campaign_id=CAMPAIGN_ID)
    assert result.met is met
    assert result.terminal is False


def test_ratio_is_undefined_for_an_empty_campaign_and_never_holds():
    empty = {**CAMPAIGN, "customerStats": {"total": 0, "statusCounts": {"failed": 0}}}
    assert threshold_figures(flatten_stats(empty["customerStats"]))["completed_ratio"] is None
    result = evaluate(empty, parse_threshold({"failed_ratio": ("<=", 0.5)}), campaign_id=CAMPAIGN_ID)
    assert not result.met
    assert "now n/a" in result.describe()


def test_evaluation_describes_unmet_conditions_with_current_values():
    result = evaluate(
        {**CAMPAIGN, "status": "cancelled"}, parse_threshold({"completed": 9}), ("cancelled",), campaign_id=CAMPAIGN_ID
    )
    assert result.terminal
    assert result.describe() == "status=cancelled; unmet: completed >= 9 (now 8)"


def test_every_operator_is_used_by_conditions():
    assert [Condition("total", op, 10).holds({"total": 10}) for op in COMPARISONS] == [True, False, True, False, True]
