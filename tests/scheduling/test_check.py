"""The independent checker: hand-made plans, each breaking one rule, are caught."""

from __future__ import annotations

import doctest
from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from prolo.scheduling import check
from prolo.scheduling.check import HARD_KINDS, SOFT_KINDS, check_plan
from prolo.scheduling.planner import (
    CourseRequest,
    Plan,
    PlannedSession,
    Practitioner,
    Room,
    SchedulingProblem,
    UnplacedSession,
)
from prolo.scheduling.slots import Closure, Interval, WeeklyHours, working_intervals

BERLIN = ZoneInfo("Europe/Berlin")
MON = date(2025, 3, 3)
TUE, WED, THU, FRI = (MON + timedelta(days=d) for d in range(1, 5))
NINE_TO_NOON = WeeklyHours.of({d: [("09:00", "12:00")] for d in range(5)})
NINE_TO_ELEVEN = WeeklyHours.of({d: [("09:00", "11:00")] for d in range(5)})


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=BERLIN)


def hours(weekly: WeeklyHours) -> tuple[Interval, ...]:
    # closures deliberately not applied here: the checker must catch them on its own
    return tuple(working_intervals(weekly, start=MON, end=MON + timedelta(weeks=6), tz=BERLIN))


PROBLEM = SchedulingProblem(
    tz=BERLIN,
    start=at(MON, 0),
    end=at(MON + timedelta(weeks=6), 0),
    practitioners=(
        Practitioner("p1", hours(NINE_TO_NOON), busy=(Interval(at(TUE, 9), at(TUE, 10)),)),
        Practitioner("p2", hours(NINE_TO_NOON)),
        Practitioner("p3", hours(NINE_TO_NOON)),
    ),
    rooms=(
        Room("r1", hours(NINE_TO_NOON), busy=(Interval(at(WED, 9), at(WED, 10)),)),
        Room("r2", hours(NINE_TO_ELEVEN)),
        Room("r3", hours(NINE_TO_NOON)),
    ),
    courses=(
        CourseRequest("c1", "ann", 3, (2, 3), MON),
        CourseRequest("c2", "bob", 2, (1, 2), MON, practitioner_id="p2"),
        CourseRequest("c3", "carl", 1, (1, 2), TUE),
        CourseRequest("c4", "ann", 1, (1, 2), MON),
    ),
    patient_busy={"ann": (Interval(at(THU, 9), at(THU, 10)),)},
    closures=(Closure(FRI, FRI, "team training"),),
)


def visit(
    course_id: str,
    number: int,
    start: datetime,
    practitioner: str,
    room: str,
    *,
    in_window: bool = True,
    minutes: int = 30,
) -> PlannedSession:
    return PlannedSession(
        course_id=course_id,
        number=number,
        start=start,
        end=start + timedelta(minutes=minutes),
        practitioner_id=practitioner,
        room_id=room,
        in_window=in_window,
        preference_met=True,
    )


GOOD = Plan(
    planner="hand-made",
    sessions=(
        visit("c1", 1, at(MON, 9), "p1", "r1"),
        visit("c1", 2, at(MON + timedelta(weeks=2), 9), "p1", "r1"),
        visit("c1", 3, at(MON + timedelta(weeks=4), 9), "p1", "r1"),
        visit("c2", 1, at(MON, 9), "p2", "r2"),
        visit("c2", 2, at(MON + timedelta(weeks=1), 9), "p2", "r2"),
        visit("c3", 1, at(TUE, 10), "p2", "r3"),
        visit("c4", 1, at(WED, 10), "p3", "r3"),
    ),
    unplaced=(),
    wall_time_s=0.0,
)


def swap(plan: Plan, key: tuple[str, int], new: PlannedSession | None) -> Plan:
    """``plan`` with session ``key`` replaced by ``new`` (or removed)."""
    kept = [s for s in plan.sessions if (s.course_id, s.number) != key]
    return replace(plan, sessions=tuple(kept + ([new] if new else [])))


def test_doctests_pass() -> None:
    assert doctest.testmod(check).failed == 0


def test_a_good_plan_has_no_violations() -> None:
    report = check_plan(PROBLEM, GOOD)
    assert report.violations == ()
    assert report.ok
    assert (report.placed, report.within_window) == (7, 7)


def test_touching_an_appointment_is_not_an_overlap() -> None:
    # p1 is busy until 10:00 on Tuesday; half-open intervals let a visit start at 10:00
    plan = swap(GOOD, ("c1", 1), visit("c1", 1, at(TUE, 10), "p1", "r1"))
    plan = swap(plan, ("c1", 2), visit("c1", 2, at(TUE + timedelta(weeks=2), 10), "p1", "r1"))
    plan = swap(plan, ("c1", 3), visit("c1", 3, at(TUE + timedelta(weeks=4), 10), "p1", "r1"))
    assert check_plan(PROBLEM, plan).violations == ()


Breaker = Callable[[Plan], Plan]

HARD_CASES: list[tuple[str, Breaker, set[str]]] = [
    (
        "after hours",
        lambda p: swap(p, ("c4", 1), visit("c4", 1, at(WED, 12), "p3", "r3")),
        {"outside_working_hours", "room_unavailable"},
    ),
    (
        "room closes at eleven",
        lambda p: swap(p, ("c4", 1), visit("c4", 1, at(WED, 11), "p3", "r2")),
        {"room_unavailable"},
    ),
    (
        "clinic closed",
        lambda p: swap(p, ("c4", 1), visit("c4", 1, at(FRI, 10), "p3", "r3")),
        {"closure"},
    ),
    (
        "practitioner has an appointment",
        lambda p: swap(p, ("c4", 1), visit("c4", 1, at(TUE, 9, 30), "p1", "r3")),
        {"practitioner_busy"},
    ),
    (
        "room is booked",
        lambda p: swap(p, ("c4", 1), visit("c4", 1, at(WED, 9, 45), "p3", "r1")),
        {"room_busy"},
    ),
    (
        "patient has an appointment",
        lambda p: swap(p, ("c4", 1), visit("c4", 1, at(THU, 9), "p3", "r3")),
        {"patient_busy"},
    ),
    (
        "practitioner double booked",
        lambda p: swap(
            p, ("c4", 1), visit("c4", 1, at(MON + timedelta(weeks=1), 9, 15), "p2", "r3")
        ),
        {"practitioner_overlap"},
    ),
    (
        "room double booked",
        lambda p: swap(p, ("c3", 1), visit("c3", 1, at(WED, 10, 15), "p1", "r3")),
        {"room_overlap"},
    ),
    (
        "patient double booked",
        lambda p: swap(p, ("c4", 1), visit("c4", 1, at(MON, 9, 15), "p3", "r3")),
        {"patient_overlap"},
    ),
    (
        "pinned practitioner ignored",
        lambda p: swap(p, ("c2", 1), visit("c2", 1, at(MON, 9), "p3", "r2")),
        {"wrong_practitioner"},
    ),
    (
        "visit too short",
        lambda p: swap(p, ("c4", 1), visit("c4", 1, at(WED, 10), "p3", "r3", minutes=15)),
        {"wrong_duration"},
    ),
    (
        "before the course may start",
        lambda p: swap(p, ("c3", 1), visit("c3", 1, at(MON, 10), "p2", "r3", in_window=False)),
        {"before_earliest"},
    ),
    (
        "two sessions of a course on one day",
        lambda p: swap(p, ("c2", 2), visit("c2", 2, at(MON, 10), "p2", "r2", in_window=False)),
        {"same_day"},
    ),
    (
        "second session without the first",
        lambda p: replace(
            swap(p, ("c1", 1), None), unplaced=(UnplacedSession("c1", 1, "no slot"),)
        ),
        {"order"},
    ),
    (
        "window flag wrong",
        lambda p: swap(
            p,
            ("c2", 2),
            visit("c2", 2, at(MON + timedelta(weeks=1), 9), "p2", "r2", in_window=False),
        ),
        {"in_window_misreported"},
    ),
    (
        "unknown course",
        lambda p: swap(p, ("c9", 1), visit("c9", 1, at(THU, 11), "p3", "r3")),
        {"unknown_course"},
    ),
    (
        "course has no fourth session",
        lambda p: swap(p, ("c1", 4), visit("c1", 4, at(THU, 11), "p3", "r3")),
        {"unknown_session"},
    ),
    (
        "unknown practitioner",
        lambda p: swap(p, ("c4", 1), visit("c4", 1, at(WED, 10), "dr-who", "r3")),
        {"unknown_practitioner"},
    ),
    (
        "unknown room",
        lambda p: swap(p, ("c4", 1), visit("c4", 1, at(WED, 10), "p3", "broom-cupboard")),
        {"unknown_room"},
    ),
    (
        "placed twice",
        lambda p: replace(p, sessions=(*p.sessions, visit("c4", 1, at(THU, 11), "p3", "r3"))),
        {"duplicate_session"},
    ),
    (
        "placed and unplaced",
        lambda p: replace(p, unplaced=(UnplacedSession("c4", 1, "no slot"),)),
        {"duplicate_session"},
    ),
    (
        "forgotten",
        lambda p: swap(p, ("c3", 1), None),
        {"missing_session"},
    ),
]


@pytest.mark.parametrize(
    ("breaker", "expected"),
    [pytest.param(breaker, expected, id=name) for name, breaker, expected in HARD_CASES],
)
def test_each_hard_violation_is_found(breaker: Breaker, expected: set[str]) -> None:
    report = check_plan(PROBLEM, breaker(GOOD))
    assert {v.kind for v in report.hard} == expected
    assert not report.ok
    assert expected <= HARD_KINDS


def test_order_is_checked_by_time_not_only_by_number() -> None:
    # session 1 on week 2 and session 2 on the first Monday: 2 starts before 1 ends
    plan = swap(GOOD, ("c1", 1), visit("c1", 1, at(MON + timedelta(weeks=2), 9), "p1", "r1"))
    plan = swap(plan, ("c1", 2), visit("c1", 2, at(MON, 9), "p1", "r1", in_window=False))
    plan = swap(plan, ("c1", 3), visit("c1", 3, at(MON + timedelta(weeks=4), 9), "p1", "r1"))
    report = check_plan(PROBLEM, plan)
    assert "order" in report.counts()
    assert "window_early" in report.counts()


def test_outside_the_horizon() -> None:
    late = PROBLEM.end + timedelta(days=1)
    report = check_plan(PROBLEM, swap(GOOD, ("c4", 1), visit("c4", 1, late, "p3", "r3")))
    assert "outside_horizon" in report.counts()


def test_window_misses_are_soft() -> None:
    # 22 days after session 1 misses the 2-3 week window; session 3 then comes too soon
    plan = swap(
        GOOD,
        ("c1", 2),
        visit("c1", 2, at(TUE + timedelta(weeks=3), 9), "p1", "r1", in_window=False),
    )
    plan = swap(
        plan,
        ("c1", 3),
        visit("c1", 3, at(MON + timedelta(weeks=4), 9), "p1", "r1", in_window=False),
    )
    report = check_plan(PROBLEM, plan)
    assert report.hard == ()
    assert report.ok
    assert {v.kind for v in report.soft} == {"window_late", "window_early"}
    assert {v.kind for v in report.soft} <= SOFT_KINDS
    assert report.within_window == 5
    late = next(v for v in report.soft if v.kind == "window_late")
    assert late.sessions == (("c1", 2),)
    assert "2025-03-25" in late.message


def test_every_overlapping_pair_is_reported() -> None:
    crowd = tuple(visit(f"x{i}", 1, at(THU, 10, 15 * i), "p3", f"r{i + 1}") for i in range(3))
    problem = replace(
        PROBLEM,
        courses=tuple(CourseRequest(f"x{i}", f"pat{i}", 1, (1, 2), MON) for i in range(3)),
    )
    plan = Plan("hand-made", crowd, (), 0.0)
    report = check_plan(problem, plan)
    # x0 10:00-10:30, x1 10:15-10:45, x2 10:30-11:00: x0/x1 and x1/x2 overlap, x0/x2 touch
    pairs = {v.sessions for v in report.violations if v.kind == "practitioner_overlap"}
    assert pairs == {(("x0", 1), ("x1", 1)), (("x1", 1), ("x2", 1))}
