"""Both planners: hard constraints always hold (by the independent checker), windows and
preferences are met where the instance allows, and CP-SAT beats first-fit where it should."""

from __future__ import annotations

import doctest
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prolo.scheduling.check import check_plan
from prolo.scheduling.planner import (
    CourseRequest,
    Plan,
    Practitioner,
    Preferences,
    Room,
    SchedulingProblem,
    Weights,
    plan_cpsat,
    plan_greedy,
)
from prolo.scheduling.planner import problem as problem_module
from prolo.scheduling.planner.greedy import BEFORE_HORIZON
from prolo.scheduling.planner.grid import NO_SLOT_LEFT, PREVIOUS_UNPLACED
from prolo.scheduling.slots import Closure, Interval, TimeWindow, WeeklyHours, working_intervals

BERLIN = ZoneInfo("Europe/Berlin")
MONDAY = date(2025, 3, 3)
WEEKDAYS_9_TO_12 = WeeklyHours.of({d: [("09:00", "12:00")] for d in range(5)})


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=BERLIN)


def build(
    courses: list[CourseRequest],
    *,
    weeks: int = 8,
    practitioners: dict[str, WeeklyHours] | None = None,
    rooms: dict[str, WeeklyHours] | None = None,
    practitioner_busy: dict[str, list[Interval]] | None = None,
    patient_busy: dict[str, tuple[Interval, ...]] | None = None,
    closures: tuple[Closure, ...] = (),
    first: date = MONDAY,
) -> SchedulingProblem:
    """A small Berlin clinic; working hours do not exclude closures, so planners must."""
    last = first + timedelta(weeks=weeks)

    def expand(hours: WeeklyHours) -> tuple[Interval, ...]:
        return tuple(working_intervals(hours, start=first, end=last, tz=BERLIN))

    practitioners = practitioners or {"p1": WEEKDAYS_9_TO_12, "p2": WEEKDAYS_9_TO_12}
    rooms = rooms or {"r1": WEEKDAYS_9_TO_12}
    busy = practitioner_busy or {}
    return SchedulingProblem(
        tz=BERLIN,
        start=local(first, 0),
        end=local(last, 0),
        practitioners=tuple(
            Practitioner(pid, expand(hours), tuple(busy.get(pid, ())))
            for pid, hours in practitioners.items()
        ),
        rooms=tuple(Room(rid, expand(hours)) for rid, hours in rooms.items()),
        courses=tuple(courses),
        patient_busy=patient_busy or {},
        closures=closures,
    )


def course(
    course_id: str,
    *,
    patient: str | None = None,
    sessions: int = 3,
    weeks: tuple[int, int] = (2, 3),
    earliest: date = MONDAY,
    practitioner: str | None = None,
    preferences: Preferences | None = None,
    first_window_days: int = 14,
) -> CourseRequest:
    return CourseRequest(
        course_id=course_id,
        patient_id=patient or f"patient-{course_id}",
        sessions=sessions,
        interval_weeks=weeks,
        earliest=earliest,
        practitioner_id=practitioner,
        preferences=preferences or Preferences(),
        first_window_days=first_window_days,
    )


def run_both(problem: SchedulingProblem) -> list[Plan]:
    plans = [plan_greedy(problem), plan_cpsat(problem, time_limit_s=2)]
    for plan in plans:
        report = check_plan(problem, plan)
        assert report.hard == (), (plan.planner, report.hard)
        assert report.within_window == plan.within_window
    return plans


def test_problem_module_doctests() -> None:
    assert doctest.testmod(problem_module).failed == 0


def test_every_session_placed_in_window_when_capacity_allows() -> None:
    problem = build([course(f"c{i}", earliest=MONDAY + timedelta(days=i)) for i in range(6)])
    for plan in run_both(problem):
        assert plan.placed == 18
        assert plan.within_window == 18
        assert plan.unplaced == ()
        by_course: dict[str, list[datetime]] = {}
        for session in sorted(plan.sessions, key=lambda s: (s.course_id, s.number)):
            by_course.setdefault(session.course_id, []).append(session.start)
        for starts in by_course.values():
            gaps = [
                (b.astimezone(BERLIN).date() - a.astimezone(BERLIN).date()).days
                for a, b in zip(starts, starts[1:], strict=False)
            ]
            assert all(14 <= gap <= 21 for gap in gaps)


def test_greedy_takes_the_earliest_feasible_slot() -> None:
    plan = plan_greedy(build([course("c1", earliest=MONDAY + timedelta(days=1))]))
    first = min(plan.sessions, key=lambda s: s.number)
    assert first.start == local(MONDAY + timedelta(days=1), 9)
    assert (first.practitioner_id, first.room_id) == ("p1", "r1")
    assert [s.start for s in sorted(plan.sessions, key=lambda s: s.number)][1] == local(
        MONDAY + timedelta(days=15), 9
    )


def test_closures_existing_appointments_and_patients_are_respected() -> None:
    tuesday = MONDAY + timedelta(days=1)
    problem = build(
        [course("c1", patient="ann", sessions=1), course("c2", patient="ann", sessions=1)],
        practitioners={"p1": WEEKDAYS_9_TO_12},
        closures=(Closure(MONDAY, MONDAY, "training"),),
        practitioner_busy={"p1": [Interval(local(tuesday, 9), local(tuesday, 10))]},
        patient_busy={"ann": (Interval(local(tuesday, 10), local(tuesday, 11)),)},
    )
    for plan in run_both(problem):
        starts = sorted(s.start for s in plan.sessions)
        assert starts == [local(tuesday, 11), local(tuesday, 11, 30)]


def test_dst_change_keeps_visits_inside_local_hours() -> None:
    # Berlin springs forward on Sunday 2025-03-30: hours stay 09:00-12:00 on the clock
    problem = build(
        [course(f"c{i}", weeks=(1, 2), sessions=4, earliest=date(2025, 3, 24)) for i in range(8)],
        first=date(2025, 3, 24),
        weeks=6,
    )
    for plan in run_both(problem):
        assert plan.within_window == 32
        for session in plan.sessions:
            start = session.start.astimezone(BERLIN)
            end = session.end.astimezone(BERLIN)
            assert time(9) <= start.time() and end.time() <= time(12)


def test_unplaced_sessions_carry_reasons() -> None:
    problem = build(
        [
            course("late", sessions=4, weeks=(3, 3)),
            course("future", earliest=MONDAY + timedelta(weeks=9)),
        ],
        weeks=5,
    )
    for plan in run_both(problem):
        reasons = {(u.course_id, u.number): u.reason for u in plan.unplaced}
        assert reasons == {
            ("late", 3): NO_SLOT_LEFT,
            ("late", 4): PREVIOUS_UNPLACED,
            ("future", 1): BEFORE_HORIZON,
            ("future", 2): PREVIOUS_UNPLACED,
            ("future", 3): PREVIOUS_UNPLACED,
        }


def test_cpsat_keeps_the_pinned_practitioner_free_for_the_pinned_course() -> None:
    # one half-hour each on Monday; first-fit hands p1 to the flexible course, leaving
    # the course pinned to p1 without a slot inside its one-day window
    monday_half_hour = WeeklyHours.of({0: [("09:00", "09:30")]})
    problem = build(
        [
            course("flexible", sessions=1, first_window_days=0),
            course("pinned", sessions=1, practitioner="p1", first_window_days=0),
        ],
        practitioners={"p1": monday_half_hour, "p2": monday_half_hour},
        rooms={"r1": monday_half_hour, "r2": monday_half_hour},
        weeks=3,
    )
    greedy, cpsat = run_both(problem)
    assert greedy.within_window == 1
    assert cpsat.within_window == 2
    assert {s.course_id: s.practitioner_id for s in cpsat.sessions} == {
        "flexible": "p2",
        "pinned": "p1",
    }
    assert cpsat.stats is not None
    assert cpsat.stats.objective <= cpsat.stats.best_bound
    assert cpsat.stats.proven_optimal == cpsat.stats.subproblems


def test_cpsat_meets_preferences_that_first_fit_ignores() -> None:
    wednesday_afternoon = Preferences(
        weekdays=frozenset({2}), times=(TimeWindow.of("11:00", "12:00"),)
    )
    hours = WeeklyHours.of({d: [("09:00", "12:00")] for d in range(5)})
    problem = build(
        [course("c1", sessions=2, weeks=(1, 2), preferences=wednesday_afternoon)],
        practitioners={"p1": hours},
        rooms={"r1": hours},
    )
    greedy, cpsat = run_both(problem)
    assert greedy.preferences_met == 0
    assert cpsat.preferences_met == 2
    for session in cpsat.sessions:
        assert session.start.astimezone(BERLIN).weekday() == 2
        assert session.start.astimezone(BERLIN).time() >= time(11)


def test_rooms_are_never_double_booked() -> None:
    problem = build([course(f"c{i}", sessions=2) for i in range(10)])  # 2 practitioners, 1 room
    for plan in run_both(problem):
        starts = [s.start for s in plan.sessions]
        assert len(starts) == len(set(starts))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sessions": 0}, "sessions=0"),
        ({"interval_weeks": (0, 2)}, "interval_weeks"),
        ({"interval_weeks": (3, 2)}, "interval_weeks"),
        ({"duration": timedelta(0)}, "duration"),
        ({"first_window_days": -1}, "first_window_days"),
    ],
)
def test_course_requests_are_validated(change: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {
        "course_id": "c1",
        "patient_id": "ann",
        "sessions": 3,
        "interval_weeks": (2, 4),
        "earliest": MONDAY,
    } | change
    with pytest.raises(ValueError, match=message):
        CourseRequest(**fields)  # type: ignore[arg-type]


def test_problems_are_validated() -> None:
    with pytest.raises(ValueError, match="practitioner_id='nobody'"):
        build([course("c1", practitioner="nobody")])
    with pytest.raises(ValueError, match="duplicate course ids"):
        build([course("c1"), course("c1")])
    with pytest.raises(ValueError, match="not a multiple"):
        build([CourseRequest("c1", "ann", 1, (1, 2), MONDAY, duration=timedelta(minutes=20))])
    with pytest.raises(ValueError, match="weekdays"):
        Preferences(weekdays=frozenset({7}))
    problem = build([course("c1")])
    with pytest.raises(ValueError, match="time_limit_s"):
        plan_cpsat(problem, time_limit_s=0)
    with pytest.raises(ValueError, match="workers"):
        plan_cpsat(problem, workers=0)
    with pytest.raises(ValueError, match="course_id='c9'"):
        problem.course("c9")


def test_custom_weights_still_give_a_valid_plan() -> None:
    problem = build([course(f"c{i}") for i in range(5)])
    plan = plan_cpsat(problem, time_limit_s=1, weights=Weights(preference=0, late=1))
    assert check_plan(problem, plan).ok


@st.composite
def small_problems(draw: st.DrawFn) -> SchedulingProblem:
    """Random small clinics: 1-3 practitioners and rooms, 1-8 courses over 3-6 weeks."""

    def hours() -> WeeklyHours:
        days = draw(st.sets(st.integers(0, 5), min_size=1, max_size=4))
        start = draw(st.integers(7, 14))
        length = draw(st.integers(1, 4))
        return WeeklyHours.of({d: [(time(start), time(start + length))] for d in days})

    practitioner_ids = [f"p{i}" for i in range(draw(st.integers(1, 3)))]
    patients = [f"pat{i}" for i in range(draw(st.integers(1, 4)))]
    courses = []
    for i in range(draw(st.integers(1, 8))):
        low = draw(st.integers(1, 2))
        courses.append(
            course(
                f"c{i}",
                patient=draw(st.sampled_from(patients)),
                sessions=draw(st.integers(1, 4)),
                weeks=(low, low + draw(st.integers(0, 2))),
                earliest=MONDAY + timedelta(days=draw(st.integers(-3, 20))),
                practitioner=draw(st.none() | st.sampled_from(practitioner_ids)),
                preferences=Preferences(
                    weekdays=frozenset(draw(st.sets(st.integers(0, 6), max_size=3)))
                ),
                first_window_days=draw(st.integers(0, 10)),
            )
        )
    busy_day = MONDAY + timedelta(days=draw(st.integers(0, 13)))
    return build(
        courses,
        weeks=draw(st.integers(3, 6)),
        practitioners={pid: hours() for pid in practitioner_ids},
        rooms={f"r{i}": hours() for i in range(draw(st.integers(1, 3)))},
        practitioner_busy={"p0": [Interval(local(busy_day, 8), local(busy_day, 12))]},
        patient_busy={patients[0]: (Interval(local(busy_day, 9), local(busy_day, 15)),)},
        closures=(Closure(busy_day + timedelta(days=1), busy_day + timedelta(days=2)),),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problem=small_problems())
def test_plans_never_break_a_hard_constraint(problem: SchedulingProblem) -> None:
    greedy = plan_greedy(problem)
    cpsat = plan_cpsat(problem, time_limit_s=0.5)
    rolling = plan_cpsat(problem, search=False)
    assert rolling.planner == "rolling first-fit"
    for plan in (greedy, cpsat, rolling):
        report = check_plan(problem, plan)
        assert report.ok, report.hard
        # the planners never place a session before its window opens
        assert {v.kind for v in report.soft} <= {"window_late"}
        assert plan.placed + len(plan.unplaced) == problem.sessions_requested
        for session in plan.sessions:
            assert session.start.tzinfo is UTC
    assert cpsat.stats is not None
    assert 0 <= cpsat.stats.objective <= cpsat.stats.best_bound
