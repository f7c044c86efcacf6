"""What the planners take and what they return: plain, validated, immutable values.

The protocol window rule lives in :class:`CourseRequest`'s docstring; the planners and the
independent checker in :mod:`prolo.scheduling.check` each implement it from there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from types import MappingProxyType
from zoneinfo import ZoneInfo

from prolo.scheduling.slots import WEEKDAY_NAMES, Closure, Interval, TimeWindow

__all__ = [
    "CourseRequest",
    "Plan",
    "PlannedSession",
    "Practitioner",
    "Preferences",
    "Room",
    "SchedulingProblem",
    "SolveStats",
    "UnplacedSession",
]

VISIT = timedelta(minutes=30)
QUARTER_HOUR = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class Practitioner:
    """A clinician who can give injections during ``working`` except when ``busy`` (UTC)."""

    id: str
    working: tuple[Interval, ...]
    busy: tuple[Interval, ...] = ()


@dataclass(frozen=True, slots=True)
class Room:
    """A treatment room usable during ``available`` except when ``busy`` (UTC)."""

    id: str
    available: tuple[Interval, ...]
    busy: tuple[Interval, ...] = ()


@dataclass(frozen=True, slots=True)
class Preferences:
    """When a patient would rather come: local weekdays (0 = Monday) and times of day.

    An empty ``weekdays`` or ``times`` means "any". Preferences are wishes, not rules:
    planners try to meet them after the protocol windows.

    Examples
    --------
    >>> from datetime import datetime
    >>> from zoneinfo import ZoneInfo
    >>> mornings = Preferences(weekdays=frozenset({1, 3}), times=(TimeWindow.of("08:00", "12:00"),))
    >>> tue = datetime(2025, 1, 7, 11, 30, tzinfo=ZoneInfo("Europe/Berlin"))
    >>> mornings.met(tue, tue + VISIT), mornings.met(tue + VISIT, tue + 2 * VISIT)
    (True, False)
    """

    weekdays: frozenset[int] = frozenset()
    times: tuple[TimeWindow, ...] = ()

    def __post_init__(self) -> None:
        bad = sorted(day for day in self.weekdays if day not in range(7))
        if bad:
            raise ValueError(f"weekdays={bad!r} are not in 0 (Monday) .. 6 (Sunday)")

    def met(self, start: datetime, end: datetime) -> bool:
        """True when the visit ``[start, end)``, given in the clinic's zone, suits the patient."""
        if self.weekdays and start.weekday() not in self.weekdays:
            return False
        if not self.times:
            return True
        if end.date() != start.date():
            return False
        return any(window.holds(start.time(), end.time()) for window in self.times)

    def describe(self) -> str:
        """Short text such as ``'Tue, Thu 08:00-12:00'``."""
        days = ", ".join(WEEKDAY_NAMES[d] for d in sorted(self.weekdays)) or "any day"
        times = ", ".join(
            f"{w.start.strftime('%H:%M')}-{w.end.strftime('%H:%M')}" for w in self.times
        )
        return f"{days} {times or 'any time'}"


@dataclass(frozen=True, slots=True)
class CourseRequest:
    """A treatment course to plan: ``sessions`` visits of ``duration`` for one patient.

    The protocol window of each session is a range of local calendar days in the clinic's
    zone, both ends included:

    - session 1: from ``earliest`` to ``earliest + first_window_days``;
    - session k > 1: from ``d + 7 * interval_weeks[0]`` to ``d + 7 * interval_weeks[1]``
      days, where ``d`` is the local day session k - 1 actually took place.

    Planners never place a session before its window opens; a session after its window
    closes is placed but counted as outside its window, and the next window follows the
    day it actually took place. ``practitioner_id`` pins the course to one clinician.
    """

    course_id: str
    patient_id: str
    sessions: int
    interval_weeks: tuple[int, int]
    earliest: date
    practitioner_id: str | None = None
    preferences: Preferences = field(default_factory=Preferences)
    duration: timedelta = VISIT
    first_window_days: int = 14

    def __post_init__(self) -> None:
        if self.sessions < 1:
            raise ValueError(f"course {self.course_id}: sessions={self.sessions!r} must be >= 1")
        low, high = self.interval_weeks
        # at least a week between sessions keeps "one session per course per day" and the
        # week-by-week decomposition of the CP-SAT planner trivially sound
        if not 1 <= low <= high:
            raise ValueError(
                f"course {self.course_id}: interval_weeks={self.interval_weeks!r} needs "
                "1 <= min <= max"
            )
        if self.duration <= timedelta(0):
            raise ValueError(f"course {self.course_id}: duration={self.duration!r} must be > 0")
        if self.first_window_days < 0:
            raise ValueError(
                f"course {self.course_id}: first_window_days={self.first_window_days!r} < 0"
            )


@dataclass(frozen=True, slots=True)
class SchedulingProblem:
    """Everything a planner needs: the horizon, resources, commitments and course requests.

    ``start`` and ``end`` bound the planning horizon (visits lie inside it); ``tz`` is the
    clinic's zone, which defines calendar days, closures and preferences. Planners place
    visits on the grid ``start + k * step``; every duration must be a multiple of ``step``.
    ``patient_busy`` holds each patient's existing appointments (UTC).
    """

    tz: ZoneInfo
    start: datetime
    end: datetime
    practitioners: tuple[Practitioner, ...]
    rooms: tuple[Room, ...]
    courses: tuple[CourseRequest, ...]
    patient_busy: Mapping[str, tuple[Interval, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    closures: tuple[Closure, ...] = ()
    step: timedelta = QUARTER_HOUR

    def __post_init__(self) -> None:
        horizon = Interval(self.start, self.end)  # validates awareness and order
        object.__setattr__(self, "start", horizon.start)
        object.__setattr__(self, "end", horizon.end)
        if self.step <= timedelta(0):
            raise ValueError(f"step={self.step!r} must be positive")
        for kind, ids in (
            ("practitioner", [p.id for p in self.practitioners]),
            ("room", [r.id for r in self.rooms]),
            ("course", [c.course_id for c in self.courses]),
        ):
            duplicates = sorted({i for i in ids if ids.count(i) > 1})
            if duplicates:
                raise ValueError(f"duplicate {kind} ids: {duplicates!r}")
        known = {p.id for p in self.practitioners}
        for course in self.courses:
            if course.practitioner_id is not None and course.practitioner_id not in known:
                raise ValueError(
                    f"course {course.course_id}: practitioner_id={course.practitioner_id!r} "
                    "is not a practitioner of this problem"
                )
            if course.duration % self.step:
                raise ValueError(
                    f"course {course.course_id}: duration={course.duration!r} is not a "
                    f"multiple of step={self.step!r}"
                )

    def course(self, course_id: str) -> CourseRequest:
        """The course with ``course_id``; ValueError if there is none."""
        for course in self.courses:
            if course.course_id == course_id:
                return course
        raise ValueError(f"course_id={course_id!r} is not in this problem")

    @property
    def sessions_requested(self) -> int:
        """Total number of sessions over all courses."""
        return sum(course.sessions for course in self.courses)


@dataclass(frozen=True, slots=True)
class PlannedSession:
    """Session ``number`` (1-based) of a course, placed at ``[start, end)`` UTC."""

    course_id: str
    number: int
    start: datetime
    end: datetime
    practitioner_id: str
    room_id: str
    in_window: bool
    preference_met: bool


@dataclass(frozen=True, slots=True)
class UnplacedSession:
    """Session ``number`` of a course the planner could not place, and why."""

    course_id: str
    number: int
    reason: str


@dataclass(frozen=True, slots=True)
class SolveStats:
    """Objective and proven bound, summed over the optimisation sub-problems.

    Both are in the planner's weighted units (see :func:`plan_cpsat`), and the bound is a
    bound for the decomposition, not for the whole problem solved at once.
    """

    objective: int
    best_bound: int
    subproblems: int
    proven_optimal: int

    @property
    def gap(self) -> float:
        """Relative gap ``(bound - objective) / bound``; 0 when both are 0."""
        if self.best_bound == 0:
            return 0.0
        return (self.best_bound - self.objective) / abs(self.best_bound)


@dataclass(frozen=True, slots=True)
class Plan:
    """A planner's answer: placed sessions, unplaced ones with reasons, and run figures."""

    planner: str
    sessions: tuple[PlannedSession, ...]
    unplaced: tuple[UnplacedSession, ...]
    wall_time_s: float
    stats: SolveStats | None = None

    @property
    def placed(self) -> int:
        """Number of placed sessions."""
        return len(self.sessions)

    @property
    def within_window(self) -> int:
        """Number of placed sessions inside their protocol window."""
        return sum(1 for s in self.sessions if s.in_window)

    @property
    def preferences_met(self) -> int:
        """Number of placed sessions at a time the patient prefers."""
        return sum(1 for s in self.sessions if s.preference_met)
