"""CareCloud's offset-less local times across DST transitions (:mod:`airflow_provider_carecycle.carecloud.local_time`):
every doubt reads more."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from airflow_provider_carecycle.carecloud.local_time import (
    as_instant,
    changed_instant,
    earliest_instant,
    earliest_wall,
    latest_instant,
    wall_time,
)

NEW_YORK, LORD_HOWE = ZoneInfo("America/New_York"), ZoneInfo("Australia/Lord_Howe")


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)


def test_a_wall_time_names_its_earliest_and_latest_instants():
    assert earliest_instant(datetime(2026, 6, 1, 9, 0), NEW_YORK) == latest_instant(datetime(2026, 6, 1, 9), NEW_YORK)
    # the repeated hour of a fall-back: EDT first, EST second
    assert earliest_instant(datetime(2026, 11, 1, 1, 30), NEW_YORK) == utc(2026, 11, 1, 5, 30)
    assert latest_instant(datetime(2026, 11, 1, 1, 30), NEW_YORK) == utc(2026, 11, 1, 6, 30)
    # the gap of a spring-forward: a lagging writer meant EST, an early one EDT
    assert earliest_instant(datetime(2026, 3, 8, 2, 30), NEW_YORK) == utc(2026, 3, 8, 6, 30)
    assert latest_instant(datetime(2026, 3, 8, 2, 30), NEW_YORK) == utc(2026, 3, 8, 7, 30)


@pytest.mark.parametrize(
    ("instant", "zone", "wall"),
    [
        (utc(2026, 11, 1, 5, 25), NEW_YORK, datetime(2026, 11, 1, 1, 0)),  # 01:25 EDT: the hour from its early side
        (utc(2026, 11, 1, 6, 10), NEW_YORK, datetime(2026, 11, 1, 1, 10)),  # 01:10 EST
        (utc(2026, 11, 1, 4, 59), NEW_YORK, datetime(2026, 11, 1, 0, 59)),  # before the hour
        (utc(2026, 11, 1, 7, 10), NEW_YORK, datetime(2026, 11, 1, 2, 10)),  # after it
        (utc(2026, 3, 8, 6, 55), NEW_YORK, datetime(2026, 3, 8, 1, 55)),  # just before the gap
        (utc(2026, 3, 8, 7, 5), NEW_YORK, datetime(2026, 3, 8, 2, 5)),  # just after: 02:05 read as EST is 07:05 UTC
        (utc(2026, 3, 8, 8, 5), NEW_YORK, datetime(2026, 3, 8, 4, 5)),
        (utc(2026, 4, 4, 14, 50), LORD_HOWE, datetime(2026, 4, 5, 1, 30)),  # a half-hour fall-back
        (utc(2026, 6, 1, 12, 0, 7), timezone.utc, datetime(2026, 6, 1, 12, 0, 7)),
    ],
)
def test_the_earliest_wall_time_that_can_name_an_instant_or_a_later_one(instant, zone, wall):
    assert earliest_wall(instant, zone) == wall
    assert latest_instant(wall, zone) >= instant  # a row with that wall time may be at or after the instant


def test_interval_bounds_and_texts():
    assert wall_time("2026-11-01T01:30:00") == datetime(2026, 11, 1, 1, 30) and wall_time("yesterday") is None
    naive = datetime(2026, 11, 1, 1, 30)
    assert as_instant(naive, NEW_YORK) == utc(2026, 11, 1, 5, 30)  # a start read early
    assert as_instant(naive, NEW_YORK, latest=True) == utc(2026, 11, 1, 6, 30)  # an end read late
    assert as_instant(utc(2026, 1, 1), NEW_YORK) == utc(2026, 1, 1)


def test_a_rows_change_time_is_the_earliest_instant_its_last_change_names():
    assert changed_instant("2026-11-01 01:30:00", NEW_YORK) == utc(2026, 11, 1, 5, 30)  # the repeated hour's early side
    assert changed_instant("not a time", NEW_YORK) is None and changed_instant(None, NEW_YORK) is None
