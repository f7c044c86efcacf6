"""Calendar, booking and planners.

The pure core, importable without the web framework or the database:

- :mod:`prolo.scheduling.slots`: intervals, clinic-local weekly hours, closures, free slots;
- :mod:`prolo.scheduling.planner`: the greedy and CP-SAT course planners;
- :mod:`prolo.scheduling.check`: an independent checker for plans.

Nothing is imported here so that booking code does not pay for OR-Tools; see
``docs/scheduling.md``.
"""
