"""First-fit baseline: course by course, session by session, earliest feasible slot."""

from __future__ import annotations

from time import perf_counter

import numpy as np

from prolo.scheduling.planner.grid import (
    NO_SLOT_LEFT,
    Calendar,
    Placement,
    SlotGrid,
    unplaced_rest,
    window_days,
)
from prolo.scheduling.planner.problem import (
    CourseRequest,
    Plan,
    PlannedSession,
    SchedulingProblem,
    UnplacedSession,
)

__all__ = ["plan_greedy"]

BEFORE_HORIZON = "the course's earliest date is after the planning horizon"


def first_fit(calendar: Calendar, course: CourseRequest, lo: int, hi: int) -> Placement | None:
    """Earliest start in ``[lo, hi)`` with a free practitioner and room; lowest index wins ties.

    Scans a week of slots at a time because nearly every session fits in its first week,
    and a whole-horizon scan per session would dominate the run time.
    """
    chunk = max(1, 7 * 24 * 3600 // int(calendar.grid.step.total_seconds()))
    eligible = calendar.eligible(course)
    for chunk_lo in range(max(lo, 0), min(hi, calendar.grid.n), chunk):
        chunk_hi = min(chunk_lo + chunk, hi, calendar.grid.n)
        practitioners, rooms = calendar.starts(course, chunk_lo, chunk_hi)
        any_room = rooms.any(axis=0)
        feasible = practitioners & any_room
        if not feasible.any():
            continue
        offset = int(np.argmax(feasible.any(axis=0)))
        who = int(np.argmax(feasible[:, offset]))
        room = int(np.argmax(rooms[:, offset]))
        return Placement(chunk_lo + offset, eligible[who], room)
    return None


def plan_greedy(problem: SchedulingProblem) -> Plan:
    """Plan every course first-fit, in order of earliest date (ties: input order).

    Each session takes the earliest feasible slot inside its protocol window, or failing
    that the earliest feasible slot after the window; a session that fits nowhere before the
    horizon ends is unplaced together with the rest of its course. The baseline ignores
    patient preferences.
    """
    began = perf_counter()
    grid = SlotGrid(problem)
    calendar = Calendar(problem, grid)
    sessions: list[PlannedSession] = []
    unplaced: list[UnplacedSession] = []
    order = sorted(range(len(problem.courses)), key=lambda i: (problem.courses[i].earliest, i))
    for index in order:
        course = problem.courses[index]
        previous_day: int | None = None
        for number in range(1, course.sessions + 1):
            first_day, last_day = window_days(course, previous_day, grid)
            if first_day >= grid.days:
                reason = BEFORE_HORIZON if previous_day is None else NO_SLOT_LEFT
                unplaced.extend(unplaced_rest(course, number, reason))
                break
            window_lo, window_hi = grid.day_slot(first_day), grid.day_slot(last_day + 1)
            placement = first_fit(calendar, course, window_lo, window_hi)
            if placement is None:
                placement = first_fit(calendar, course, window_hi, grid.n)
            if placement is None:
                unplaced.extend(unplaced_rest(course, number, NO_SLOT_LEFT))
                break
            calendar.book(course, placement)
            previous_day = int(grid.day[placement.slot])
            sessions.append(
                calendar.session(course, number, placement, in_window=previous_day <= last_day)
            )
    return Plan(
        planner="greedy",
        sessions=tuple(sessions),
        unplaced=tuple(unplaced),
        wall_time_s=perf_counter() - began,
    )
