"""When a course's questionnaires are due: a pure function of the course and its answers.

A treatment course asks for its condition's instruments at these timepoints:

- ``baseline``: before the first session. Open from the day the course is planned,
  due ``due_hours_before_session`` before the first session, overdue after that, and
  closed (missed) once the session starts, because answers given after an injection
  are no longer a baseline.
- ``pre_session``: before each later session, the same way; its window opens
  ``open_days_before`` days before the session (never before the previous session).
- ``week_6``, ``month_3``, ``month_6``, ``month_12`` after the course ends (days
  after the last session, clinic-configurable; a clinic may drop any of them). Open
  ``open_days_before`` days before the target day, due ``follow_up_due_days`` after it,
  then overdue until the next follow-up opens (the last one for
  ``last_follow_up_grace_days``), then missed.

The windows are operational choices for the clinic, not clinical figures: every one
of them is a setting. A completed response counts for an item when it has the item's
instrument and timepoint, belongs to the course (or to no course), and was written
inside the item's window. An in-progress response is a draft: the item stays due and
the patient resumes it. An in-progress response that matches no course item (a
clinic's request to answer "now") is listed as an ``ad_hoc`` item that is due.

Statuses: ``upcoming`` (not open yet), ``due``, ``overdue``, ``missed`` (closed
unanswered) and ``done``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal
from zoneinfo import ZoneInfo

Status = Literal["upcoming", "due", "overdue", "missed", "done"]
FOLLOW_UPS: tuple[str, ...] = ("week_6", "month_3", "month_6", "month_12")
TIMEPOINT_LABELS = {
    "baseline": "Before your first session",
    "pre_session": "Before session",
    "week_6": "6 weeks after the course",
    "month_3": "3 months after the course",
    "month_6": "6 months after the course",
    "month_12": "12 months after the course",
    "ad_hoc": "Requested by your clinic",
}
# A change rating compares with the start of treatment, so it means nothing before it.
CHANGE_INSTRUMENTS = frozenset({"pgic"})
ACTIVE_SESSION_STATUSES = frozenset({"booked", "arrived", "fulfilled"})


@dataclass(frozen=True)
class ScheduleSettings:
    """A clinic's questionnaire schedule (the defaults apply when it set none)."""

    pre_session: bool = True
    follow_up_days: tuple[tuple[str, int], ...] = (
        ("week_6", 42),
        ("month_3", 91),
        ("month_6", 182),
        ("month_12", 365),
    )
    open_days_before: int = 7
    due_hours_before_session: int = 24
    follow_up_due_days: int = 7
    last_follow_up_grace_days: int = 90

    def __post_init__(self) -> None:
        names = [name for name, _ in self.follow_up_days]
        unknown = sorted(set(names) - set(FOLLOW_UPS))
        if unknown:
            raise ValueError(f"unknown follow-up timepoint {unknown[0]!r}")
        if len(set(names)) != len(names):
            raise ValueError("follow-up timepoints repeat")
        days = [d for _, d in self.follow_up_days]
        if any(d < 1 or d > 1095 for d in days):
            raise ValueError("follow-up days must be between 1 and 1095")
        if days != sorted(set(days)):
            raise ValueError("follow-up days must increase with each timepoint")
        for name, value, high in (
            ("open_days_before", self.open_days_before, 60),
            ("due_hours_before_session", self.due_hours_before_session, 168),
            ("follow_up_due_days", self.follow_up_due_days, 60),
            ("last_follow_up_grace_days", self.last_follow_up_grace_days, 365),
        ):
            if not 0 <= value <= high:
                raise ValueError(f"{name} must be between 0 and {high}, got {value}")


@dataclass(frozen=True)
class Session:
    """An injection session of the course (an appointment)."""

    appointment_id: int
    starts_at: dt.datetime
    status: str


@dataclass(frozen=True)
class Course:
    """What the schedule needs of a treatment course."""

    id: int
    status: str  # planned, active, completed, stopped
    created_at: dt.datetime
    ended_on: dt.date | None
    instruments: tuple[str, ...]
    sessions: tuple[Session, ...] = ()


@dataclass(frozen=True)
class Answered:
    """A stored response, reduced to what matching needs."""

    response_id: int
    instrument_id: str
    timepoint: str
    course_id: int | None
    authored_at: dt.datetime
    completed: bool


@dataclass(frozen=True)
class DueItem:
    """One instrument to answer at one timepoint of a course."""

    course_id: int | None
    timepoint: str
    instrument_id: str
    status: Status
    opens_at: dt.datetime
    due_by: dt.datetime | None
    closes_at: dt.datetime | None
    session_number: int | None = None  # for baseline and pre_session
    appointment_id: int | None = None
    response_id: int | None = None  # the completed response, or the draft to resume
    draft: bool = False

    @property
    def answerable(self) -> bool:
        """Whether the patient can answer it now."""
        return self.status in ("due", "overdue")

    @property
    def label(self) -> str:
        """The timepoint in plain words."""
        text = TIMEPOINT_LABELS[self.timepoint]
        if self.timepoint == "pre_session" and self.session_number:
            return f"{text} {self.session_number}"
        return text


@dataclass
class _Window:
    timepoint: str
    opens_at: dt.datetime
    due_by: dt.datetime | None
    closes_at: dt.datetime | None
    session_number: int | None = None
    appointment_id: int | None = None
    instruments: tuple[str, ...] = field(default=())


def _local_midnight(day: dt.date, tz: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0, 0), tz).astimezone(dt.UTC)


def _sessions(course: Course) -> list[Session]:
    held = [s for s in course.sessions if s.status in ACTIVE_SESSION_STATUSES]
    return sorted(held, key=lambda s: (s.starts_at, s.appointment_id))


def course_end(course: Course, tz: ZoneInfo) -> dt.date | None:
    """The day follow-ups count from: the recorded end, else the last session of an
    ended course; None while the course is still planned or running."""
    if course.ended_on is not None:
        return course.ended_on
    if course.status in ("completed", "stopped"):
        sessions = _sessions(course)
        if sessions:
            return sessions[-1].starts_at.astimezone(tz).date()
    return None


def _windows(course: Course, settings: ScheduleSettings, tz: ZoneInfo) -> list[_Window]:
    windows: list[_Window] = []
    sessions = _sessions(course)
    before = dt.timedelta(hours=settings.due_hours_before_session)
    open_before = dt.timedelta(days=settings.open_days_before)
    baseline_set = tuple(i for i in course.instruments if i not in CHANGE_INSTRUMENTS)
    if not sessions:
        if course.status in ("planned", "active"):
            windows.append(
                _Window("baseline", course.created_at, None, None, 1, None, baseline_set)
            )
    for n, sess in enumerate(sessions, start=1):
        if n == 1:
            opens = min(course.created_at, sess.starts_at - open_before)
            windows.append(
                _Window(
                    "baseline",
                    opens,
                    sess.starts_at - before,
                    sess.starts_at,
                    1,
                    sess.appointment_id,
                    baseline_set,
                )
            )
        elif settings.pre_session:
            opens = max(sessions[n - 2].starts_at, sess.starts_at - open_before)
            windows.append(
                _Window(
                    "pre_session",
                    opens,
                    max(opens, sess.starts_at - before),
                    sess.starts_at,
                    n,
                    sess.appointment_id,
                    course.instruments,
                )
            )
    end = course_end(course, tz)
    if end is not None:
        follow = list(settings.follow_up_days)
        opens_list = [
            _local_midnight(end + dt.timedelta(days=days - settings.open_days_before), tz)
            for _, days in follow
        ]
        for k, (timepoint, days) in enumerate(follow):
            target = _local_midnight(end + dt.timedelta(days=days), tz)
            due_by = target + dt.timedelta(days=settings.follow_up_due_days)
            if k + 1 < len(follow):
                closes = max(due_by, opens_list[k + 1])
            else:
                closes = due_by + dt.timedelta(days=settings.last_follow_up_grace_days)
            windows.append(
                _Window(timepoint, opens_list[k], due_by, closes, instruments=course.instruments)
            )
    return windows


def _status(window: _Window, now: dt.datetime) -> Status:
    if now < window.opens_at:
        return "upcoming"
    if window.closes_at is not None and now >= window.closes_at:
        return "missed"
    if window.due_by is not None and now >= window.due_by:
        return "overdue"
    return "due"


def _inside(answer: Answered, window: _Window) -> bool:
    if answer.authored_at < window.opens_at:
        return False
    return window.closes_at is None or answer.authored_at < window.closes_at


def due_items(
    courses: Iterable[Course],
    answered: Sequence[Answered],
    *,
    now: dt.datetime,
    tz: ZoneInfo,
    settings: ScheduleSettings | None = None,
) -> list[DueItem]:
    """Every questionnaire item of ``courses`` with its status at ``now``.

    Items come in course order, then timepoint order, then the course's instrument
    order, followed by ``ad_hoc`` drafts that match no course item.

    Examples
    --------
    >>> utc = dt.UTC
    >>> course = Course(
    ...     id=1, status="planned", created_at=dt.datetime(2026, 1, 1, tzinfo=utc),
    ...     ended_on=None, instruments=("pain-nrs", "pgic"),
    ...     sessions=(Session(10, dt.datetime(2026, 1, 20, 15, tzinfo=utc), "booked"),),
    ... )
    >>> items = due_items([course], [], now=dt.datetime(2026, 1, 5, tzinfo=utc),
    ...                   tz=ZoneInfo("UTC"))
    >>> [(i.timepoint, i.instrument_id, i.status) for i in items]
    [('baseline', 'pain-nrs', 'due')]
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    settings = settings or ScheduleSettings()
    used: set[int] = set()
    items: list[DueItem] = []
    for course in courses:
        for window in _windows(course, settings, tz):
            for instrument_id in window.instruments:
                candidates = [
                    a
                    for a in answered
                    if a.instrument_id == instrument_id
                    and a.timepoint == window.timepoint
                    and a.course_id in (course.id, None)
                    and a.response_id not in used
                    and _inside(a, window)
                ]
                done = next((a for a in candidates if a.completed), None)
                draft = next((a for a in candidates if not a.completed), None)
                status: Status = "done" if done else _status(window, now)
                chosen = done or draft
                for a in candidates:
                    used.add(a.response_id)
                items.append(
                    DueItem(
                        course_id=course.id,
                        timepoint=window.timepoint,
                        instrument_id=instrument_id,
                        status=status,
                        opens_at=window.opens_at,
                        due_by=window.due_by,
                        closes_at=window.closes_at,
                        session_number=window.session_number,
                        appointment_id=window.appointment_id,
                        response_id=chosen.response_id if chosen else None,
                        draft=done is None and draft is not None,
                    )
                )
    for a in answered:
        # A course draft whose window closed is stale; only requests stay open.
        if a.completed or a.response_id in used or a.timepoint != "ad_hoc":
            continue
        items.append(
            DueItem(
                course_id=a.course_id,
                timepoint="ad_hoc",
                instrument_id=a.instrument_id,
                status="due",
                opens_at=a.authored_at,
                due_by=None,
                closes_at=None,
                response_id=a.response_id,
                draft=True,
            )
        )
    return items


def outstanding(items: Iterable[DueItem]) -> list[DueItem]:
    """The items a patient can answer now (due or overdue), overdue first."""
    found = [item for item in items if item.answerable]
    return sorted(found, key=lambda i: (i.status != "overdue", i.due_by or i.opens_at))
