"""The one reading of page sizes and ISO 8601 date-times (``airflow_provider_carecycle.values``)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from airflow_provider_carecycle.values import page_size, parse_iso_datetime


@pytest.mark.parametrize("value", [1, 50, 100])
def test_a_page_size_in_range_is_taken_as_is(value):
    assert page_size("per_page", value, 100) == value


@pytest.mark.parametrize("value", [0, -1, 101, True, "50", 50.0, None])
def test_anything_else_is_refused_naming_the_argument_and_the_range(value):
    with pytest.raises(ValueError, match=r"^per_page must be an integer from 1 to 100, got "):
        page_size("per_page", value, 100)


def test_without_a_largest_page_only_the_lower_bound_holds():
    assert page_size("count", 10_000) == 10_000
    with pytest.raises(ValueError, match="count must be an integer of at least 1, got 0."):
        page_size("count", 0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-01T10:00:00Z", datetime(2026, 3, 1, 10, tzinfo=timezone.utc)),
        (" 2026-03-01T10:00:00z ", datetime(2026, 3, 1, 10, tzinfo=timezone.utc)),
        ("2026-03-01T10:00:00-05:00", datetime(2026, 3, 1, 10, tzinfo=timezone(timedelta(hours=-5)))),
        ("2026-03-01T10:00:00", datetime(2026, 3, 1, 10)),
        ("2026-03-01", datetime(2026, 3, 1)),
    ],
)
def test_iso_date_times_are_read_with_z_as_utc_and_naive_ones_stay_naive(text, expected):
    parsed = parse_iso_datetime(text)
    assert parsed == expected and parsed.tzinfo == expected.tzinfo


@pytest.mark.parametrize("text", ["", "yesterday", "03/01/2026", "2026-13-01T00:00:00Z"])
def test_text_that_is_not_iso_8601_is_a_value_error(text):
    with pytest.raises(ValueError):
        parse_iso_datetime(text)
