"""Benchmark: greedy first-fit against the CP-SAT rolling-horizon planner, same instance.

Run: .venv/bin/python bench/schedule.py [--courses 500 --practitioners 5 --rooms 4
     --months 6 --seed 1 --time-limit 10 --workers 2]

Generates a deterministic clinic (Europe/Berlin, starting Monday 2025-01-06, so the
horizon crosses the spring DST change and the Easter and Whitsun holidays), runs the
greedy baseline, the CP-SAT planner's rolling decomposition without the solver (to show
what the solver itself adds) and the CP-SAT planner, verifies every plan with the
independent checker and prints one table and the ratios of sessions inside their
protocol window.
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from prolo.scheduling.check import check_plan
from prolo.scheduling.planner import (
    CourseRequest,
    Plan,
    Practitioner,
    Preferences,
    Room,
    SchedulingProblem,
    plan_cpsat,
    plan_greedy,
)
from prolo.scheduling.slots import Closure, Interval, TimeWindow, WeeklyHours, working_intervals

TZ = ZoneInfo("Europe/Berlin")
FIRST_DAY = date(2025, 1, 6)
QUARTER = timedelta(minutes=15)

# Berlin public holidays and one team training day; only those inside the horizon count
HOLIDAYS = [
    Closure(date(2025, 3, 8), date(2025, 3, 8), "International Women's Day (Berlin)"),
    Closure(date(2025, 4, 18), date(2025, 4, 21), "Easter"),
    Closure(date(2025, 5, 1), date(2025, 5, 1), "Labour Day"),
    Closure(date(2025, 5, 29), date(2025, 5, 29), "Ascension"),
    Closure(date(2025, 6, 9), date(2025, 6, 9), "Whit Monday"),
    Closure(date(2025, 6, 20), date(2025, 6, 20), "Team training"),
    Closure(date(2025, 10, 3), date(2025, 10, 3), "German Unity Day"),
    Closure(date(2025, 12, 24), date(2026, 1, 1), "Christmas and New Year"),
]

MORNING, MIDDAY, AFTERNOON = (
    TimeWindow.of("08:00", "12:00"),
    TimeWindow.of("11:00", "15:00"),
    TimeWindow.of("14:00", "19:00"),
)

# (id, weekly hours, share of working time already taken by other appointments)
PRACTITIONER_TEMPLATES = [
    ("dr-adler", {d: [("08:00", "12:30"), ("13:30", "17:00")] for d in range(5)}, 0.35),
    ("dr-berg", {d: [("09:00", "13:00"), ("14:00", "18:00")] for d in (0, 1, 3)}, 0.30),
    ("dr-cohen", {d: [("12:00", "19:00")] for d in (1, 2, 3, 4)}, 0.35),
    ("dr-demir", {d: [("08:00", "14:00")] for d in (0, 2, 4)}, 0.30),
    ("np-evans", {d: [("10:00", "16:00")] for d in range(4)}, 0.35),
]
ROOM_TEMPLATES = [
    ("room-1", {d: [("08:00", "19:00")] for d in range(5)}, 0.20),
    ("room-2", {d: [("08:00", "19:00")] for d in range(5)}, 0.40),
    ("room-3", {d: [("08:00", "13:00")] for d in (0, 2, 4)}, 0.20),
    ("room-4", {d: [("13:00", "19:00")] for d in (1, 3)}, 0.20),
]
# protocol interval windows in weeks, with how often each is prescribed
PROTOCOLS = [((2, 3), 3), ((2, 4), 4), ((3, 4), 2), ((3, 6), 2), ((4, 6), 2), ((2, 6), 1)]
PINNED_SHARE = 0.45
PINNED_WEIGHTS = [0.4, 0.2, 0.15, 0.15, 0.1]


@dataclass(frozen=True)
class Options:
    courses: int
    practitioners: int
    rooms: int
    months: int
    seed: int
    time_limit: float
    workers: int


def _blocks(rng: random.Random, free: list[Interval], share: float) -> list[Interval]:
    """Random 30-60 minute appointments on the quarter-hour grid filling about ``share``."""
    taken: list[Interval] = []
    for interval in free:
        quarters = int(interval.duration / QUARTER)
        target = share * quarters
        used = 0
        attempts = 0
        occupied = [False] * quarters
        while used < target and attempts < 40:
            attempts += 1
            length = rng.choice((2, 3, 4))
            first = rng.randrange(0, max(quarters - length + 1, 1))
            if first + length > quarters or any(occupied[first : first + length]):
                continue
            for q in range(first, first + length):
                occupied[q] = True
            used += length
            start = interval.start + first * QUARTER
            taken.append(Interval(start, start + length * QUARTER))
    return taken


def _leave(rng: random.Random, working: list[Interval], days: int) -> list[Interval]:
    """One or two weeks of leave, as busy time over whole local days."""
    leave: list[Interval] = []
    for _ in range(rng.choice((1, 2))):
        first = FIRST_DAY + timedelta(days=rng.randrange(0, max(days - 7, 1)))
        last = first + timedelta(days=7)
        leave.extend(w for w in working if first <= w.start.astimezone(TZ).date() < last)
    return leave


def build_problem(options: Options) -> SchedulingProblem:
    """The deterministic benchmark instance for ``options``."""
    rng = random.Random(options.seed)
    days = round(options.months * 30.44)
    last_day = FIRST_DAY + timedelta(days=days)
    closures = tuple(c for c in HOLIDAYS if c.last >= FIRST_DAY and c.first < last_day)

    practitioners = []
    for i in range(options.practitioners):
        name, hours, share = PRACTITIONER_TEMPLATES[i % len(PRACTITIONER_TEMPLATES)]
        working = working_intervals(
            WeeklyHours.of(hours), start=FIRST_DAY, end=last_day, tz=TZ, closures=closures
        )
        busy = _blocks(rng, working, share) + _leave(rng, working, days)
        suffix = (
            f"-{i // len(PRACTITIONER_TEMPLATES) + 1}" if i >= len(PRACTITIONER_TEMPLATES) else ""
        )
        practitioners.append(Practitioner(name + suffix, tuple(working), tuple(busy)))

    rooms = []
    for i in range(options.rooms):
        name, hours, share = ROOM_TEMPLATES[i % len(ROOM_TEMPLATES)]
        available = working_intervals(
            WeeklyHours.of(hours), start=FIRST_DAY, end=last_day, tz=TZ, closures=closures
        )
        suffix = f"-{i // len(ROOM_TEMPLATES) + 1}" if i >= len(ROOM_TEMPLATES) else ""
        rooms.append(Room(name + suffix, tuple(available), tuple(_blocks(rng, available, share))))

    patients: list[str] = []
    courses = []
    patient_busy: dict[str, tuple[Interval, ...]] = {}
    arrival_days = int(days * 0.6)
    protocols, protocol_weights = zip(*PROTOCOLS, strict=True)
    for i in range(options.courses):
        if patients and rng.random() < 0.12:
            patient = rng.choice(patients)  # a second course, e.g. the other knee
        else:
            patient = f"patient-{len(patients) + 1:04d}"
            patients.append(patient)
            patient_busy[patient] = tuple(_patient_appointments(rng, days))
        pinned = None
        if rng.random() < PINNED_SHARE:
            pinned = rng.choices(practitioners[:5], weights=PINNED_WEIGHTS[: len(practitioners)])[
                0
            ].id
        weekdays = (
            frozenset()
            if rng.random() < 0.25
            else frozenset(rng.sample(range(5), rng.choice((2, 3))))
        )
        times = () if rng.random() < 0.3 else (rng.choice((MORNING, MIDDAY, AFTERNOON)),)
        courses.append(
            CourseRequest(
                course_id=f"course-{i + 1:04d}",
                patient_id=patient,
                sessions=rng.randint(3, 6),
                interval_weeks=rng.choices(protocols, weights=protocol_weights)[0],
                earliest=FIRST_DAY + timedelta(days=rng.randrange(arrival_days)),
                practitioner_id=pinned,
                preferences=Preferences(weekdays=weekdays, times=times),
            )
        )
    return SchedulingProblem(
        tz=TZ,
        start=datetime.combine(FIRST_DAY, time(0), tzinfo=TZ),
        end=datetime.combine(last_day, time(0), tzinfo=TZ),
        practitioners=tuple(practitioners),
        rooms=tuple(rooms),
        courses=tuple(courses),
        patient_busy=patient_busy,
        closures=closures,
    )


def _patient_appointments(rng: random.Random, days: int) -> list[Interval]:
    """A patient's own commitments (physiotherapy, work meetings): 0-4 one-hour blocks."""
    result = []
    for _ in range(rng.randint(0, 4)):
        day = FIRST_DAY + timedelta(days=rng.randrange(days))
        start = datetime.combine(day, time(rng.randint(8, 17)), tzinfo=TZ)
        result.append(Interval(start, start + timedelta(hours=1)))
    return result


def _row(problem: SchedulingProblem, plan: Plan) -> list[str]:
    report = check_plan(problem, plan)
    stats = plan.stats
    solved = stats is not None and plan.planner == "cp-sat"
    return [
        plan.planner,
        f"{plan.wall_time_s:.2f}",
        str(problem.sessions_requested),
        str(plan.placed),
        str(plan.within_window),
        str(plan.preferences_met),
        str(stats.objective) if stats else "-",
        str(stats.best_bound) if stats and solved else "-",
        f"{stats.gap:.1%}" if stats and solved else "-",
        f"{stats.proven_optimal}/{stats.subproblems}" if stats and solved else "-",
        str(len(report.hard)),
        str(len(report.soft)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--courses", type=int, default=500)
    parser.add_argument("--practitioners", type=int, default=5)
    parser.add_argument("--rooms", type=int, default=4)
    parser.add_argument("--months", type=int, default=6)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--time-limit", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    options = Options(
        args.courses,
        args.practitioners,
        args.rooms,
        args.months,
        args.seed,
        args.time_limit,
        args.workers,
    )
    problem = build_problem(options)
    greedy = plan_greedy(problem)
    # the same week-by-week decomposition without the solver: what CP-SAT itself adds
    rolling = plan_cpsat(problem, search=False)
    cpsat = plan_cpsat(problem, time_limit_s=options.time_limit, workers=options.workers)
    header = [
        "planner",
        "wall s",
        "requested",
        "placed",
        "in window",
        "pref met",
        "objective",
        "best bound",
        "gap",
        "optimal",
        "hard conflicts",
        "window misses",
    ]
    rows = [header, _row(problem, greedy), _row(problem, rolling), _row(problem, cpsat)]
    widths = [max(len(row[c]) for row in rows) for c in range(len(header))]
    print(
        f"instance: {options.courses} courses, {options.practitioners} practitioners, "
        f"{options.rooms} rooms, {options.months} months, seed {options.seed}; "
        f"CP-SAT limit {options.time_limit:g} s on {options.workers} workers"
    )
    for r, row in enumerate(rows):
        print(
            " | ".join(
                cell.rjust(w) if c else cell.ljust(w)
                for c, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if r == 0:
            print("-+-".join("-" * w for w in widths))
    for name, plan in (("greedy", greedy), ("rolling first-fit", rolling)):
        ratio = cpsat.within_window / plan.within_window if plan.within_window else float("inf")
        print(f"within-window ratio CP-SAT/{name}: {ratio:.3f}")


if __name__ == "__main__":
    main()
