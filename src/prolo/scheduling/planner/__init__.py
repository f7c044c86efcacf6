"""Plan the sessions of many treatment courses at once: a first-fit baseline and CP-SAT.

Both planners take a :class:`SchedulingProblem` and return a :class:`Plan`; both respect
the same hard constraints (working hours, room availability, closures, existing
appointments, no double booking of a practitioner, room or patient, session order, at most
one session per course per day). :mod:`prolo.scheduling.check` verifies a plan
independently. See ``docs/scheduling.md`` for the method and measured figures.
"""

from prolo.scheduling.planner.cpsat import Weights, plan_cpsat
from prolo.scheduling.planner.greedy import plan_greedy
from prolo.scheduling.planner.problem import (
    CourseRequest,
    Plan,
    PlannedSession,
    Practitioner,
    Preferences,
    Room,
    SchedulingProblem,
    SolveStats,
    UnplacedSession,
)

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
    "Weights",
    "plan_cpsat",
    "plan_greedy",
]
