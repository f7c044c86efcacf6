"""An independent checker for plans: every violated constraint, hard and soft.

Written apart from the planners on purpose: it reads the problem and the plan as given,
works on real datetimes rather than the planners' slot grid, and re-derives the protocol
windows from the rule stated on :class:`~prolo.scheduling.planner.problem.CourseRequest`.
A bug shared by a planner and its checker would hide itself; keeping them apart makes
that unlikely.

Hard violations make a plan unusable (double booking, outside working hours, ...). Soft
ones are protocol window misses: clinically undesirable, but a valid plan may contain
them when capacity runs out, and planners are scored on how few they have.

Examples
--------
>>> from datetime import date, datetime, timedelta, UTC
>>> from zoneinfo import ZoneInfo
>>> from prolo.scheduling.planner.problem import (
...     CourseRequest, Plan, PlannedSession, Practitioner, Room, SchedulingProblem)
>>> day = Interval(datetime(2025, 1, 6, 8, tzinfo=UTC), datetime(2025, 1, 6, 16, tzinfo=UTC))
>>> problem = SchedulingProblem(
...     tz=ZoneInfo("UTC"), start=day.start, end=day.end + timedelta(days=30),
...     practitioners=(Practitioner("p1", (day,)),), rooms=(Room("r1", (day,)),),
...     courses=(CourseRequest("c1", "pat1", 1, (2, 4), date(2025, 1, 6)),))
>>> evening = day.end  # 16:00, after the practitioner's hours
>>> plan = Plan("hand-made", (PlannedSession("c1", 1, evening, evening + timedelta(minutes=30),
...     "p1", "r1", in_window=True, preference_met=True),), (), 0.0)
>>> sorted(v.kind for v in check_plan(problem, plan).hard)
['outside_working_hours', 'room_unavailable']
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from prolo.scheduling.planner.problem import CourseRequest, Plan, PlannedSession, SchedulingProblem
from prolo.scheduling.slots import Interval, merge

__all__ = ["HARD_KINDS", "SOFT_KINDS", "CheckReport", "Violation", "check_plan"]

HARD_KINDS = frozenset(
    {
        "unknown_course",
        "unknown_session",
        "unknown_practitioner",
        "unknown_room",
        "duplicate_session",
        "missing_session",
        "wrong_duration",
        "wrong_practitioner",
        "outside_horizon",
        "outside_working_hours",
        "room_unavailable",
        "closure",
        "practitioner_busy",
        "room_busy",
        "patient_busy",
        "practitioner_overlap",
        "room_overlap",
        "patient_overlap",
        "order",
        "same_day",
        "before_earliest",
        "in_window_misreported",
    }
)
SOFT_KINDS = frozenset({"window_early", "window_late"})

SessionKey = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken constraint: its ``kind``, the sessions involved and a readable message."""

    kind: str
    sessions: tuple[SessionKey, ...]
    message: str

    @property
    def hard(self) -> bool:
        """True unless this is a protocol window miss."""
        return self.kind not in SOFT_KINDS


@dataclass(frozen=True, slots=True)
class CheckReport:
    """Every violation found, plus the figures a plan is judged by."""

    violations: tuple[Violation, ...]
    placed: int
    within_window: int

    @property
    def hard(self) -> tuple[Violation, ...]:
        """Violations that make the plan unusable."""
        return tuple(v for v in self.violations if v.hard)

    @property
    def soft(self) -> tuple[Violation, ...]:
        """Protocol window misses."""
        return tuple(v for v in self.violations if not v.hard)

    @property
    def ok(self) -> bool:
        """True when the plan breaks no hard constraint."""
        return not self.hard

    def counts(self) -> dict[str, int]:
        """Number of violations per kind."""
        return dict(Counter(v.kind for v in self.violations))


class _Timeline:
    """Sorted disjoint intervals with O(log n) containment and overlap queries."""

    def __init__(self, intervals: Iterable[Interval]) -> None:
        self.intervals = merge(intervals)
        self.starts = [i.start for i in self.intervals]

    def _last_starting_before(self, moment: datetime, *, inclusive: bool) -> Interval | None:
        bisect = bisect_right if inclusive else bisect_left
        index = bisect(self.starts, moment)
        return self.intervals[index - 1] if index else None

    def contains(self, visit: Interval) -> bool:
        candidate = self._last_starting_before(visit.start, inclusive=True)
        return candidate is not None and candidate.end >= visit.end

    def overlaps(self, visit: Interval) -> bool:
        # only the last interval starting before the visit ends can reach into it,
        # because the intervals are disjoint and sorted
        candidate = self._last_starting_before(visit.end, inclusive=False)
        return candidate is not None and candidate.end > visit.start


def _key(session: PlannedSession) -> SessionKey:
    return (session.course_id, session.number)


def _overlaps(kind: str, owner: str, visits: list[tuple[Interval, SessionKey]]) -> list[Violation]:
    """Every pair of overlapping visits of one owner, by a sweep over start times."""
    found = []
    active: list[tuple[Interval, SessionKey]] = []
    for visit, key in sorted(visits):
        active = [(other, other_key) for other, other_key in active if other.end > visit.start]
        for _, other_key in active:
            found.append(
                Violation(kind, (other_key, key), f"{owner}: {other_key} and {key} overlap")
            )
        active.append((visit, key))
    return found


def _expected_window(
    course: CourseRequest, number: int, previous: date | None
) -> tuple[date, date] | None:
    """The protocol window of session ``number`` (None when the previous is missing)."""
    if number == 1:
        return course.earliest, course.earliest + timedelta(days=course.first_window_days)
    if previous is None:
        return None
    low, high = course.interval_weeks
    return previous + timedelta(weeks=low), previous + timedelta(weeks=high)


def check_plan(problem: SchedulingProblem, plan: Plan) -> CheckReport:
    """All hard and soft violations of ``plan`` against ``problem``.

    Hard kinds are listed in :data:`HARD_KINDS`, soft ones (window misses) in
    :data:`SOFT_KINDS`. Each violation names the sessions involved as
    ``(course_id, number)``.
    """
    tz = problem.tz
    violations: list[Violation] = []
    courses = {c.course_id: c for c in problem.courses}
    working = {p.id: _Timeline(p.working) for p in problem.practitioners}
    practitioner_busy = {p.id: _Timeline(p.busy) for p in problem.practitioners}
    available = {r.id: _Timeline(r.available) for r in problem.rooms}
    room_busy = {r.id: _Timeline(r.busy) for r in problem.rooms}
    patient_busy = {pid: _Timeline(busy) for pid, busy in problem.patient_busy.items()}
    closed = {day for closure in problem.closures for day in closure.days()}

    by_practitioner: dict[str, list[tuple[Interval, SessionKey]]] = defaultdict(list)
    by_room: dict[str, list[tuple[Interval, SessionKey]]] = defaultdict(list)
    by_patient: dict[str, list[tuple[Interval, SessionKey]]] = defaultdict(list)
    by_course: dict[str, dict[int, PlannedSession]] = defaultdict(dict)

    def report(kind: str, session: PlannedSession, message: str) -> None:
        key = _key(session)
        violations.append(Violation(kind, (key,), f"{key}: {message}"))

    for session in plan.sessions:
        course = courses.get(session.course_id)
        if course is None:
            report("unknown_course", session, "no such course in the problem")
            continue
        if not 1 <= session.number <= course.sessions:
            report("unknown_session", session, f"the course has {course.sessions} sessions")
            continue
        if session.number in by_course[session.course_id]:
            report("duplicate_session", session, "placed more than once")
            continue
        by_course[session.course_id][session.number] = session
        if session.end <= session.start:
            report("wrong_duration", session, "ends before it starts")
            continue
        visit = Interval(session.start, session.end)
        if visit.duration != course.duration:
            report("wrong_duration", session, f"lasts {visit.duration}, not {course.duration}")
        if not (problem.start <= visit.start and visit.end <= problem.end):
            report("outside_horizon", session, "not inside the planning horizon")
        if course.practitioner_id is not None and session.practitioner_id != course.practitioner_id:
            report(
                "wrong_practitioner",
                session,
                f"course is pinned to {course.practitioner_id}, not {session.practitioner_id}",
            )
        if session.practitioner_id not in working:
            report("unknown_practitioner", session, f"no practitioner {session.practitioner_id!r}")
        else:
            if not working[session.practitioner_id].contains(visit):
                report("outside_working_hours", session, f"{session.practitioner_id} is off")
            if practitioner_busy[session.practitioner_id].overlaps(visit):
                report("practitioner_busy", session, "clashes with an existing appointment")
            by_practitioner[session.practitioner_id].append((visit, _key(session)))
        if session.room_id not in available:
            report("unknown_room", session, f"no room {session.room_id!r}")
        else:
            if not available[session.room_id].contains(visit):
                report("room_unavailable", session, f"{session.room_id} is not available")
            if room_busy[session.room_id].overlaps(visit):
                report("room_busy", session, f"{session.room_id} is already booked")
            by_room[session.room_id].append((visit, _key(session)))
        busy = patient_busy.get(course.patient_id)
        if busy is not None and busy.overlaps(visit):
            report("patient_busy", session, f"patient {course.patient_id} has an appointment")
        by_patient[course.patient_id].append((visit, _key(session)))
        last_instant = visit.end - timedelta(microseconds=1)
        first_day, last_day = visit.start.astimezone(tz).date(), last_instant.astimezone(tz).date()
        touched = {first_day + timedelta(days=k) for k in range((last_day - first_day).days + 1)}
        if touched & closed:
            report("closure", session, f"the clinic is closed on {min(touched & closed)}")

    for kind, groups in (
        ("practitioner_overlap", by_practitioner),
        ("room_overlap", by_room),
        ("patient_overlap", by_patient),
    ):
        for owner, visits in groups.items():
            violations.extend(_overlaps(kind, owner, visits))

    within_window = 0
    for course_id, placed in by_course.items():
        course = courses[course_id]
        days_used: dict[date, int] = {}
        for number in sorted(placed):
            session = placed[number]
            day = session.start.astimezone(tz).date()
            if day in days_used:
                report("same_day", session, f"same day as session {days_used[day]}")
            days_used.setdefault(day, number)
            previous = placed.get(number - 1)
            if number > 1 and previous is None:
                report("order", session, f"placed without session {number - 1}")
            if previous is not None and session.start < previous.end:
                report("order", session, f"starts before session {number - 1} has ended")
            window = _expected_window(
                course, number, previous.start.astimezone(tz).date() if previous else None
            )
            if window is None:
                continue
            opens, closes = window
            inside = opens <= day <= closes
            within_window += inside
            if number == 1 and day < opens:
                report("before_earliest", session, f"{day} is before the earliest date {opens}")
            elif day < opens:
                report("window_early", session, f"{day} is before the window {opens}..{closes}")
            elif day > closes:
                report("window_late", session, f"{day} is after the window {opens}..{closes}")
            if session.in_window != inside:
                report(
                    "in_window_misreported",
                    session,
                    f"plan says in_window={session.in_window}, the window is {opens}..{closes}",
                )

    unplaced = Counter((u.course_id, u.number) for u in plan.unplaced)
    for course in problem.courses:
        for number in range(1, course.sessions + 1):
            key = (course.course_id, number)
            placed_here = number in by_course.get(course.course_id, {})
            listed = unplaced.get(key, 0)
            if placed_here and listed:
                kind, message = "duplicate_session", "placed and also listed as unplaced"
            elif listed > 1:
                kind, message = "duplicate_session", "listed as unplaced more than once"
            elif not placed_here and not listed:
                kind, message = "missing_session", "neither placed nor listed as unplaced"
            else:
                continue
            violations.append(Violation(kind, (key,), f"{key}: {message}"))
    return CheckReport(tuple(violations), len(plan.sessions), within_window)
