"""Slot arithmetic: intervals of aware datetimes, weekly hours, closures, free slots.

Everything here is pure and works in UTC. Clinic-facing inputs (weekly working hours,
closures, a patient's preferred times of day) are written in the clinic's local wall-clock
time and turned into UTC intervals by :func:`working_intervals`, which is the one place
that knows about daylight saving time.

All intervals are half-open, ``[start, end)``: a visit ending at 10:00 and one starting at
10:00 do not overlap.

Examples
--------
>>> from datetime import date, datetime, timedelta, UTC
>>> hours = WeeklyHours.of({0: [("09:00", "12:00")]})
>>> working = working_intervals(hours, start=date(2025, 3, 24), end=date(2025, 3, 25),
...                             tz="Europe/Berlin")
>>> working
[Interval(start='2025-03-24T08:00:00+00:00', end='2025-03-24T11:00:00+00:00')]
>>> busy = [Interval(datetime(2025, 3, 24, 9, tzinfo=UTC), datetime(2025, 3, 24, 10, tzinfo=UTC))]
>>> [s.strftime("%H:%M") for s in free_slots(working=working, busy=busy,
...     duration=timedelta(minutes=30), step=timedelta(minutes=30),
...     start=working[0].start, end=working[0].end)]
['08:00', '08:30', '10:00', '10:30']
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

__all__ = [
    "Closure",
    "Interval",
    "TimeWindow",
    "WeeklyHours",
    "as_zone",
    "closed_days",
    "free_slots",
    "local_to_utc",
    "merge",
    "overlaps",
    "subtract",
    "working_intervals",
]

WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name}={value!r} is a naive datetime; pass a timezone-aware one")


@dataclass(frozen=True, slots=True, order=True)
class Interval:
    """A half-open span of time ``[start, end)`` between two aware datetimes, kept in UTC.

    Any aware datetime is accepted and converted to UTC, so intervals built in different
    zones compare and sort correctly. ``start`` must be strictly before ``end``.

    Examples
    --------
    >>> from datetime import datetime
    >>> from zoneinfo import ZoneInfo
    >>> Interval(datetime(2025, 7, 1, 9, tzinfo=ZoneInfo("Europe/Berlin")),
    ...          datetime(2025, 7, 1, 10, tzinfo=ZoneInfo("Europe/Berlin")))
    Interval(start='2025-07-01T07:00:00+00:00', end='2025-07-01T08:00:00+00:00')
    """

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        _require_aware(self.start, "start")
        _require_aware(self.end, "end")
        if self.start >= self.end:
            raise ValueError(f"interval start={self.start!r} is not before end={self.end!r}")
        # frozen dataclass: normalising to UTC has to go through object.__setattr__
        object.__setattr__(self, "start", self.start.astimezone(UTC))
        object.__setattr__(self, "end", self.end.astimezone(UTC))

    @property
    def duration(self) -> timedelta:
        """Length of the interval."""
        return self.end - self.start

    def contains(self, other: Interval) -> bool:
        """True when ``other`` lies entirely inside this interval."""
        return self.start <= other.start and other.end <= self.end

    def __repr__(self) -> str:
        return f"Interval(start={self.start.isoformat()!r}, end={self.end.isoformat()!r})"


def overlaps(a: Interval, b: Interval) -> bool:
    """True when two half-open intervals share at least one instant.

    Examples
    --------
    >>> from datetime import datetime, UTC
    >>> nine, ten, eleven = (datetime(2025, 1, 6, h, tzinfo=UTC) for h in (9, 10, 11))
    >>> overlaps(Interval(nine, ten), Interval(ten, eleven))
    False
    >>> overlaps(Interval(nine, eleven), Interval(ten, eleven))
    True
    """
    return a.start < b.end and b.start < a.end


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted union of ``intervals``: overlapping or touching intervals become one.

    Examples
    --------
    >>> from datetime import datetime, UTC
    >>> h = [datetime(2025, 1, 6, i, tzinfo=UTC) for i in range(6)]
    >>> merge([Interval(h[3], h[4]), Interval(h[0], h[1]), Interval(h[1], h[2])])
    [Interval(start='2025-01-06T00:00:00+00:00', end='2025-01-06T02:00:00+00:00'), \
Interval(start='2025-01-06T03:00:00+00:00', end='2025-01-06T04:00:00+00:00')]
    """
    merged: list[Interval] = []
    for interval in sorted(intervals):
        if merged and interval.start <= merged[-1].end:
            if interval.end > merged[-1].end:
                merged[-1] = Interval(merged[-1].start, interval.end)
        else:
            merged.append(interval)
    return merged


def subtract(intervals: Iterable[Interval], removed: Iterable[Interval]) -> list[Interval]:
    """Sorted, merged parts of ``intervals`` not covered by any of ``removed``.

    Examples
    --------
    >>> from datetime import datetime, UTC
    >>> h = [datetime(2025, 1, 6, i, tzinfo=UTC) for i in range(6)]
    >>> subtract([Interval(h[0], h[5])], [Interval(h[1], h[2]), Interval(h[3], h[4])])
    [Interval(start='2025-01-06T00:00:00+00:00', end='2025-01-06T01:00:00+00:00'), \
Interval(start='2025-01-06T02:00:00+00:00', end='2025-01-06T03:00:00+00:00'), \
Interval(start='2025-01-06T04:00:00+00:00', end='2025-01-06T05:00:00+00:00')]
    """
    holes = merge(removed)
    result: list[Interval] = []
    first_hole = 0
    for interval in merge(intervals):
        cursor = interval.start
        # holes are sorted and so are the merged intervals: never look back past a
        # hole that ended before the current interval started
        while first_hole < len(holes) and holes[first_hole].end <= interval.start:
            first_hole += 1
        index = first_hole
        while index < len(holes) and holes[index].start < interval.end:
            hole = holes[index]
            if hole.start > cursor:
                result.append(Interval(cursor, hole.start))
            cursor = max(cursor, hole.end)
            index += 1
        if cursor < interval.end:
            result.append(Interval(cursor, interval.end))
    return result


def _parse_time(value: time | str, name: str) -> time:
    if isinstance(value, time):
        if value.tzinfo is not None:
            raise ValueError(f"{name}={value!r} must be a local wall-clock time without tzinfo")
        return value
    try:
        return time.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a time such as '09:00'") from None


@dataclass(frozen=True, slots=True, order=True)
class TimeWindow:
    """A wall-clock window within one local day, ``[start, end)``, e.g. 09:00-12:30.

    Windows never cross midnight: a clinic that works late writes two windows.

    Examples
    --------
    >>> TimeWindow.of("09:00", "12:30")
    TimeWindow(start=datetime.time(9, 0), end=datetime.time(12, 30))
    >>> TimeWindow.of("17:00", "09:00")
    Traceback (most recent call last):
    ...
    ValueError: time window start=datetime.time(17, 0) is not before end=datetime.time(9, 0)
    """

    start: time
    end: time

    def __post_init__(self) -> None:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError(f"time window {self.start!r}-{self.end!r} must be local, no tzinfo")
        if self.start >= self.end:
            raise ValueError(f"time window start={self.start!r} is not before end={self.end!r}")

    @classmethod
    def of(cls, start: time | str, end: time | str) -> TimeWindow:
        """Build a window from ``time`` values or ``"HH:MM"`` strings."""
        return cls(_parse_time(start, "start"), _parse_time(end, "end"))

    def holds(self, start: time, end: time) -> bool:
        """True when a local ``[start, end)`` on one day lies inside this window."""
        return self.start <= start and end <= self.end


@dataclass(frozen=True, slots=True)
class WeeklyHours:
    """Recurring weekly hours in local wall-clock time: one tuple of windows per weekday.

    ``days[0]`` is Monday, as in :meth:`datetime.date.weekday`. Windows within a day are
    sorted and must not overlap.

    Examples
    --------
    >>> hours = WeeklyHours.of(
    ...     {0: [("08:00", "12:00"), ("13:00", "17:00")], 4: [("08:00", "12:00")]}
    ... )
    >>> hours.describe()
    'Mon 08:00-12:00, 13:00-17:00; Fri 08:00-12:00'
    """

    days: tuple[tuple[TimeWindow, ...], ...] = field(default=((),) * 7)

    def __post_init__(self) -> None:
        if len(self.days) != 7:
            raise ValueError(f"days has {len(self.days)} entries; weekly hours need 7 (Mon-Sun)")
        for weekday, windows in enumerate(self.days):
            for before, after in zip(windows, windows[1:], strict=False):
                if after.start < before.end:
                    raise ValueError(
                        f"{WEEKDAY_NAMES[weekday]} windows {before} and {after} are unsorted "
                        "or overlap"
                    )

    @classmethod
    def of(
        cls, spec: Mapping[int, Sequence[tuple[time | str, time | str] | TimeWindow]]
    ) -> WeeklyHours:
        """Build from ``{weekday: [(start, end), ...]}``, weekday 0 = Monday."""
        days: list[list[TimeWindow]] = [[] for _ in range(7)]
        for weekday, windows in spec.items():
            if weekday not in range(7):
                raise ValueError(f"weekday={weekday!r} is not in 0 (Monday) .. 6 (Sunday)")
            for window in windows:
                days[weekday].append(
                    window if isinstance(window, TimeWindow) else TimeWindow.of(*window)
                )
        return cls(tuple(tuple(sorted(windows)) for windows in days))

    def describe(self) -> str:
        """Human-readable summary, e.g. ``'Mon 08:00-12:00; Fri 08:00-12:00'``."""
        parts = []
        for weekday, windows in enumerate(self.days):
            if windows:
                spans = ", ".join(
                    f"{w.start.strftime('%H:%M')}-{w.end.strftime('%H:%M')}" for w in windows
                )
                parts.append(f"{WEEKDAY_NAMES[weekday]} {spans}")
        return "; ".join(parts)


@dataclass(frozen=True, slots=True)
class Closure:
    """Local calendar days, ``first`` to ``last`` inclusive, on which the clinic is closed.

    Examples
    --------
    >>> from datetime import date
    >>> Closure(date(2025, 12, 24), date(2025, 12, 26), reason="Christmas").days()
    [datetime.date(2025, 12, 24), datetime.date(2025, 12, 25), datetime.date(2025, 12, 26)]
    """

    first: date
    last: date
    reason: str = ""

    def __post_init__(self) -> None:
        if self.last < self.first:
            raise ValueError(f"closure last={self.last!r} is before first={self.first!r}")

    def days(self) -> list[date]:
        """Every closed day, in order."""
        return [
            self.first + timedelta(days=offset)
            for offset in range((self.last - self.first).days + 1)
        ]


def closed_days(closures: Iterable[Closure]) -> frozenset[date]:
    """The set of local days covered by any of ``closures``."""
    return frozenset(day for closure in closures for day in closure.days())


def as_zone(tz: ZoneInfo | str) -> ZoneInfo:
    """``tz`` as a ZoneInfo; ValueError names an unknown zone key."""
    if isinstance(tz, ZoneInfo):
        return tz
    try:
        return ZoneInfo(tz)
    except (ValueError, LookupError):
        raise ValueError(f"tz={tz!r} is not a known IANA time zone") from None


def local_to_utc(day: date, clock: time, tz: ZoneInfo) -> datetime:
    """The UTC instant at which the clinic's wall clock in ``tz`` shows ``clock`` on ``day``.

    Wall times that happen twice (autumn, clocks go back) mean the first occurrence.
    Wall times that never happen (spring, clocks jump forward) mean the instant of the
    jump, so a window reaching into the skipped hour is shortened, never lengthened.

    Examples
    --------
    >>> from datetime import date, time
    >>> from zoneinfo import ZoneInfo
    >>> berlin = ZoneInfo("Europe/Berlin")
    >>> local_to_utc(date(2025, 3, 30), time(2, 30), berlin).isoformat()  # skipped
    '2025-03-30T01:00:00+00:00'
    >>> local_to_utc(date(2025, 10, 26), time(2, 30), berlin).isoformat()  # repeated
    '2025-10-26T00:30:00+00:00'
    """
    wall = datetime.combine(day, clock, tzinfo=tz)
    earlier = wall.astimezone(UTC)
    if earlier.astimezone(tz).replace(tzinfo=None) == wall.replace(tzinfo=None):
        return earlier
    # The wall time falls in a gap. fold=1 reads it with the offset after the jump, which
    # gives an instant before the jump; fold=0 one after. Bisect (to the second) for the
    # first instant that already uses the later offset: that is the jump.
    after_offset = wall.replace(fold=1).utcoffset()
    low = math.floor(wall.replace(fold=1).astimezone(UTC).timestamp())
    high = math.ceil(earlier.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, tz).utcoffset() == after_offset:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def working_intervals(
    hours: WeeklyHours,
    *,
    start: date,
    end: date,
    tz: ZoneInfo | str,
    closures: Iterable[Closure] = (),
) -> list[Interval]:
    """Expand weekly local ``hours`` to sorted UTC intervals for local days ``[start, end)``.

    Each window is read on the local calendar of ``tz``, so 09:00-17:00 stays 09:00-17:00
    on the clinic's clock across a daylight-saving change (its UTC offset moves instead).
    Days covered by ``closures`` produce nothing. Wall-clock rules for skipped and repeated
    hours are those of :func:`local_to_utc`; a window lying wholly in a skipped hour is
    dropped.

    Examples
    --------
    >>> from datetime import date
    >>> hours = WeeklyHours.of({d: [("09:00", "17:00")] for d in range(7)})
    >>> for i in working_intervals(hours, start=date(2025, 3, 29), end=date(2025, 3, 31),
    ...                            tz="Europe/Berlin"):
    ...     print(i.start.isoformat(), i.end.isoformat())
    2025-03-29T08:00:00+00:00 2025-03-29T16:00:00+00:00
    2025-03-30T07:00:00+00:00 2025-03-30T15:00:00+00:00
    """
    zone = as_zone(tz)
    if end < start:
        raise ValueError(f"end={end!r} is before start={start!r}")
    closed = closed_days(closures)
    result: list[Interval] = []
    for offset in range((end - start).days):
        day = start + timedelta(days=offset)
        if day in closed:
            continue
        for window in hours.days[day.weekday()]:
            begin = local_to_utc(day, window.start, zone)
            finish = local_to_utc(day, window.end, zone)
            if begin < finish:
                result.append(Interval(begin, finish))
    return merge(result)


def free_slots(
    *,
    working: Iterable[Interval],
    busy: Iterable[Interval],
    duration: timedelta,
    step: timedelta,
    start: datetime,
    end: datetime,
) -> list[datetime]:
    """Start times ``start + k * step`` where a visit of ``duration`` fits, in order.

    A start ``s`` qualifies when ``[s, s + duration)`` lies inside ``[start, end)``, inside
    the union of ``working`` (adjacent working intervals join up) and overlaps none of
    ``busy``. Candidates sit on the grid anchored at ``start`` so that every caller sees
    the same slots.

    Examples
    --------
    >>> from datetime import datetime, timedelta, UTC
    >>> day = Interval(datetime(2025, 1, 6, 9, tzinfo=UTC), datetime(2025, 1, 6, 11, tzinfo=UTC))
    >>> [s.strftime("%H:%M") for s in free_slots(working=[day], busy=[],
    ...     duration=timedelta(minutes=45), step=timedelta(minutes=30),
    ...     start=day.start, end=day.end)]
    ['09:00', '09:30', '10:00']
    """
    _require_aware(start, "start")
    _require_aware(end, "end")
    if duration <= timedelta(0):
        raise ValueError(f"duration={duration!r} must be positive")
    if step <= timedelta(0):
        raise ValueError(f"step={step!r} must be positive")
    if end <= start:
        return []
    window = Interval(start, end)
    free = subtract(
        (
            Interval(max(w.start, window.start), min(w.end, window.end))
            for w in working
            if overlaps(w, window)
        ),
        busy,
    )
    slots: list[datetime] = []
    for interval in free:
        # first grid point at or after the interval start; integer microseconds keep the
        # ceiling exact where float division of timedeltas would not
        behind = interval.start - window.start
        steps = -(-behind // step)
        candidate = window.start + steps * step
        while candidate + duration <= interval.end:
            slots.append(candidate.astimezone(UTC))
            candidate += step
    return slots
