"""Slot arithmetic: intervals, DST-aware weekly hours, free slots."""

from __future__ import annotations

import doctest
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prolo.scheduling import slots
from prolo.scheduling.slots import (
    Closure,
    Interval,
    TimeWindow,
    WeeklyHours,
    free_slots,
    local_to_utc,
    merge,
    overlaps,
    subtract,
    working_intervals,
)

BASE = datetime(2025, 1, 6, 8, tzinfo=UTC)
EVERY_DAY_9_TO_5 = WeeklyHours.of({d: [("09:00", "17:00")] for d in range(7)})


def at(minute: int) -> datetime:
    return BASE + timedelta(minutes=minute)


def span(first: int, last: int) -> Interval:
    return Interval(at(first), at(last))


def test_doctests_pass() -> None:
    result = doctest.testmod(slots, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 10
    assert result.failed == 0


# --- Interval -------------------------------------------------------------------------


def test_interval_normalises_to_utc() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    interval = Interval(
        datetime(2025, 7, 1, 9, tzinfo=berlin), datetime(2025, 7, 1, 10, tzinfo=berlin)
    )
    assert interval.start == datetime(2025, 7, 1, 7, tzinfo=UTC)
    assert interval.start.tzinfo is UTC
    assert interval.duration == timedelta(hours=1)


def test_interval_rejects_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="naive"):
        Interval(datetime(2025, 1, 1, 9), at(0))  # noqa: DTZ001 - the point of the test


def test_interval_rejects_empty_and_reversed() -> None:
    with pytest.raises(ValueError, match="not before"):
        Interval(at(10), at(10))
    with pytest.raises(ValueError, match="not before"):
        Interval(at(10), at(0))


def test_overlaps_is_half_open() -> None:
    assert not overlaps(span(0, 30), span(30, 60))
    assert overlaps(span(0, 31), span(30, 60))
    assert overlaps(span(0, 60), span(10, 20))
    assert overlaps(span(10, 20), span(0, 60))


def test_subtract_cuts_holes_and_edges() -> None:
    result = subtract([span(0, 100), span(200, 300)], [span(-10, 10), span(50, 60), span(250, 400)])
    assert result == [span(10, 50), span(60, 100), span(200, 250)]


# --- weekly hours and closures ---------------------------------------------------------


def test_time_window_and_weekly_hours_validation() -> None:
    with pytest.raises(ValueError, match="not a time"):
        TimeWindow.of("9am", "10:00")
    with pytest.raises(ValueError, match="weekday=7"):
        WeeklyHours.of({7: [("09:00", "10:00")]})
    with pytest.raises(ValueError, match="overlap"):
        WeeklyHours.of({0: [("09:00", "12:00"), ("11:00", "13:00")]})
    with pytest.raises(ValueError, match="7"):
        WeeklyHours(days=((),))
    with pytest.raises(ValueError, match="before first"):
        Closure(date(2025, 1, 2), date(2025, 1, 1))
    with pytest.raises(ValueError, match="Mars/Olympus"):
        working_intervals(
            EVERY_DAY_9_TO_5, start=date(2025, 1, 1), end=date(2025, 1, 2), tz="Mars/Olympus"
        )
    with pytest.raises(ValueError, match="before start"):
        working_intervals(EVERY_DAY_9_TO_5, start=date(2025, 1, 2), end=date(2025, 1, 1), tz="UTC")


# (zone, date of the change, UTC hour of 09:00 local before, after)
DST_CHANGES = [
    pytest.param("Europe/Berlin", date(2025, 3, 30), 8, 7, id="berlin-spring-forward"),
    pytest.param("Europe/Berlin", date(2025, 10, 26), 7, 8, id="berlin-fall-back"),
    pytest.param("America/New_York", date(2025, 3, 9), 14, 13, id="new-york-spring-forward"),
    pytest.param("America/New_York", date(2025, 11, 2), 13, 14, id="new-york-fall-back"),
]


@pytest.mark.parametrize(("zone", "change", "utc_before", "utc_after"), DST_CHANGES)
def test_working_hours_keep_local_clock_across_dst(
    zone: str, change: date, utc_before: int, utc_after: int
) -> None:
    tz = ZoneInfo(zone)
    intervals = working_intervals(
        EVERY_DAY_9_TO_5, start=change - timedelta(days=3), end=change + timedelta(days=4), tz=tz
    )
    assert len(intervals) == 7
    for interval in intervals:
        local_start, local_end = interval.start.astimezone(tz), interval.end.astimezone(tz)
        assert (local_start.time(), local_end.time()) == (time(9), time(17))
        assert local_start.date() == local_end.date()
        # eight real hours every day, including the day of the change itself
        assert interval.duration == timedelta(hours=8)
        expected = utc_before if local_start.date() < change else utc_after
        assert interval.start.hour == expected


def test_working_hours_on_the_night_of_the_change() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    night = WeeklyHours.of({6: [("01:00", "04:00")]})
    # spring: 02:00-03:00 does not exist, so the window is two real hours long
    (spring,) = working_intervals(night, start=date(2025, 3, 30), end=date(2025, 3, 31), tz=berlin)
    assert spring.duration == timedelta(hours=2)
    # autumn: 02:00-03:00 happens twice, so the window is four real hours long
    (autumn,) = working_intervals(
        night, start=date(2025, 10, 26), end=date(2025, 10, 27), tz=berlin
    )
    assert autumn.duration == timedelta(hours=4)
    # a window wholly inside the skipped hour yields nothing rather than a bogus interval
    skipped = WeeklyHours.of({6: [("02:10", "02:50")]})
    assert (
        working_intervals(skipped, start=date(2025, 3, 30), end=date(2025, 3, 31), tz=berlin) == []
    )
    # ending inside the skipped hour ends at the jump
    assert local_to_utc(date(2025, 3, 30), time(2, 45), berlin) == datetime(
        2025, 3, 30, 1, tzinfo=UTC
    )


def test_closures_remove_whole_days() -> None:
    hours = WeeklyHours.of({d: [("08:00", "12:00"), ("13:00", "17:00")] for d in range(5)})
    intervals = working_intervals(
        hours,
        start=date(2025, 4, 14),
        end=date(2025, 4, 26),
        tz="Europe/Berlin",
        closures=[Closure(date(2025, 4, 18), date(2025, 4, 21), reason="Easter")],
    )
    days = {i.start.astimezone(ZoneInfo("Europe/Berlin")).date() for i in intervals}
    assert days == {date(2025, 4, d) for d in (14, 15, 16, 17, 22, 23, 24, 25)}
    assert len(intervals) == 16


@settings(max_examples=100, deadline=None)
@given(
    zone=st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "UTC"]),
    first=st.dates(min_value=date(2024, 1, 1), max_value=date(2026, 12, 31)),
    days=st.integers(min_value=0, max_value=21),
    start_minute=st.integers(min_value=0, max_value=23 * 60),
    length=st.integers(min_value=15, max_value=10 * 60),
    weekdays=st.sets(st.integers(min_value=0, max_value=6), min_size=1),
)
def test_working_intervals_follow_the_local_clock(
    zone: str, first: date, days: int, start_minute: int, length: int, weekdays: set[int]
) -> None:
    tz = ZoneInfo(zone)
    end_minute = min(start_minute + length, 23 * 60 + 59)
    window = (time(start_minute // 60, start_minute % 60), time(end_minute // 60, end_minute % 60))
    hours = WeeklyHours.of({d: [window] for d in weekdays})
    intervals = working_intervals(hours, start=first, end=first + timedelta(days=days), tz=tz)
    assert intervals == sorted(intervals)

    def exists(day: date, clock: time) -> bool:
        wall = datetime.combine(day, clock, tzinfo=tz)
        return wall.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == wall.replace(tzinfo=None)

    for interval in intervals:
        local_start, local_end = interval.start.astimezone(tz), interval.end.astimezone(tz)
        day = local_start.date()
        assert first <= day < first + timedelta(days=days)
        assert day.weekday() in weekdays
        # wall times that exist are kept exactly; skipped ones move to the jump
        if exists(day, window[0]):
            assert local_start.replace(tzinfo=None) == datetime.combine(day, window[0])
        if exists(day, window[1]):
            assert local_end.replace(tzinfo=None) == datetime.combine(day, window[1])
    expected_days = [
        first + timedelta(days=n)
        for n in range(days)
        if (first + timedelta(days=n)).weekday() in weekdays
    ]
    # only a window lying wholly in a skipped hour may disappear
    assert len(expected_days) - 1 <= len(intervals) <= len(expected_days)


# --- free slots ----------------------------------------------------------------------


def test_free_slots_validates_arguments() -> None:
    kwargs = {"working": [], "busy": [], "start": at(0), "end": at(60)}
    with pytest.raises(ValueError, match="duration"):
        free_slots(duration=timedelta(0), step=timedelta(minutes=15), **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="step"):
        free_slots(duration=timedelta(minutes=30), step=timedelta(0), **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="naive"):
        free_slots(
            working=[],
            busy=[],
            duration=timedelta(minutes=30),
            step=timedelta(minutes=15),
            start=datetime(2025, 1, 1),  # noqa: DTZ001 - the point of the test
            end=at(60),
        )
    assert (
        free_slots(
            working=[span(0, 60)],
            busy=[],
            duration=timedelta(minutes=30),
            step=timedelta(minutes=15),
            start=at(60),
            end=at(0),
        )
        == []
    )


def test_free_slots_joins_adjacent_working_intervals_and_respects_the_grid() -> None:
    result = free_slots(
        working=[span(0, 30), span(30, 60)],
        busy=[span(50, 55)],
        duration=timedelta(minutes=30),
        step=timedelta(minutes=15),
        start=at(-5),
        end=at(120),
    )
    # grid anchored at -5: 10 and 25 fit before the busy block at 50
    assert result == [at(10)]


def brute_force(
    working: list[Interval], busy: list[Interval], duration: int, step: int, first: int, last: int
) -> list[datetime]:
    """Minute-by-minute scan: a start fits when every minute of the visit is free."""

    def free_minute(minute: int) -> bool:
        moment = Interval(at(minute), at(minute + 1))
        return any(w.contains(moment) for w in working) and not any(
            overlaps(b, moment) for b in busy
        )

    return [
        at(s)
        for s in range(first, last - duration + 1, step)
        if all(free_minute(m) for m in range(s, s + duration))
    ]


intervals_strategy = st.lists(
    st.tuples(st.integers(0, 300), st.integers(1, 120)).map(lambda p: span(p[0], p[0] + p[1])),
    max_size=6,
)


@settings(max_examples=200, deadline=None)
@given(
    working=intervals_strategy,
    busy=intervals_strategy,
    duration=st.integers(1, 60),
    step=st.integers(1, 30),
    first=st.integers(-20, 100),
    length=st.integers(0, 400),
)
def test_free_slots_are_sound_and_complete(
    working: list[Interval],
    busy: list[Interval],
    duration: int,
    step: int,
    first: int,
    length: int,
) -> None:
    result = free_slots(
        working=working,
        busy=busy,
        duration=timedelta(minutes=duration),
        step=timedelta(minutes=step),
        start=at(first),
        end=at(first + length),
    )
    for slot in result:
        visit = Interval(slot, slot + timedelta(minutes=duration))
        assert any(w.contains(visit) for w in merge(working))
        assert not any(overlaps(visit, b) for b in busy)
        assert at(first) <= visit.start and visit.end <= at(first + length)
    assert result == brute_force(working, busy, duration, step, first, first + length)
