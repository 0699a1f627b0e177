"""CareCloud's local times without an offset, read so that no change is skipped across a DST transition.

CareCloud writes ``last_change`` (and ``valid_to``) as ``YYYY-MM-DD HH:MM:SS`` in the project's time zone, without an
offset, and sorts by that text. Twice a year such a *wall time* is not one instant:

* in the repeated hour of a fall-back (``01:30`` in New York on the first Sunday of November) it names two instants,
  an hour apart;
* in the gap of a spring-forward (``02:30`` on the second Sunday of March) it names none; a writer that lags the
  transition may still write it, meaning either offset.

The incremental read resolves every doubt towards reading more: a row's time is taken as the **earliest** instant
its wall time can name (the watermark it yields is then never later than the change), and a read that must see
every change at or after an instant starts at the **earliest wall time** that can name such an instant (the
ambiguous hour is read from its early side).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone, tzinfo

#: ``YYYY-MM-DD HH:MM:SS`` (also accepted with a ``T``): how CareCloud writes ``valid_to`` and ``last_change``.
DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"
#: how far around an instant the zone's transitions are looked for (no zone shifts its clock by more)
_REACH = timedelta(hours=4)
_STEP = timedelta(minutes=10)


def wall_time(value: object) -> datetime | None:
    """A CareCloud ``YYYY-MM-DD HH:MM:SS`` text as a naive datetime (the wall time), or ``None`` if unreadable.

    :param value: the text from the API.
    """
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value.strip().replace("T", " ")[:19], DATETIME_FORMAT)
    except ValueError:
        return None


def changed_instant(value: object, tz: tzinfo) -> datetime | None:
    """When a row changed, for a watermark: the earliest UTC instant its ``last_change`` text can name in ``tz``, or
    ``None`` when it is unreadable.

    :param value: the ``last_change`` text from the API.
    :param tz: the project's time zone.
    """
    wall = wall_time(value)
    return None if wall is None else earliest_instant(wall, tz)


def _instants(wall: datetime, tz: tzinfo) -> tuple[datetime, datetime]:
    """The UTC instants ``wall`` names with ``fold=0`` and ``fold=1`` (equal outside a transition)."""
    return tuple(wall.replace(tzinfo=tz, fold=fold).astimezone(timezone.utc) for fold in (0, 1))  # type: ignore[return-value]


def earliest_instant(wall: datetime, tz: tzinfo) -> datetime:
    """The earliest UTC instant the wall time ``wall`` can name in ``tz``.

    :param wall: a naive wall time.
    :param tz: the project's time zone.
    """
    return min(_instants(wall, tz))


def latest_instant(wall: datetime, tz: tzinfo) -> datetime:
    """The latest UTC instant the wall time ``wall`` can name in ``tz``.

    :param wall: a naive wall time.
    :param tz: the project's time zone.
    """
    return max(_instants(wall, tz))


def as_local_aware(wall: datetime, tz: tzinfo) -> datetime:
    """``wall`` as an aware datetime in ``tz`` naming its earliest instant (``fold`` chosen accordingly).

    :param wall: a naive wall time.
    :param tz: the project's time zone.
    """
    early, late = (wall.replace(tzinfo=tz, fold=fold) for fold in (0, 1))
    return late if late.astimezone(timezone.utc) < early.astimezone(timezone.utc) else early


def as_instant(value: datetime, tz: tzinfo, *, latest: bool = False) -> datetime:
    """An interval bound as a UTC instant. An aware one is converted; a naive one is a project-local wall time, taken
    as the earliest instant it can name, or with ``latest`` the latest (a start read early and an end read late
    widen an interval, never narrow it).

    :param value: the bound.
    :param tz: the project's time zone.
    :param latest: read a naive bound as the latest instant it can name.
    """
    if value.tzinfo is not None:
        return value.astimezone(timezone.utc)
    return latest_instant(value, tz) if latest else earliest_instant(value, tz)


def earliest_wall(instant: datetime, tz: tzinfo) -> datetime:
    """The earliest wall time in ``tz`` that can name ``instant`` or a later one: a read that stops at the first row
    with an earlier wall time misses no row changed at or after ``instant``, whichever side of a DST transition its
    writer stood on (the repeated hour is read from its early side).

    :param instant: an aware datetime.
    :param tz: the project's time zone.
    """
    start = instant.astimezone(timezone.utc)
    naive = start.replace(tzinfo=None)
    # Between transitions, the latest instant a wall time names rises with it; so the answer is ``start`` read at
    # one of the offsets in use nearby, or a wall time where a transition nearby begins or ends.
    candidates = {start.astimezone(tz).replace(tzinfo=None)}
    moment, previous = start - _REACH, None
    while moment <= start + _REACH:
        offset = moment.astimezone(tz).utcoffset() or timedelta(0)
        candidates.add(naive + offset)
        if previous is not None and offset != previous[1]:
            edge = _transition(previous[0], moment, tz).replace(tzinfo=None)
            candidates.update((edge + previous[1], edge + offset))
        previous = (moment, offset)
        moment += _STEP
    return min(wall for wall in candidates if latest_instant(wall, tz) >= start)


def _transition(before: datetime, after: datetime, tz: tzinfo) -> datetime:
    """The first instant (UTC, to the second) in ``(before, after]`` with ``after``'s offset in ``tz``."""
    target = after.astimezone(tz).utcoffset()
    low, high = before, after
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(tz).utcoffset() == target:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0)
