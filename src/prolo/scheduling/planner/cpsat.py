"""CP-SAT planner: a rolling horizon of one-week models.

Why a rolling horizon: one model of six months (17 000 quarter-hour slots, thousands of
sessions, five practitioners and four rooms) is far too large for two cores in seconds,
and the chain of protocol windows couples every session of a course to the actual day of
the one before. Cutting time into weeks breaks that chain: because consecutive sessions
are at least a week apart, a course has at most one session *due* in any week, and once
the week is solved the days of all sessions in it are known, which fixes the windows of
the next week's sessions.

Each week is one CP-SAT model:

- one start variable per due session, its domain the week's feasible starts (patient
  free, clinic open, some practitioner and some room free);
- an optional fixed-size interval per (session, eligible practitioner) and per
  (session, room), with exactly one of each present when the session is placed;
- ``NoOverlap`` per practitioner, per room and per patient, the resources' own
  unavailable time entering as fixed intervals;
- redundant capacity cuts per practitioner and room, for a bound worth reporting;
- a weighted objective (:class:`Weights`) and the week's first fit as hint and fallback.

``docs/scheduling.md`` explains the choices and gives measured figures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from time import perf_counter

import numpy as np
from ortools.sat.python import cp_model
from ortools.util.python.sorted_interval_list import Domain

from prolo.scheduling.planner.greedy import BEFORE_HORIZON
from prolo.scheduling.planner.grid import (
    NO_SLOT_LEFT,
    Calendar,
    Mask,
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
    SolveStats,
    UnplacedSession,
)

__all__ = ["Weights", "plan_cpsat"]


class Urgency(IntEnum):
    """How a due session's protocol window relates to the week being planned."""

    CLOSING = 0  # the window closes this week: in-window now or never
    OVERDUE = 1  # the window closed already: the session will be late whatever we do
    OPEN = 2  # the window stays open after this week: placing it now is optional


@dataclass(frozen=True, slots=True)
class Weights:
    """Objective weights of one week's model (integers, higher is better).

    The defaults rank, per session: meeting a window that closes this week, then moving an
    overdue course on, then placing sessions whose window stays open (more so if it closes
    next week), and last the patient's preferences. One closing window outweighs any
    realistic number of optional placements and preferences, so the weekly models are
    lexicographic in spirit without the cost of a true lexicographic solve.
    """

    closing_in_window: int = 100
    late: int = 30
    open_closing_next_week: int = 20
    open: int = 10
    preference: int = 1


@dataclass(slots=True)
class _Due:
    """A session due in the week being planned, with its feasible starts."""

    course_index: int
    course: CourseRequest
    number: int
    last_day: int
    deadline: int  # first slot past the window: starts before it are in window
    urgency: Urgency
    length: int
    starts: list[int]
    by_practitioner: dict[int, list[int]]
    by_room: dict[int, list[int]]
    preferred: list[int]
    weight: int = 0
    hint: Placement | None = field(default=None)


def _weight(due: _Due, week_last_day: int, weights: Weights) -> int:
    if due.urgency is Urgency.OPEN:
        if due.last_day < week_last_day + 7:
            return weights.open_closing_next_week
        return weights.open
    return weights.late


def _collect_due(
    calendar: Calendar,
    course_index: int,
    number: int,
    previous_day: int | None,
    week: tuple[int, int],
    weights: Weights,
) -> _Due | None:
    """The next session of a course if its window is open and it can start this week."""
    grid = calendar.grid
    course = calendar.problem.courses[course_index]
    first_day, last_day = window_days(course, previous_day, grid)
    week_first, week_stop = week
    if first_day >= week_stop:
        return None
    lo = max(grid.day_slot(week_first), grid.day_slot(first_day))
    hi = grid.day_slot(week_stop)
    if lo >= hi:
        return None
    practitioners, rooms = calendar.starts(course, lo, hi)
    any_practitioner = practitioners.any(axis=0)
    any_room = rooms.any(axis=0)
    feasible = any_practitioner & any_room
    if not feasible.any():
        return None
    eligible = calendar.eligible(course)
    by_practitioner = {
        eligible[j]: (np.flatnonzero(practitioners[j] & any_room) + lo).tolist()
        for j in range(len(eligible))
        if (practitioners[j] & any_room).any()
    }
    by_room = {
        r: (np.flatnonzero(rooms[r] & any_practitioner) + lo).tolist()
        for r in range(rooms.shape[0])
        if (rooms[r] & any_practitioner).any()
    }
    preferred_mask = calendar.preferred(course)[lo:hi] & feasible
    if last_day < week_first:
        urgency = Urgency.OVERDUE
    elif last_day < week_stop or week_stop >= grid.days:
        # the last week of the horizon is closing for everyone: there is no next week
        urgency = Urgency.CLOSING
    else:
        urgency = Urgency.OPEN
    due = _Due(
        course_index=course_index,
        course=course,
        number=number,
        last_day=last_day,
        deadline=grid.day_slot(last_day + 1),
        urgency=urgency,
        length=course.duration // grid.step,
        starts=(np.flatnonzero(feasible) + lo).tolist(),
        by_practitioner=by_practitioner,
        by_room=by_room,
        preferred=(np.flatnonzero(preferred_mask) + lo).tolist(),
    )
    due.weight = _weight(due, week_stop - 1, weights)
    return due


def _first_fit_week(dues: list[_Due]) -> None:
    """Hint and fallback: first fit in order of urgency, then window end.

    Each session takes the earliest start that is in window and preferred, else in window,
    else preferred, else any.
    """
    taken: dict[tuple[str, object], set[int]] = {}

    def free(key: tuple[str, object], slots: range) -> bool:
        busy = taken.get(key)
        return busy is None or busy.isdisjoint(slots)

    order = sorted(dues, key=lambda d: (d.urgency, d.last_day, d.course_index))
    for due in order:
        practitioner_sets = {p: set(s) for p, s in due.by_practitioner.items()}
        room_sets = {r: set(s) for r, s in due.by_room.items()}
        liked = set(due.preferred)
        candidates = sorted(due.starts, key=lambda t: (t >= due.deadline, t not in liked, t))
        for start in candidates:
            visit = range(start, start + due.length)
            if not free(("patient", due.course.patient_id), visit):
                continue
            who = next(
                (
                    p
                    for p, starts in practitioner_sets.items()
                    if start in starts and free(("practitioner", p), visit)
                ),
                None,
            )
            room = next(
                (
                    r
                    for r, starts in room_sets.items()
                    if start in starts and free(("room", r), visit)
                ),
                None,
            )
            if who is None or room is None:
                continue
            due.hint = Placement(start, who, room)
            for key in (("patient", due.course.patient_id), ("practitioner", who), ("room", room)):
                taken.setdefault(key, set()).update(visit)
            break


def _score(due: _Due, placement: Placement | None, weights: Weights) -> int:
    if placement is None:
        return 0
    score = due.weight
    if due.urgency is Urgency.CLOSING and placement.slot < due.deadline:
        score = weights.closing_in_window
    if placement.slot in set(due.preferred):
        score += weights.preference
    return score


def _ceiling(dues: list[_Due], weights: Weights) -> int:
    """Objective if every due session were placed in window at a preferred time."""
    return sum(
        (weights.closing_in_window if d.urgency is Urgency.CLOSING else d.weight)
        + (weights.preference if d.preferred else 0)
        for d in dues
    )


def _runs(mask: Mask, lo: int) -> list[tuple[int, int]]:
    """``(first slot, length)`` of each run of True in ``mask``, offset by ``lo``."""
    padded = np.concatenate(([False], mask, [False]))
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return [(lo + int(a), int(b - a)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _capacity(free: Mask, lengths: set[int]) -> int:
    """Most slots visits can fill in ``free``: whole visits per free run if all are alike."""
    runs = _runs(free, 0)
    if len(lengths) == 1:
        (length,) = lengths
        return sum(size // length * length for _, size in runs)
    return sum(size for _, size in runs)


@dataclass(slots=True)
class _WeekResult:
    placements: dict[int, Placement]
    objective: int
    bound: int
    optimal: bool
    solver_time_s: float = 0.0


@dataclass(slots=True)
class _SessionVars:
    start: cp_model.IntVar
    placed: cp_model.IntVar
    practitioners: dict[int, cp_model.IntVar]
    rooms: dict[int, cp_model.IntVar]


@dataclass(slots=True)
class _WeekModel:
    model: cp_model.CpModel
    sessions: list[_SessionVars]
    by_resource: dict[tuple[str, object], list[cp_model.IntervalVar]] = field(default_factory=dict)
    load: dict[tuple[str, object], list[cp_model.LinearExprT]] = field(default_factory=dict)
    objective: list[cp_model.LinearExprT] = field(default_factory=list)


def _choose(
    week: _WeekModel,
    kind: str,
    options: list[int],
    start: cp_model.IntVar,
    due: _Due,
    hinted: int | None,
) -> dict[int, cp_model.IntVar]:
    """One presence literal and optional visit interval per candidate practitioner or room."""
    chosen = {}
    for resource in options:
        literal = week.model.new_bool_var(f"{kind}_{resource}")
        week.model.add_hint(literal, hinted == resource)
        week.by_resource.setdefault((kind, resource), []).append(
            week.model.new_optional_fixed_size_interval_var(start, due.length, literal, kind)
        )
        week.load.setdefault((kind, resource), []).append(due.length * literal)
        chosen[resource] = literal
    return chosen


def _build_week(
    dues: list[_Due],
    *,
    blocked: dict[tuple[str, object], list[tuple[int, int]]],
    capacity: dict[tuple[str, object], int],
    weights: Weights,
) -> _WeekModel:
    """The week's CP-SAT model, hinted with each due session's first-fit placement."""
    week = _WeekModel(cp_model.CpModel(), [])
    model = week.model
    for i, due in enumerate(dues):
        hint = due.hint
        start = model.new_int_var_from_domain(Domain.from_values(due.starts), f"start{i}")
        placed = model.new_bool_var(f"placed{i}")
        model.add_hint(start, hint.slot if hint else due.starts[0])
        model.add_hint(placed, hint is not None)
        practitioners = _choose(
            week,
            "practitioner",
            list(due.by_practitioner),
            start,
            due,
            hint.practitioner if hint else None,
        )
        rooms = _choose(week, "room", list(due.by_room), start, due, hint.room if hint else None)
        model.add(sum(practitioners.values()) == placed)
        model.add(sum(rooms.values()) == placed)
        week.by_resource.setdefault(("patient", due.course.patient_id), []).append(
            model.new_optional_fixed_size_interval_var(start, due.length, placed, "patient")
        )
        week.objective.append(due.weight * placed)
        if due.urgency is Urgency.CLOSING:
            # the bonus for meeting the window on top of the weight of a late placement
            in_window = model.new_bool_var(f"in_window{i}")
            model.add_implication(in_window, placed)
            model.add(start < due.deadline).only_enforce_if(in_window)
            model.add_hint(in_window, hint is not None and hint.slot < due.deadline)
            week.objective.append((weights.closing_in_window - due.weight) * in_window)
        if due.preferred and weights.preference:
            liked = model.new_bool_var(f"preferred{i}")
            model.add_implication(liked, placed)
            if len(due.preferred) < len(due.starts):
                model.add_linear_expression_in_domain(
                    start, Domain.from_values(due.preferred)
                ).only_enforce_if(liked)
            model.add_hint(liked, hint is not None and hint.slot in set(due.preferred))
            week.objective.append(weights.preference * liked)
        week.sessions.append(_SessionVars(start, placed, practitioners, rooms))
    # A resource's own unavailability enters as fixed intervals in its NoOverlap rather
    # than as "start in these values if this resource is chosen": the value encodings
    # that the latter needs made presolve alone outlast a week's time budget.
    for key, intervals in week.by_resource.items():
        for first, size in blocked.get(key, ()):
            intervals.append(model.new_fixed_size_interval_var(first, size, "unavailable"))
        if len(intervals) > 1:
            model.add_no_overlap(intervals)
    # Redundant, but NoOverlap alone gives the LP nothing: without these capacity cuts
    # the proven bound stays at "every due session placed".
    for key, load in week.load.items():
        if key in capacity:
            model.add(sum(load) <= capacity[key])
    model.maximize(sum(week.objective))
    return week


def _solve_week(
    dues: list[_Due],
    *,
    blocked: dict[tuple[str, object], list[tuple[int, int]]],
    capacity: dict[tuple[str, object], int],
    weights: Weights,
    time_limit_s: float,
    workers: int,
    seed: int,
    search: bool,
) -> _WeekResult:
    _first_fit_week(dues)
    hint_objective = sum(_score(d, d.hint, weights) for d in dues)
    if not search:
        placements = {i: d.hint for i, d in enumerate(dues) if d.hint is not None}
        return _WeekResult(placements, hint_objective, _ceiling(dues, weights), False)
    week = _build_week(dues, blocked=blocked, capacity=capacity, weights=weights)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(time_limit_s, 0.01)
    solver.parameters.num_workers = workers
    solver.parameters.random_seed = seed
    # Presolve (probing the start-value encodings above all) took longer than a busy
    # week's whole share, so CP-SAT often ended without even loading the hint. The
    # domains are already filtered here, and searching from the hint pays off better.
    solver.parameters.cp_model_probing_level = 0
    solver.parameters.cp_model_presolve = False
    solve_began = perf_counter()
    status = solver.solve(week.model)
    solver_time = perf_counter() - solve_began
    found = status in (cp_model.OPTIMAL, cp_model.FEASIBLE)
    ceiling = _ceiling(dues, weights)
    # without a solution CP-SAT reports no useful bound: fall back on the trivial one
    bound = min(round(solver.best_objective_bound), ceiling) if found else ceiling
    if not found or solver.objective_value < hint_objective:
        # never hand back less than the first-fit week we already hold
        placements = {i: d.hint for i, d in enumerate(dues) if d.hint is not None}
        return _WeekResult(
            placements, hint_objective, max(bound, hint_objective), False, solver_time
        )
    placements = {}
    for i, chosen in enumerate(week.sessions):
        if not solver.boolean_value(chosen.placed):
            continue
        who = next(p for p, b in chosen.practitioners.items() if solver.boolean_value(b))
        room = next(r for r, b in chosen.rooms.items() if solver.boolean_value(b))
        placements[i] = Placement(int(solver.value(chosen.start)), who, room)
    return _WeekResult(
        placements,
        round(solver.objective_value),
        bound,
        status == cp_model.OPTIMAL,
        solver_time,
    )


def plan_cpsat(
    problem: SchedulingProblem,
    *,
    time_limit_s: float = 10.0,
    workers: int = 2,
    seed: int = 0,
    weights: Weights | None = None,
    search: bool = True,
) -> Plan:
    """Plan all courses with one CP-SAT model per week, rolling forward through the horizon.

    Hard constraints are those of :func:`plan_greedy`; the objective of each week is set by
    ``weights``. ``time_limit_s`` bounds the whole run (model building included): each
    week gets an equal share of the time left, so weeks solved to optimality early hand
    their unused time on. ``workers`` is CP-SAT's ``num_workers``. The returned plan's
    stats sum the weekly objectives and proven bounds.

    ``search=False`` skips CP-SAT and keeps each week's first-fit hint: the same rolling
    decomposition without optimisation, for measuring what the solver adds.
    """
    if time_limit_s <= 0:
        raise ValueError(f"time_limit_s={time_limit_s!r} must be positive")
    if workers < 1:
        raise ValueError(f"workers={workers!r} must be at least 1")
    weights = weights or Weights()
    began = perf_counter()
    grid = SlotGrid(problem)
    calendar = Calendar(problem, grid)
    courses = problem.courses
    next_number = [1] * len(courses)
    previous_day: list[int | None] = [None] * len(courses)
    sessions: list[PlannedSession] = []
    weeks = -(-grid.days // 7)
    objective = bound = subproblems = optimal = 0
    solving = 0.0  # seconds inside CP-SAT, to tell solver time from Python overhead
    seen = 0  # due sessions over the weeks so far
    for week in range(weeks):
        week_first, week_stop = 7 * week, min(7 * week + 7, grid.days)
        dues = [
            due
            for index in range(len(courses))
            if next_number[index] <= courses[index].sessions
            for due in [
                _collect_due(
                    calendar,
                    index,
                    next_number[index],
                    previous_day[index],
                    (week_first, week_stop),
                    weights,
                )
            ]
            if due is not None
        ]
        if not dues:
            continue
        # An equal share of what is left, after reserving for every week still to come
        # the Python work (collecting, hinting, building) a week has cost so far: on a
        # busy machine that work slows down too, and the limit covers the whole run.
        elapsed = perf_counter() - began
        weeks_left = weeks - week
        overhead = (elapsed - solving) / max(subproblems, 1) if subproblems else 0.1
        share = (0.95 * (time_limit_s - elapsed) - overhead * weeks_left) / weeks_left
        # busy weeks need longer just to load the hint; scale by this week's size against
        # the weeks so far, within bounds that keep time for the weeks to come
        seen += len(dues)
        share *= min(max(len(dues) * (subproblems + 1) / seen, 0.5), 2.0)
        week_lo, week_hi = grid.day_slot(week_first), grid.day_slot(week_stop)
        reach = min(week_hi + max(d.length for d in dues) - 1, grid.n)
        rows: dict[tuple[str, object], Mask] = {}
        for p in {p for d in dues for p in d.by_practitioner}:
            rows["practitioner", p] = calendar.practitioner_free[p, week_lo:reach]
        for r in {r for d in dues for r in d.by_room}:
            rows["room", r] = calendar.room_free[r, week_lo:reach]
        lengths = {d.length for d in dues}
        blocked = {key: _runs(~free, week_lo) for key, free in rows.items()}
        capacity = {key: _capacity(free, lengths) for key, free in rows.items()}
        result = _solve_week(
            dues,
            blocked=blocked,
            capacity=capacity,
            weights=weights,
            time_limit_s=share,
            workers=workers,
            seed=seed,
            search=search and share > 0.02,  # out of time: keep the hint
        )
        solving += result.solver_time_s
        subproblems += 1
        optimal += result.optimal
        objective += result.objective
        bound += result.bound
        for i, placement in result.placements.items():
            due = dues[i]
            calendar.book(due.course, placement)
            day = int(grid.day[placement.slot])
            sessions.append(
                calendar.session(due.course, due.number, placement, in_window=day <= due.last_day)
            )
            previous_day[due.course_index] = day
            next_number[due.course_index] += 1
    unplaced: list[UnplacedSession] = []
    for index, course in enumerate(courses):
        if next_number[index] > course.sessions:
            continue
        never_started = previous_day[index] is None
        first_day, _ = window_days(course, previous_day[index], grid)
        reason = BEFORE_HORIZON if never_started and first_day >= grid.days else NO_SLOT_LEFT
        unplaced.extend(unplaced_rest(course, next_number[index], reason))
    return Plan(
        planner="cp-sat" if search else "rolling first-fit",
        sessions=tuple(sorted(sessions, key=lambda s: (s.course_id, s.number))),
        unplaced=tuple(unplaced),
        wall_time_s=perf_counter() - began,
        stats=SolveStats(
            objective=objective, best_bound=bound, subproblems=subproblems, proven_optimal=optimal
        ),
    )
