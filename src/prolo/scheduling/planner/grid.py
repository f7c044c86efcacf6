"""The horizon as a grid of ``step`` slots, and the free/booked state both planners share.

Discretising is conservative, so a plan that is feasible on the grid is feasible in real
time: a slot counts as working (or available) only if it lies wholly inside a working
interval, and as busy if any instant of it is busy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt

from prolo.scheduling.planner.problem import (
    CourseRequest,
    PlannedSession,
    Preferences,
    SchedulingProblem,
    UnplacedSession,
)
from prolo.scheduling.slots import Interval, closed_days, merge

Mask = npt.NDArray[np.bool_]

NO_SLOT_LEFT = "no free practitioner, room and patient time before the horizon ends"
PREVIOUS_UNPLACED = "the previous session of the course is not placed"


class SlotGrid:
    """Slot ``i`` is ``[start + i * step, start + (i + 1) * step)`` of the problem horizon.

    Per slot it knows the clinic-local day (as an index from the horizon's first local
    day) and the local second of the day, so that windows, closures and preferences are
    array look-ups.
    """

    def __init__(self, problem: SchedulingProblem) -> None:
        self.origin = problem.start
        self.step = problem.step
        self.tz = problem.tz
        self.n = (problem.end - problem.start) // problem.step
        longest = max((c.duration // self.step for c in problem.courses), default=1)
        # a little past the horizon so a visit's end instant has local facts too
        extended = self.n + longest + 1
        local = [(self.origin + i * self.step).astimezone(self.tz) for i in range(extended)]
        self.first_day = local[0].date()
        self.day = np.array([(moment.date() - self.first_day).days for moment in local])
        self.second = np.array(
            [moment.hour * 3600 + moment.minute * 60 + moment.second for moment in local]
        )
        self.days = int(self.day[self.n - 1]) + 1 if self.n else 0
        self.weekday = np.array(
            [(self.first_day + timedelta(days=k)).weekday() for k in range(self.days + 2)]
        )
        self._day_start = np.searchsorted(self.day[: self.n], np.arange(self.days + 2))

    def day_slot(self, day: int) -> int:
        """First slot whose local day is ``day`` or later (``n`` past the horizon)."""
        if day <= 0:
            return 0
        if day > self.days:
            return self.n
        return int(self._day_start[day])

    def day_of(self, when: datetime) -> int:
        """Local day index of an aware datetime."""
        return (when.astimezone(self.tz).date() - self.first_day).days

    def time_of(self, slot: int) -> datetime:
        """Start instant of ``slot`` (UTC)."""
        return self.origin + slot * self.step

    def inner(self, interval: Interval) -> tuple[int, int]:
        """Slots lying wholly inside ``interval``, as ``range(lo, hi)``."""
        lo = -(-(interval.start - self.origin) // self.step)
        hi = (interval.end - self.origin) // self.step
        return max(lo, 0), min(hi, self.n)

    def touched(self, interval: Interval) -> tuple[int, int]:
        """Slots sharing at least one instant with ``interval``, as ``range(lo, hi)``."""
        lo = (interval.start - self.origin) // self.step
        hi = -(-(interval.end - self.origin) // self.step)
        return max(lo, 0), min(hi, self.n)


def window_days(course: CourseRequest, previous_day: int | None, grid: SlotGrid) -> tuple[int, int]:
    """First and last local day index (inclusive) of the next session's protocol window."""
    if previous_day is None:
        first = (course.earliest - grid.first_day).days
        return first, first + course.first_window_days
    low, high = course.interval_weeks
    return previous_day + 7 * low, previous_day + 7 * high


def window_all(segment: Mask, length: int, size: int) -> Mask:
    """``out[i]`` is True when ``segment[i : i + length]`` is all True, for ``i < size``.

    ``segment`` may be shorter than ``size + length - 1`` (the horizon ends): starts whose
    visit would run past its end are False.
    """
    padded = np.zeros(size + length - 1, dtype=bool)
    padded[: len(segment)] = segment[: size + length - 1]
    out = padded[:size].copy()
    for offset in range(1, length):
        out &= padded[offset : offset + size]
    return out


@dataclass(frozen=True, slots=True)
class Placement:
    """A session put on the grid: start slot and resource indices."""

    slot: int
    practitioner: int
    room: int


class Calendar:
    """Free slots per practitioner, room and patient; booking a visit clears them."""

    def __init__(self, problem: SchedulingProblem, grid: SlotGrid) -> None:
        self.problem = problem
        self.grid = grid
        n = grid.n
        self.practitioner_ids = [p.id for p in problem.practitioners]
        self.room_ids = [r.id for r in problem.rooms]
        self.practitioner_index = {pid: i for i, pid in enumerate(self.practitioner_ids)}
        self.practitioner_free = np.zeros((len(problem.practitioners), n), dtype=bool)
        for row, practitioner in enumerate(problem.practitioners):
            self._open(self.practitioner_free[row], practitioner.working, practitioner.busy)
        self.room_free = np.zeros((len(problem.rooms), n), dtype=bool)
        for row, room in enumerate(problem.rooms):
            self._open(self.room_free[row], room.available, room.busy)
        self.open = np.ones(n, dtype=bool)
        for day in closed_days(problem.closures):
            index = (day - grid.first_day).days
            if 0 <= index < grid.days:
                self.open[grid.day_slot(index) : grid.day_slot(index + 1)] = False
        self._patients: dict[str, Mask] = {}
        self._preferences: dict[tuple[Preferences, timedelta], Mask] = {}

    def _open(self, row: Mask, available: tuple[Interval, ...], busy: tuple[Interval, ...]) -> None:
        for interval in merge(available):
            lo, hi = self.grid.inner(interval)
            row[lo:hi] = True
        for interval in busy:
            lo, hi = self.grid.touched(interval)
            row[lo:hi] = False

    def patient_free(self, patient_id: str) -> Mask:
        """The patient's free slots (built on first use)."""
        row = self._patients.get(patient_id)
        if row is None:
            row = np.ones(self.grid.n, dtype=bool)
            for interval in self.problem.patient_busy.get(patient_id, ()):
                lo, hi = self.grid.touched(interval)
                row[lo:hi] = False
            self._patients[patient_id] = row
        return row

    def eligible(self, course: CourseRequest) -> list[int]:
        """Indices of the practitioners who may treat ``course``."""
        if course.practitioner_id is None:
            return list(range(len(self.practitioner_ids)))
        return [self.practitioner_index[course.practitioner_id]]

    def starts(self, course: CourseRequest, lo: int, hi: int) -> tuple[Mask, Mask]:
        """Feasible starts in ``[lo, hi)`` per eligible practitioner and per room.

        Row ``j`` of the first array is True where eligible practitioner ``j`` and the
        patient are free and the clinic is open for the whole visit; row ``r`` of the
        second where room ``r`` is free for it.
        """
        length = course.duration // self.grid.step
        lo, hi = max(lo, 0), min(hi, self.grid.n)
        size = max(hi - lo, 0)
        stop = min(hi + length - 1, self.grid.n)
        base = self.open[lo:stop] & self.patient_free(course.patient_id)[lo:stop]
        practitioners = np.array(
            [
                window_all(base & self.practitioner_free[p, lo:stop], length, size)
                for p in self.eligible(course)
            ]
        ).reshape(-1, size)
        rooms = np.array(
            [
                window_all(self.room_free[r, lo:stop], length, size)
                for r in range(len(self.room_ids))
            ]
        ).reshape(-1, size)
        return practitioners, rooms

    def preferred(self, course: CourseRequest) -> Mask:
        """Slots where a visit of this course would meet the patient's preferences."""
        key = (course.preferences, course.duration)
        cached = self._preferences.get(key)
        if cached is not None:
            return cached
        grid, prefs = self.grid, course.preferences
        length = course.duration // grid.step
        n = grid.n
        ok = np.ones(n, dtype=bool)
        if prefs.weekdays:
            ok &= np.isin(grid.weekday[grid.day[:n]], sorted(prefs.weekdays))
        if prefs.times:
            start, end = grid.second[:n], grid.second[length : n + length]
            same_day = grid.day[:n] == grid.day[length : n + length]
            within = np.zeros(n, dtype=bool)
            for window in prefs.times:
                first = window.start.hour * 3600 + window.start.minute * 60 + window.start.second
                last = window.end.hour * 3600 + window.end.minute * 60 + window.end.second
                within |= (start >= first) & (end <= last)
            ok &= within & same_day
        self._preferences[key] = ok
        return ok

    def book(self, course: CourseRequest, placement: Placement) -> None:
        """Take the visit's slots from the practitioner, the room and the patient."""
        length = course.duration // self.grid.step
        visit = slice(placement.slot, placement.slot + length)
        self.practitioner_free[placement.practitioner, visit] = False
        self.room_free[placement.room, visit] = False
        self.patient_free(course.patient_id)[visit] = False

    def session(
        self, course: CourseRequest, number: int, placement: Placement, *, in_window: bool
    ) -> PlannedSession:
        """The public record of a placed session."""
        start = self.grid.time_of(placement.slot)
        end = start + course.duration
        return PlannedSession(
            course_id=course.course_id,
            number=number,
            start=start,
            end=end,
            practitioner_id=self.practitioner_ids[placement.practitioner],
            room_id=self.room_ids[placement.room],
            in_window=in_window,
            preference_met=course.preferences.met(
                start.astimezone(self.grid.tz), end.astimezone(self.grid.tz)
            ),
        )


def unplaced_rest(course: CourseRequest, first_number: int, reason: str) -> list[UnplacedSession]:
    """Session ``first_number`` with ``reason`` and every later session of the course."""
    rest = [UnplacedSession(course.course_id, first_number, reason)]
    rest.extend(
        UnplacedSession(course.course_id, number, PREVIOUS_UNPLACED)
        for number in range(first_number + 1, course.sessions + 1)
    )
    return rest
