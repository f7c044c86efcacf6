"""Calendar and booking: the use cases, each inside the caller's transaction.

Booking never double-books a practitioner, a room or a patient. Python checks first, to
answer with a 409 that names the conflicting appointment; the database has the last word
(exclusion constraints on PostgreSQL, triggers on SQLite: see the migration), so two
requests racing for one slot cannot both win. On SQLite the booking routes take the
write lock when their transaction begins (``BEGIN IMMEDIATE``, :func:`take_write_lock`),
which serialises check-then-insert; on PostgreSQL a losing insert meets the exclusion
constraint, is rolled back to a savepoint and answered with the same 409.

Times are stored in UTC. Working hours, closures and patients' preferences are in the
clinic's local wall-clock time (``Clinic.timezone``) and expanded to UTC by
:mod:`prolo.scheduling.slots`, which is where daylight saving time is handled.

An injection session is 30 minutes of preparation, treatment and recovery; the room and
the patient are held for the whole visit, the practitioner for the phases marked as
needing them (by default preparation and treatment), so a clinician can work two rooms
staggered. Clinics can change lengths and phases per kind of visit (``AppointmentType``);
the defaults below are operational settings, not clinical figures.

A visit with a procedure record took place: the record says so, and the courses domain
refuses a record for a visit cancelled, missed or not yet begun. So a documented visit
cannot become ``cancelled`` or ``noshow``, nor be moved (:class:`VisitDocumented`, 409,
naming the appointment and the record), on every path through this module: the calendar
pages, ``/api/appointments``, FHIR ``Appointment`` updates, and stopping a course. A
*signed* record never changes, so its visit stays as held; if the record is wrong it is
corrected by an amendment. A *draft* is not dropped silently with the visit: a clinician
discards it first (which is the statement "this session did not take place"), and then
the visit can be cancelled or marked a no-show. Records are looked up through
:func:`prolo.courses.service.procedure_records_of_appointment`; on PostgreSQL the
appointment row is locked first, so a record being written at the same moment (its
foreign key locks the row too) is either seen or waits for the cancellation.
"""

from __future__ import annotations

import datetime as dt
import importlib
import importlib.util
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from prolo.clinic.models import Clinic, Practitioner, Room
from prolo.courses import service as courses_service
from prolo.courses.models import TreatmentCourse
from prolo.db import holds_write_lock, utcnow
from prolo.errors import AccessDenied, Conflict, Forbidden, ValidationFailed
from prolo.patients import service as patients_service
from prolo.patients.models import Patient
from prolo.scheduling.models import (
    ACTIVE_STATUSES,
    Appointment,
    AppointmentType,
    CalendarClosure,
    WorkingHours,
)
from prolo.scheduling.schemas import (
    AppointmentIn,
    AppointmentTypeIn,
    ClosureIn,
    RescheduleIn,
    ScheduleCourseIn,
    WorkingHoursIn,
)
from prolo.scheduling.slots import (
    Closure,
    Interval,
    TimeWindow,
    WeeklyHours,
    as_zone,
    free_slots,
    local_to_utc,
    merge,
    subtract,
    working_intervals,
)
from prolo.security import audit
from prolo.security.principal import STAFF, Principal

if TYPE_CHECKING:  # the planners import OR-Tools: loaded only when a course is scheduled
    from prolo.scheduling.planner import Preferences

BOOKERS = STAFF  # admin, clinician, front desk
CLOSURE_EDITORS = frozenset({"admin", "front_desk"})
GRID = dt.timedelta(minutes=5)  # every start and end sits on a 5-minute mark
SLOT_STEP = dt.timedelta(minutes=15)
MAX_AHEAD = dt.timedelta(days=730)
MAX_SLOT_DAYS = 31
MAX_SLOTS = 500
PLANNER_SECONDS = 3.0

# Which status may follow which (FHIR Appointment.status subset).
STATUS_MOVES: dict[str, tuple[str, ...]] = {
    "booked": ("arrived", "fulfilled", "cancelled", "noshow"),
    "arrived": ("fulfilled", "cancelled"),
    "fulfilled": (),
    "cancelled": (),
    "noshow": (),
}


class InThePast(ValidationFailed):
    code = "in_the_past"


class ShorterThanType(ValidationFailed):
    code = "shorter_than_type"


class OutsideWorkingHours(ValidationFailed):
    code = "outside_working_hours"


class Closed(ValidationFailed):
    code = "closed"


class DoubleBooked(Conflict):
    """Another active appointment holds the practitioner, the room or the patient."""

    code = "double_booked"


class AppointmentStatusConflict(Conflict):
    code = "appointment_status"


class VisitDocumented(AppointmentStatusConflict):
    """The visit has a procedure record, so it took place: not cancelled, missed or moved."""


# --- visit types -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Phase:
    """A part of a visit; ``practitioner`` says whether the practitioner is needed for it."""

    name: str
    minutes: int
    practitioner: bool


@dataclass(frozen=True, slots=True)
class VisitType:
    """A kind of visit: its length and phases in order."""

    code: str
    name: str
    phases: tuple[Phase, ...]

    @property
    def minutes(self) -> int:
        return sum(p.minutes for p in self.phases)

    @property
    def length(self) -> dt.timedelta:
        return dt.timedelta(minutes=self.minutes)

    def practitioner_span(self, starts_at: dt.datetime, ends_at: dt.datetime) -> Interval:
        """When the practitioner is held for a visit ``[starts_at, ends_at)`` of this type.

        A visit longer than the type (an extended consultation) holds the practitioner
        throughout: the phases only describe the standard visit.
        """
        if ends_at - starts_at != self.length:
            return Interval(starts_at, ends_at)
        offset, first, last = 0, None, None
        for phase in self.phases:
            if phase.practitioner:
                first = offset if first is None else first
                last = offset + phase.minutes
            offset += phase.minutes
        if first is None or last is None:
            return Interval(starts_at, ends_at)
        return Interval(
            starts_at + dt.timedelta(minutes=first), starts_at + dt.timedelta(minutes=last)
        )

    def describe(self) -> str:
        """E.g. ``'30 minutes: preparation 10, treatment 10, recovery 10'``."""
        parts = ", ".join(f"{p.name} {p.minutes}" for p in self.phases)
        return f"{self.minutes} minutes" + (f": {parts}" if len(self.phases) > 1 else "")


DEFAULT_TYPES: dict[str, VisitType] = {
    "consultation": VisitType(
        "consultation", "New-patient consultation", (Phase("consultation", 45, True),)
    ),
    # The injection visit: 30 minutes, room held throughout; recovery is watched
    # by the team, so the clinician is free for the next room.
    "injection": VisitType(
        "injection",
        "Injection session",
        (
            Phase("preparation", 10, True),
            Phase("treatment", 10, True),
            Phase("recovery", 10, False),
        ),
    ),
    "follow_up": VisitType("follow_up", "Follow-up", (Phase("follow-up", 15, True),)),
}


def visit_types(*, session: Session, clinic_id: int) -> dict[str, VisitType]:
    """The clinic's visit types: its own settings over the defaults."""
    types = dict(DEFAULT_TYPES)
    for row in session.scalars(
        select(AppointmentType).where(AppointmentType.clinic_id == clinic_id)
    ):
        types[row.code] = VisitType(
            row.code,
            row.name,
            tuple(
                Phase(str(p["name"]), int(p["minutes"]), bool(p["practitioner"]))
                for p in row.phases
            ),
        )
    return types


def set_visit_type(
    *, session: Session, principal: Principal, code: str, data: AppointmentTypeIn
) -> VisitType:
    """Set the clinic's length and phases for one kind of visit (admins)."""
    if principal.role != "admin":
        raise Forbidden("only admins may change appointment types")
    if code not in DEFAULT_TYPES:
        raise ValidationFailed(f"unknown kind of visit {code!r}", field="code")
    row = session.scalars(
        select(AppointmentType).where(
            AppointmentType.clinic_id == principal.clinic_id, AppointmentType.code == code
        )
    ).first()
    phases = [p.model_dump() for p in data.phases]
    minutes = sum(p.minutes for p in data.phases)
    if row is None:
        row = AppointmentType(clinic_id=principal.clinic_id, code=code)
        session.add(row)
    row.name, row.phases, row.minutes, row.updated_at = data.name, phases, minutes, utcnow()
    session.flush()
    audit.record(
        session,
        principal.actor,
        action="U",
        event="appointment_type.update",
        entity_type="AppointmentType",
        entity_id=row.id,
    )
    return visit_types(session=session, clinic_id=principal.clinic_id)[code]


# --- clinic, resources, hours and closures -----------------------------------------------


def clinic_zone(session: Session, clinic_id: int) -> ZoneInfo:
    """The clinic's IANA zone, in which hours, closures and days are read."""
    clinic = session.get_one(Clinic, clinic_id)
    return as_zone(clinic.timezone)


def _local_day(moment: dt.datetime, zone: ZoneInfo) -> dt.date:
    return moment.astimezone(zone).date()


def _day_start(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    return local_to_utc(day, dt.time(0, 0), zone)


def _fmt(moment: dt.datetime, zone: ZoneInfo, fmt: str = "%a %d %b %Y %H:%M") -> str:
    return moment.astimezone(zone).strftime(fmt)


def _span_text(starts_at: dt.datetime, ends_at: dt.datetime, zone: ZoneInfo) -> str:
    day = _fmt(starts_at, zone, "%a %d %b %Y")
    return f"{_fmt(starts_at, zone, '%H:%M')} to {_fmt(ends_at, zone, '%H:%M')} on {day}"


def practitioner_in_clinic(
    *, session: Session, clinic_id: int, practitioner_id: int, field: str = "practitioner_id"
) -> Practitioner:
    """The clinic's active practitioner; ValidationFailed naming ``field`` otherwise."""
    practitioner = session.get(Practitioner, practitioner_id)
    if practitioner is None or practitioner.clinic_id != clinic_id:
        raise ValidationFailed("no such practitioner in this clinic", field=field)
    if not practitioner.active:
        raise ValidationFailed("this practitioner no longer takes appointments", field=field)
    return practitioner


def room_in_clinic(
    *, session: Session, clinic_id: int, room_id: int, field: str = "room_id"
) -> Room:
    """The clinic's room in use; ValidationFailed naming ``field`` otherwise."""
    room = session.get(Room, room_id)
    if room is None or room.clinic_id != clinic_id:
        raise ValidationFailed("no such room in this clinic", field=field)
    if not room.active:
        raise ValidationFailed("this room is not in use", field=field)
    return room


def active_practitioners(*, session: Session, clinic_id: int) -> list[Practitioner]:
    return list(
        session.scalars(
            select(Practitioner)
            .where(Practitioner.clinic_id == clinic_id, Practitioner.active.is_(True))
            .order_by(Practitioner.family_name, Practitioner.given_name, Practitioner.id)
        )
    )


def active_rooms(*, session: Session, clinic_id: int) -> list[Room]:
    return list(
        session.scalars(
            select(Room)
            .where(Room.clinic_id == clinic_id, Room.active.is_(True))
            .order_by(Room.name, Room.id)
        )
    )


def weekly_hours(*, session: Session, practitioner_id: int) -> WeeklyHours:
    """A practitioner's weekly working hours (local clinic time)."""
    rows = session.scalars(
        select(WorkingHours)
        .where(WorkingHours.practitioner_id == practitioner_id)
        .order_by(WorkingHours.weekday, WorkingHours.starts_local)
    ).all()
    spec: dict[int, list[tuple[dt.time, dt.time]]] = {}
    for row in rows:
        spec.setdefault(row.weekday, []).append((row.starts_local, row.ends_local))
    return WeeklyHours.of(spec)


def working_hours_rows(*, session: Session, practitioner_id: int) -> list[WorkingHours]:
    return list(
        session.scalars(
            select(WorkingHours)
            .where(WorkingHours.practitioner_id == practitioner_id)
            .order_by(WorkingHours.weekday, WorkingHours.starts_local)
        )
    )


def describe_hours(hours: WeeklyHours) -> str:
    """Weekly hours in few words: days with the same windows run together, e.g.
    ``'Mon-Fri 08:00-18:00; Sat 09:00-12:00'``."""
    names = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
    parts: list[str] = []
    day = 0
    while day < 7:
        windows = hours.days[day]
        last = day
        while last + 1 < 7 and hours.days[last + 1] == windows:
            last += 1
        if windows:
            spans = ", ".join(
                f"{w.start.strftime('%H:%M')}-{w.end.strftime('%H:%M')}" for w in windows
            )
            label = names[day] if last == day else f"{names[day]}-{names[last]}"
            parts.append(f"{label} {spans}")
        day = last + 1
    return "; ".join(parts)


def _require_staff(principal: Principal) -> None:
    if principal.role not in STAFF:
        raise Forbidden("only clinic staff may use the calendar")


def set_working_hours(
    *, session: Session, principal: Principal, practitioner_id: int, data: WorkingHoursIn
) -> list[WorkingHours]:
    """Replace a practitioner's weekly hours (admins). Booked visits are not moved.

    Only the windows that differ are written, all in one flush, so a change is one change
    of the practitioner's calendar (its FHIR Schedule's version rises once); the same
    hours again write nothing and are audited as a read.
    """
    if principal.role != "admin":
        raise Forbidden("only admins may change working hours")
    practitioner = session.get(Practitioner, practitioner_id)
    if practitioner is None or practitioner.clinic_id != principal.clinic_id:
        raise AccessDenied(
            "no such practitioner", entity_type="Practitioner", entity_id=practitioner_id
        )
    current = working_hours_rows(session=session, practitioner_id=practitioner_id)
    wanted = sorted((w.weekday, w.starts, w.ends) for w in data.windows)
    if [(r.weekday, r.starts_local, r.ends_local) for r in current] == wanted:
        audit.record(
            session,
            principal.actor,
            action="R",
            event="working_hours.read",
            entity_type="PractitionerRole",
            entity_id=practitioner_id,
            detail="the same working hours again: nothing written",
        )
        return current
    # A window that keeps its start keeps its row (the end may move): its unique key
    # (practitioner, weekday, start) is then never inserted while the old row still
    # holds it, and the flush needs no order between inserts and deletes.
    kept = {(r.weekday, r.starts_local): r for r in current}
    for weekday, starts, ends in wanted:
        row = kept.pop((weekday, starts), None)
        if row is None:
            session.add(
                WorkingHours(
                    practitioner_id=practitioner_id,
                    weekday=weekday,
                    starts_local=starts,
                    ends_local=ends,
                )
            )
        elif row.ends_local != ends:
            row.ends_local = ends
    for row in kept.values():
        session.delete(row)
    session.flush()
    audit.record(
        session,
        principal.actor,
        action="U",
        event="working_hours.update",
        entity_type="PractitionerRole",
        entity_id=practitioner_id,
    )
    return working_hours_rows(session=session, practitioner_id=practitioner_id)


def give_default_hours(
    *,
    session: Session,
    clinic_id: int,
    weekdays: Sequence[int] = (0, 1, 2, 3, 4),
    starts: dt.time = dt.time(8, 0),
    ends: dt.time = dt.time(18, 0),
) -> int:
    """Weekday hours for each of the clinic's practitioners who has none (the demo clinic).

    Returns how many practitioners were given hours. No audit row: no health data.
    """
    given = 0
    for practitioner in active_practitioners(session=session, clinic_id=clinic_id):
        if working_hours_rows(session=session, practitioner_id=practitioner.id):
            continue
        for weekday in weekdays:
            session.add(
                WorkingHours(
                    practitioner_id=practitioner.id,
                    weekday=weekday,
                    starts_local=starts,
                    ends_local=ends,
                )
            )
        given += 1
    session.flush()
    return given


def closures_between(
    *, session: Session, clinic_id: int, first_day: dt.date, last_day: dt.date
) -> list[CalendarClosure]:
    """The clinic's closures touching local days ``first_day`` to ``last_day``."""
    return list(
        session.scalars(
            select(CalendarClosure)
            .where(
                CalendarClosure.clinic_id == clinic_id,
                CalendarClosure.first_day <= last_day,
                CalendarClosure.last_day >= first_day,
            )
            .order_by(CalendarClosure.first_day, CalendarClosure.id)
        )
    )


def add_closure(*, session: Session, principal: Principal, data: ClosureIn) -> CalendarClosure:
    """Close the clinic, a room or a practitioner's calendar on some days.

    Refused (409) while active appointments fall on those days: move or cancel them first,
    so no booked patient is silently left in a closed room.
    """
    if principal.role not in CLOSURE_EDITORS:
        raise Forbidden("only admins and the front desk may add closures")
    clinic_id = principal.clinic_id
    if data.room_id is not None:
        room_in_clinic(session=session, clinic_id=clinic_id, room_id=data.room_id)
    if data.practitioner_id is not None:
        practitioner_in_clinic(
            session=session, clinic_id=clinic_id, practitioner_id=data.practitioner_id
        )
    _refuse_booked_days(session, clinic_id, data)
    closure = CalendarClosure(clinic_id=clinic_id, **data.model_dump())
    session.add(closure)
    session.flush()
    audit.record(
        session,
        principal.actor,
        action="C",
        event="closure.create",
        entity_type="Schedule",
        entity_id=closure.id,
    )
    return closure


def _refuse_booked_days(session: Session, clinic_id: int, data: ClosureIn) -> None:
    """Conflict (409) while active appointments fall on the days ``data`` closes."""
    zone = clinic_zone(session, clinic_id)
    start = _day_start(data.first_day, zone)
    end = _day_start(data.last_day + dt.timedelta(days=1), zone)
    stmt = select(Appointment.id).where(
        Appointment.clinic_id == clinic_id,
        Appointment.status.in_(ACTIVE_STATUSES),
        Appointment.starts_at < end,
        Appointment.ends_at > start,
    )
    if data.room_id is not None:
        stmt = stmt.where(Appointment.room_id == data.room_id)
    if data.practitioner_id is not None:
        stmt = stmt.where(Appointment.practitioner_id == data.practitioner_id)
    affected = list(session.scalars(stmt.order_by(Appointment.starts_at).limit(50)))
    if affected:
        raise Conflict(
            f"{len(affected)} appointment(s) fall on those days: move or cancel them first",
            extra={"appointment_ids": affected},
        )


def access_closure_by_id(
    *, session: Session, principal: Principal, closure_id: int
) -> CalendarClosure:
    """A closure of the principal's clinic (staff); AccessDenied (404) otherwise."""
    _require_staff(principal)
    closure = session.get(CalendarClosure, closure_id)
    if closure is None or closure.clinic_id != principal.clinic_id:
        raise AccessDenied("no such closure", entity_type="Schedule", entity_id=closure_id)
    return closure


def change_closure(
    *, session: Session, principal: Principal, closure_id: int, data: ClosureIn
) -> CalendarClosure:
    """Move, lengthen or shorten a closure, or change its reason.

    It keeps what it closes (the clinic, its room or its practitioner: ValidationFailed
    otherwise), and is refused (409) like :func:`add_closure` while active appointments
    fall on the days it would close.
    """
    if principal.role not in CLOSURE_EDITORS:
        raise Forbidden("only admins and the front desk may change closures")
    closure = access_closure_by_id(session=session, principal=principal, closure_id=closure_id)
    if (data.room_id, data.practitioner_id) != (closure.room_id, closure.practitioner_id):
        field = "practitioner_id" if data.practitioner_id != closure.practitioner_id else "room_id"
        raise ValidationFailed(
            "a closure keeps what it closes; add another closure instead", field=field
        )
    _refuse_booked_days(session, principal.clinic_id, data)
    closure.first_day, closure.last_day = data.first_day, data.last_day
    closure.reason = data.reason
    session.flush()
    audit.record(
        session,
        principal.actor,
        action="U",
        event="closure.update",
        entity_type="Schedule",
        entity_id=closure.id,
    )
    return closure


def remove_closure(*, session: Session, principal: Principal, closure_id: int) -> None:
    """Reopen: delete a closure."""
    if principal.role not in CLOSURE_EDITORS:
        raise Forbidden("only admins and the front desk may remove closures")
    closure = session.get(CalendarClosure, closure_id)
    if closure is None or closure.clinic_id != principal.clinic_id:
        raise AccessDenied("no such closure", entity_type="Schedule", entity_id=closure_id)
    session.delete(closure)
    audit.record(
        session,
        principal.actor,
        action="D",
        event="closure.delete",
        entity_type="Schedule",
        entity_id=closure_id,
    )


def _closed_days(
    closures: Iterable[CalendarClosure],
    *,
    room_id: int | None = None,
    practitioner_id: int | None = None,
) -> dict[dt.date, str]:
    """Local days closed for the whole clinic, or for the given room or practitioner."""
    days: dict[dt.date, str] = {}
    for closure in closures:
        applies = (closure.room_id is None and closure.practitioner_id is None) or (
            (room_id is not None and closure.room_id == room_id)
            or (practitioner_id is not None and closure.practitioner_id == practitioner_id)
        )
        if not applies:
            continue
        day = closure.first_day
        while day <= closure.last_day:
            days.setdefault(day, closure.reason)
            day += dt.timedelta(days=1)
    return days


def _day_intervals(days: Iterable[dt.date], zone: ZoneInfo) -> list[Interval]:
    return merge(
        Interval(_day_start(day, zone), _day_start(day + dt.timedelta(days=1), zone))
        for day in days
    )


# --- access ------------------------------------------------------------------------------


def _visible(principal: Principal, appointment: Appointment) -> bool:
    return principal.may_see(clinic_id=appointment.clinic_id, patient_id=appointment.patient_id)


def access_appointment_by_id(
    *,
    session: Session,
    principal: Principal,
    appointment_id: int,
    event: str = "appointment.read",
) -> Appointment:
    """The appointment if ``principal`` may see it; AccessDenied (404) otherwise. Audited."""
    appointment = session.get(Appointment, appointment_id)
    if appointment is None or not _visible(principal, appointment):
        raise AccessDenied(
            "no such appointment", entity_type="Appointment", entity_id=appointment_id
        )
    audit.record(
        session,
        principal.actor,
        action="R",
        event=event,
        entity_type="Appointment",
        entity_id=appointment.id,
        patient_id=appointment.patient_id,
    )
    return appointment


# --- the checks behind every booking ------------------------------------------------------


def _on_grid(moment: dt.datetime) -> bool:
    return moment.second == 0 and moment.microsecond == 0 and moment.minute % 5 == 0


def _check_times(
    vtype: VisitType, starts_at: dt.datetime, ends_at: dt.datetime, now: dt.datetime
) -> None:
    if not _on_grid(starts_at):
        raise ValidationFailed(
            "starts_at must be on a 5-minute mark, e.g. 09:05", field="starts_at"
        )
    if not _on_grid(ends_at):
        raise ValidationFailed("ends_at must be on a 5-minute mark, e.g. 09:35", field="ends_at")
    if starts_at < now:
        raise InThePast("starts_at is in the past: book a time from now on", field="starts_at")
    if starts_at > now + MAX_AHEAD:
        raise ValidationFailed("appointments are booked at most two years ahead", field="starts_at")
    if ends_at - starts_at < vtype.length:
        raise ShorterThanType(
            f"an appointment of type {vtype.code} ({vtype.name}) takes {vtype.describe()}; "
            f"this one is {int((ends_at - starts_at).total_seconds() // 60)} minutes",
            field="ends_at",
        )
    if ends_at - starts_at > dt.timedelta(hours=8):
        raise ValidationFailed("a visit is at most 8 hours", field="ends_at")


def _check_calendar(
    session: Session,
    *,
    clinic_id: int,
    zone: ZoneInfo,
    practitioner: Practitioner,
    room: Room,
    visit: Interval,
) -> None:
    """Refuse a visit on a closed day or outside the practitioner's working hours."""
    first = _local_day(visit.start, zone)
    last = _local_day(visit.end - dt.timedelta(microseconds=1), zone)
    closures = closures_between(
        session=session, clinic_id=clinic_id, first_day=first, last_day=last
    )
    days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    clinic_closed = _closed_days(closures)
    room_closed = _closed_days(closures, room_id=room.id)
    away = _closed_days(closures, practitioner_id=practitioner.id)
    for day in days:
        label = day.strftime("%a %d %b %Y")
        if day in clinic_closed:
            reason = f" ({clinic_closed[day]})" if clinic_closed[day] else ""
            raise Closed(f"the clinic is closed on {label}{reason}", field="starts_at")
        if day in room_closed:
            reason = f" ({room_closed[day]})" if room_closed[day] else ""
            raise Closed(f"{room.name} is closed on {label}{reason}", field="room_id")
        if day in away:
            raise Closed(f"{practitioner.display_name} is away on {label}", field="practitioner_id")
    hours = weekly_hours(session=session, practitioner_id=practitioner.id)
    working = working_intervals(
        hours, start=first - dt.timedelta(days=1), end=last + dt.timedelta(days=2), tz=zone
    )
    if not any(interval.contains(visit) for interval in working):
        described = describe_hours(hours) or "no working hours are set"
        raise OutsideWorkingHours(
            f"{_span_text(visit.start, visit.end, zone)} is outside "
            f"{practitioner.display_name}'s working hours ({described})",
            field="starts_at",
        )


@dataclass(frozen=True, slots=True)
class Clash:
    """An active appointment holding a resource the new visit needs."""

    resource: str  # "practitioner", "room" or "patient"
    appointment: Appointment


def _clashes(
    session: Session,
    *,
    practitioner_id: int,
    room_id: int | None,
    patient_id: int,
    visit: Interval,
    span: Interval,
    exclude_id: int | None,
) -> list[Clash]:
    p_start = func.coalesce(Appointment.practitioner_starts_at, Appointment.starts_at)
    p_end = func.coalesce(Appointment.practitioner_ends_at, Appointment.ends_at)
    overlaps_visit = and_(Appointment.starts_at < visit.end, Appointment.ends_at > visit.start)
    terms = [
        and_(
            Appointment.practitioner_id == practitioner_id, p_start < span.end, p_end > span.start
        ),
        and_(Appointment.patient_id == patient_id, overlaps_visit),
    ]
    if room_id is not None:
        terms.append(and_(Appointment.room_id == room_id, overlaps_visit))
    stmt = select(Appointment).where(Appointment.status.in_(ACTIVE_STATUSES), or_(*terms))
    if exclude_id is not None:
        stmt = stmt.where(Appointment.id != exclude_id)
    with session.no_autoflush:
        rows = session.scalars(stmt.order_by(Appointment.starts_at, Appointment.id)).all()
    found: list[Clash] = []
    for row in rows:
        held_from, held_until = row.practitioner_span
        if (
            row.practitioner_id == practitioner_id
            and held_from < span.end
            and held_until > span.start
        ):
            found.append(Clash("practitioner", row))
        elif room_id is not None and row.room_id == room_id and overlaps_visit_py(row, visit):
            found.append(Clash("room", row))
        elif row.patient_id == patient_id and overlaps_visit_py(row, visit):
            found.append(Clash("patient", row))
    return found


def overlaps_visit_py(row: Appointment, visit: Interval) -> bool:
    return row.starts_at < visit.end and row.ends_at > visit.start


_HELD = {
    "practitioner": "the practitioner is already booked",
    "room": "the room is already in use",
    "patient": "the patient already has an appointment",
}


def _double_booked(clash: Clash, zone: ZoneInfo) -> DoubleBooked:
    """The 409 naming the conflicting appointment: its id and time, never the patient."""
    other = clash.appointment
    return DoubleBooked(
        f"{_HELD[clash.resource]} from {_span_text(other.starts_at, other.ends_at, zone)} "
        f"(appointment {other.id})",
        field={"practitioner": "practitioner_id", "room": "room_id", "patient": "patient_id"}[
            clash.resource
        ],
        extra={
            "conflicting_appointment": {
                "id": other.id,
                "resource": clash.resource,
                "starts_at": other.starts_at.isoformat(),
                "ends_at": other.ends_at.isoformat(),
            }
        },
    )


def _flush_guarded(
    session: Session,
    appointment: Appointment,
    *,
    zone: ZoneInfo,
    practitioner_id: int,
    room_id: int,
    visit: Interval,
    span: Interval,
    changes: dict[str, object] | None = None,
) -> None:
    """Write the appointment in a savepoint; a database guard firing becomes the same 409.

    The guard fires when a concurrent booking committed between the check and the write
    (PostgreSQL) or when anything bypassed the check (both databases). ``changes`` are
    applied to an existing appointment; without them ``appointment`` is new.
    """
    patient_id = appointment.patient_id
    try:
        with session.begin_nested():
            if changes is None:
                session.add(appointment)
            else:
                for key, value in changes.items():
                    setattr(appointment, key, value)
            session.flush()
    except IntegrityError:
        clashes = _clashes(
            session,
            practitioner_id=practitioner_id,
            room_id=room_id,
            patient_id=patient_id,
            visit=visit,
            span=span,
            exclude_id=appointment.id if changes is not None else None,
        )
        if clashes:
            raise _double_booked(clashes[0], zone) from None
        if appointment.course_id is not None and appointment.session_number is not None:
            raise Conflict(
                f"session {appointment.session_number} of this course is already booked",
                field="session_number",
            ) from None
        raise


# --- reminders: the hook prolo.notify fills -----------------------------------------------


def _outbox() -> ModuleType | None:
    """``prolo.notify.outbox`` once the reminder worker provides it, else None."""
    if importlib.util.find_spec("prolo.notify.outbox") is None:
        return None
    return importlib.import_module("prolo.notify.outbox")


def queue_reminders(*, session: Session, appointment: Appointment) -> None:
    """Queue the appointment's reminders in the booking's own transaction."""
    outbox = _outbox()
    if outbox is not None:
        outbox.enqueue_appointment_reminders(session=session, appointment=appointment)


def drop_reminders(*, session: Session, appointment_id: int) -> None:
    """Cancel the appointment's pending reminders in the same transaction."""
    outbox = _outbox()
    if outbox is not None:
        outbox.cancel_appointment_reminders(session=session, appointment_id=appointment_id)


# --- booking ------------------------------------------------------------------------------


def take_write_lock(session: Session) -> None:
    """On SQLite, begin the session's transaction with the write lock (BEGIN IMMEDIATE).

    Call before the transaction's first statement: check-then-write is then serialised
    against every other writer. A no-op on PostgreSQL, where the exclusion constraints
    arbitrate.
    """
    if not holds_write_lock(session):  # a request's session already begins so
        session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})


def _require_booker(principal: Principal) -> None:
    if principal.role not in BOOKERS:
        raise Forbidden("only clinic staff may book or move appointments")


def _course_for_visit(
    session: Session,
    principal: Principal,
    *,
    course_id: int,
    patient_id: int,
    kind: str,
    session_number: int | None,
    exclude_id: int | None = None,
) -> tuple[TreatmentCourse, int | None]:
    course = session.get(TreatmentCourse, course_id)
    if course is None or course.clinic_id != principal.clinic_id:
        raise ValidationFailed("no such treatment course in this clinic", field="course_id")
    if course.patient_id != patient_id:
        raise ValidationFailed("this treatment course is another patient's", field="course_id")
    if course.status not in courses_service.OPEN_STATUSES:
        raise courses_service.CourseStatusConflict(
            f"the course is {course.status}: no more sessions can be booked",
            extra={"current_status": course.status},
        )
    if kind != "injection":
        if session_number is not None:
            raise ValidationFailed(
                "only injection sessions have a session number", field="session_number"
            )
        return course, None
    taken = _session_numbers(session, course.id, exclude_id=exclude_id)
    number = session_number
    if number is None:
        free = [n for n in range(1, course.planned_sessions + 1) if n not in taken]
        if not free:
            raise Conflict(
                f"all {course.planned_sessions} planned sessions of the course are booked",
                field="course_id",
            )
        number = free[0]
    elif number > course.planned_sessions:
        raise ValidationFailed(
            f"the course plans {course.planned_sessions} sessions", field="session_number"
        )
    elif number in taken:
        raise Conflict(f"session {number} of this course is already booked", field="session_number")
    return course, number


def _session_numbers(
    session: Session, course_id: int, *, exclude_id: int | None = None
) -> set[int]:
    stmt = select(Appointment.session_number).where(
        Appointment.course_id == course_id,
        Appointment.session_number.is_not(None),
        Appointment.status.in_(ACTIVE_STATUSES),
    )
    if exclude_id is not None:
        stmt = stmt.where(Appointment.id != exclude_id)
    with session.no_autoflush:
        numbered = {n for n in session.scalars(stmt) if n is not None}
        # older rows without a number take the free numbers, as course_sessions shows them
        legacy = session.scalar(
            select(func.count(Appointment.id)).where(
                Appointment.course_id == course_id,
                Appointment.session_number.is_(None),
                Appointment.kind == "injection",
                Appointment.status.in_(ACTIVE_STATUSES),
            )
        )
    free = (n for n in range(1, 21) if n not in numbered)
    return numbered | {next(free) for _ in range(legacy or 0)}


def highest_session_number(*, session: Session, course_id: int) -> int:
    """The highest session number of the course that is booked or done (0 if none)."""
    return max(_session_numbers(session, course_id), default=0)


def book_appointment(
    *,
    session: Session,
    principal: Principal,
    data: AppointmentIn,
    now: dt.datetime | None = None,
) -> Appointment:
    """Book a visit, or refuse with a 4xx naming the problem and nothing changed.

    Refused: an unknown practitioner, room or course (422), a time in the past, off the
    5-minute grid or shorter than the type (422), a closed day or outside working hours
    (422), and any overlap with an active appointment of the practitioner, the room or
    the patient (409 naming that appointment).
    """
    _require_booker(principal)
    now = now or utcnow()
    patient = patients_service.access_patient_by_id(
        session=session, principal=principal, patient_id=data.patient_id, event="appointment.book"
    )
    clinic_id = patient.clinic_id
    zone = clinic_zone(session, clinic_id)
    types = visit_types(session=session, clinic_id=clinic_id)
    vtype = types[data.kind]
    practitioner = practitioner_in_clinic(
        session=session, clinic_id=clinic_id, practitioner_id=data.practitioner_id
    )
    room = room_in_clinic(session=session, clinic_id=clinic_id, room_id=data.room_id)
    course, number = (None, None)
    if data.course_id is not None:
        course, number = _course_for_visit(
            session,
            principal,
            course_id=data.course_id,
            patient_id=patient.id,
            kind=data.kind,
            session_number=data.session_number,
        )
    starts_at = data.starts_at.astimezone(dt.UTC)
    ends_at = (data.ends_at or starts_at + vtype.length).astimezone(dt.UTC)
    if ends_at <= starts_at:
        raise ValidationFailed("ends_at must be after starts_at", field="ends_at")
    _check_times(vtype, starts_at, ends_at, now)
    visit = Interval(starts_at, ends_at)
    _check_calendar(
        session, clinic_id=clinic_id, zone=zone, practitioner=practitioner, room=room, visit=visit
    )
    span = vtype.practitioner_span(starts_at, ends_at)
    clashes = _clashes(
        session,
        practitioner_id=practitioner.id,
        room_id=room.id,
        patient_id=patient.id,
        visit=visit,
        span=span,
        exclude_id=None,
    )
    if clashes:
        raise _double_booked(clashes[0], zone)
    appointment = Appointment(
        clinic_id=clinic_id,
        patient_id=patient.id,
        practitioner_id=practitioner.id,
        room_id=room.id,
        course_id=course.id if course else None,
        session_number=number,
        kind=data.kind,
        status="booked",
        starts_at=starts_at,
        ends_at=ends_at,
        practitioner_starts_at=span.start,
        practitioner_ends_at=span.end,
        booked_by_user_id=principal.user_id,
        created_at=now,
        updated_at=now,
    )
    _flush_guarded(
        session,
        appointment,
        zone=zone,
        practitioner_id=practitioner.id,
        room_id=room.id,
        visit=visit,
        span=span,
    )
    audit.record(
        session,
        principal.actor,
        action="C",
        event="appointment.create",
        entity_type="Appointment",
        entity_id=appointment.id,
        patient_id=patient.id,
    )
    queue_reminders(session=session, appointment=appointment)
    return appointment


def reschedule_appointment(
    *,
    session: Session,
    principal: Principal,
    appointment_id: int,
    data: RescheduleIn,
    now: dt.datetime | None = None,
) -> Appointment:
    """Move a booked appointment (and optionally change practitioner or room).

    The same checks as booking, with the appointment's own old time not counting as a
    clash; its reminders are replaced in the same transaction.
    """
    _require_booker(principal)
    now = now or utcnow()
    appointment = access_appointment_by_id(
        session=session,
        principal=principal,
        appointment_id=appointment_id,
        event="appointment.reschedule",
    )
    if appointment.status != "booked":
        raise AppointmentStatusConflict(
            f"the appointment is {appointment.status}; only a booked one can be moved",
            extra={"current_status": appointment.status},
        )
    _refuse_if_documented(session, appointment, "moved")
    clinic_id = appointment.clinic_id
    zone = clinic_zone(session, clinic_id)
    vtype = visit_types(session=session, clinic_id=clinic_id)[appointment.kind]
    practitioner = practitioner_in_clinic(
        session=session,
        clinic_id=clinic_id,
        practitioner_id=data.practitioner_id or appointment.practitioner_id,
    )
    room_id = data.room_id or appointment.room_id
    if room_id is None:
        raise ValidationFailed("choose a room", field="room_id")
    room = room_in_clinic(session=session, clinic_id=clinic_id, room_id=room_id)
    starts_at = data.starts_at.astimezone(dt.UTC)
    length = appointment.ends_at - appointment.starts_at
    ends_at = (data.ends_at or starts_at + length).astimezone(dt.UTC)
    if ends_at <= starts_at:
        raise ValidationFailed("ends_at must be after starts_at", field="ends_at")
    _check_times(vtype, starts_at, ends_at, now)
    visit = Interval(starts_at, ends_at)
    _check_calendar(
        session, clinic_id=clinic_id, zone=zone, practitioner=practitioner, room=room, visit=visit
    )
    span = vtype.practitioner_span(starts_at, ends_at)
    clashes = _clashes(
        session,
        practitioner_id=practitioner.id,
        room_id=room.id,
        patient_id=appointment.patient_id,
        visit=visit,
        span=span,
        exclude_id=appointment.id,
    )
    if clashes:
        raise _double_booked(clashes[0], zone)
    _flush_guarded(
        session,
        appointment,
        zone=zone,
        practitioner_id=practitioner.id,
        room_id=room.id,
        visit=visit,
        span=span,
        changes={
            "practitioner_id": practitioner.id,
            "room_id": room.id,
            "starts_at": starts_at,
            "ends_at": ends_at,
            "practitioner_starts_at": span.start,
            "practitioner_ends_at": span.end,
            "updated_at": now,
        },
    )
    audit.record(
        session,
        principal.actor,
        action="U",
        event="appointment.reschedule",
        entity_type="Appointment",
        entity_id=appointment.id,
        patient_id=appointment.patient_id,
    )
    # the outbox replaces the reminders of the old time with those of the new one
    queue_reminders(session=session, appointment=appointment)
    return appointment


# Statuses saying the visit did not take place, which a procedure record contradicts.
NOT_HELD_STATUSES = ("cancelled", "noshow")
_BECOMING = {"cancelled": "cancelled", "noshow": "marked a no-show", "moved": "moved"}


def _refuse_if_documented(session: Session, appointment: Appointment, doing: str) -> None:
    """VisitDocumented (409) if a procedure record documents the visit.

    ``doing`` is ``cancelled``, ``noshow`` or ``moved``. The message names the record and
    what to do: amend a signed record if it is wrong (the visit stands), discard a draft
    first if the session did not take place.
    """
    if session.get_bind().dialect.name == "postgresql":
        # A record inserted concurrently holds a key-share lock on this row through its
        # foreign key: wait for it, then see it (READ COMMITTED reads afresh per statement).
        session.refresh(appointment, with_for_update=True)
    records = courses_service.procedure_records_of_appointment(
        session=session, appointment_id=appointment.id
    )
    if not records:
        return
    signed = [r for r in records if r.status == "signed"]
    record = signed[-1] if signed else records[0]
    becoming = _BECOMING[doing]
    if signed:
        advice = (
            f"procedure record {record.id} is signed and documents the injection session as "
            "having taken place; the visit stands (mark it done). If the record is wrong, "
            "correct it by an amendment"
        )
    else:
        advice = (
            f"draft procedure record {record.id} documents it. If the session did not take "
            "place, a clinician discards the draft first; otherwise keep the visit and "
            "complete the record"
        )
    raise VisitDocumented(
        f"appointment {appointment.id} cannot be {becoming}: {advice}",
        extra={
            "appointment_id": appointment.id,
            "current_status": appointment.status,
            "procedure_id": record.id,
            "procedure_status": record.status,
        },
    )


def _move_status(
    session: Session,
    principal: Principal,
    appointment: Appointment,
    status: str,
    now: dt.datetime,
) -> None:
    allowed = STATUS_MOVES[appointment.status]
    if status not in allowed:
        options = ", ".join(allowed) if allowed else "nothing (it is final)"
        raise AppointmentStatusConflict(
            f"the appointment is {appointment.status}; it can become {options}, not {status}",
            extra={"current_status": appointment.status},
        )
    if status in NOT_HELD_STATUSES:
        _refuse_if_documented(session, appointment, status)
    previous = appointment.status
    appointment.status = status
    appointment.updated_at = now
    audit.record(
        session,
        principal.actor,
        action="U",
        event=f"appointment.{status}",
        entity_type="Appointment",
        entity_id=appointment.id,
        patient_id=appointment.patient_id,
        detail=f"{previous} -> {status}",
    )


def cancel_appointment(
    *,
    session: Session,
    principal: Principal,
    appointment_id: int,
    reason: str = "patient_request",
    now: dt.datetime | None = None,
) -> Appointment:
    """Cancel; the time is free again at once. A patient may cancel their own future visit.

    VisitDocumented (409) if a procedure record documents the visit (module docstring).
    """
    now = now or utcnow()
    if principal.role not in BOOKERS and principal.role != "patient":
        raise Forbidden("your role may not cancel appointments")
    appointment = access_appointment_by_id(
        session=session,
        principal=principal,
        appointment_id=appointment_id,
        event="appointment.cancel",
    )
    if principal.role == "patient":
        if appointment.starts_at <= now:
            raise AppointmentStatusConflict(
                "this appointment has started: please call the clinic",
                extra={"current_status": appointment.status},
            )
        reason = "patient_request"
    _move_status(session, principal, appointment, "cancelled", now)
    appointment.cancelled_at = now
    appointment.cancel_reason = reason
    session.flush()
    drop_reminders(session=session, appointment_id=appointment.id)
    return appointment


def mark_no_show(
    *, session: Session, principal: Principal, appointment_id: int, now: dt.datetime | None = None
) -> Appointment:
    """The patient did not come: only once the visit's start has passed, and only for a
    visit no procedure record documents (VisitDocumented, 409)."""
    _require_booker(principal)
    now = now or utcnow()
    appointment = access_appointment_by_id(
        session=session,
        principal=principal,
        appointment_id=appointment_id,
        event="appointment.noshow",
    )
    if appointment.starts_at > now and appointment.status == "booked":
        raise AppointmentStatusConflict(
            "the appointment has not started yet; it cannot be a no-show",
            extra={"current_status": appointment.status},
        )
    _move_status(session, principal, appointment, "noshow", now)
    session.flush()
    drop_reminders(session=session, appointment_id=appointment.id)
    return appointment


def mark_arrived(
    *, session: Session, principal: Principal, appointment_id: int, now: dt.datetime | None = None
) -> Appointment:
    """The patient checked in."""
    _require_booker(principal)
    now = now or utcnow()
    appointment = access_appointment_by_id(
        session=session,
        principal=principal,
        appointment_id=appointment_id,
        event="appointment.arrived",
    )
    _move_status(session, principal, appointment, "arrived", now)
    session.flush()
    return appointment


def mark_fulfilled(
    *, session: Session, principal: Principal, appointment_id: int, now: dt.datetime | None = None
) -> Appointment:
    """The visit took place (clinicians and admins).

    An injection session needs informed consent on file: its course's, or for an
    injection outside a course any current consent of the patient. Marking the first
    session done makes a planned course active.
    """
    if principal.role not in courses_service.COURSE_WRITERS:
        raise Forbidden("only clinicians and admins may mark a visit done")
    now = now or utcnow()
    appointment = access_appointment_by_id(
        session=session,
        principal=principal,
        appointment_id=appointment_id,
        event="appointment.fulfilled",
    )
    if appointment.starts_at > now and appointment.status == "booked":
        raise AppointmentStatusConflict(
            "the appointment has not started yet; it cannot be done",
            extra={"current_status": appointment.status},
        )
    course = (
        session.get(TreatmentCourse, appointment.course_id)
        if appointment.course_id is not None
        else None
    )
    if appointment.kind == "injection":
        consent = (
            courses_service.consent_on_file(session=session, course=course)
            if course is not None
            else courses_service.patient_consent_on_file(
                session=session, patient_id=appointment.patient_id
            )
        )
        if consent is None:
            raise courses_service.ConsentMissing(
                "no informed consent on file: record the patient's consent before the "
                "injection session can be marked done"
            )
    _move_status(session, principal, appointment, "fulfilled", now)
    if course is not None and appointment.kind == "injection":
        courses_service.note_session_done(session=session, course=course)
    session.flush()
    return appointment


def cancel_course_appointments(
    *, session: Session, principal: Principal, course: TreatmentCourse, reason: str
) -> list[Appointment]:
    """Cancel the course's appointments still booked in the future (course stopped or done)."""
    now = utcnow()
    rows = list(
        session.scalars(
            select(Appointment).where(
                Appointment.course_id == course.id,
                Appointment.status == "booked",
                Appointment.starts_at > now,
            )
        )
    )
    for appointment in rows:
        _move_status(session, principal, appointment, "cancelled", now)
        appointment.cancelled_at = now
        appointment.cancel_reason = reason
        drop_reminders(session=session, appointment_id=appointment.id)
    session.flush()
    return rows


# --- reading the calendar ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CalendarEntry:
    """An appointment with the names the calendar shows (no clinical details)."""

    appointment: Appointment
    patient_name: str
    patient_id: int


def list_appointments(
    *,
    session: Session,
    principal: Principal,
    start: dt.datetime,
    end: dt.datetime,
    practitioner_id: int | None = None,
    room_id: int | None = None,
    patient_id: int | None = None,
    include_inactive: bool = True,
    limit: int = 1000,
) -> list[CalendarEntry]:
    """Appointments overlapping ``[start, end)`` that the principal may see, by start time."""
    stmt = (
        select(Appointment, Patient)
        .join(Patient, Patient.id == Appointment.patient_id)
        .where(Appointment.starts_at < end, Appointment.ends_at > start)
    )
    if principal.role == "patient":
        stmt = stmt.where(Appointment.patient_id == principal.patient_id)
    elif principal.role in STAFF:
        stmt = stmt.where(Appointment.clinic_id == principal.clinic_id)
    else:
        stmt = stmt.where(Appointment.id.is_(None))
    if practitioner_id is not None:
        stmt = stmt.where(Appointment.practitioner_id == practitioner_id)
    if room_id is not None:
        stmt = stmt.where(Appointment.room_id == room_id)
    if patient_id is not None:
        stmt = stmt.where(Appointment.patient_id == patient_id)
    if not include_inactive:
        stmt = stmt.where(Appointment.status.in_(ACTIVE_STATUSES))
    rows = session.execute(stmt.order_by(Appointment.starts_at, Appointment.id).limit(limit)).all()
    audit.record(
        session,
        principal.actor,
        action="R",
        event="appointment.search",
        entity_type="Appointment",
        patient_id=patient_id if principal.role != "patient" else principal.patient_id,
        detail=f"{len(rows)} shown",
    )
    return [CalendarEntry(a, p.display_name, p.id) for a, p in rows]


def course_appointments(*, session: Session, course: TreatmentCourse) -> list[Appointment]:
    """The course's appointments, every status, in time order."""
    return list(
        session.scalars(
            select(Appointment)
            .where(Appointment.course_id == course.id)
            .order_by(Appointment.starts_at, Appointment.id)
        )
    )


@dataclass(frozen=True, slots=True)
class CourseSession:
    """Session ``number`` of a course: its live appointment, if any, and its window."""

    number: int
    appointment: Appointment | None
    window_opens: dt.date | None
    window_closes: dt.date | None

    @property
    def status(self) -> str:
        return self.appointment.status if self.appointment else "not_booked"


def course_sessions(*, session: Session, course: TreatmentCourse) -> list[CourseSession]:
    """Each planned session with its live appointment and protocol window (local days).

    Session k's window runs ``interval_weeks_min`` to ``interval_weeks_max`` weeks after
    the day of session k - 1, as the planners read the protocol; unknown until that
    session has a day.
    """
    zone = clinic_zone(session, course.clinic_id)
    appointments = course_appointments(session=session, course=course)
    live = {
        a.session_number: a
        for a in appointments
        if a.session_number is not None and a.status in ACTIVE_STATUSES
    }
    # Appointments written without a session number (older rows, synthetic data) take
    # the free numbers in time order.
    unnumbered = [
        a
        for a in appointments
        if a.session_number is None and a.kind == "injection" and a.status in ACTIVE_STATUSES
    ]
    free_numbers = (n for n in range(1, 21) if n not in live)
    for legacy, number in zip(unnumbered, free_numbers, strict=False):
        live[number] = legacy
    sessions: list[CourseSession] = []
    previous_day: dt.date | None = None
    for number in range(1, max(course.planned_sessions, max(live, default=0)) + 1):
        appointment = live.get(number)
        opens = closes = None
        if number > 1 and previous_day is not None:
            opens = previous_day + dt.timedelta(weeks=course.interval_weeks_min)
            closes = previous_day + dt.timedelta(weeks=course.interval_weeks_max)
        sessions.append(CourseSession(number, appointment, opens, closes))
        previous_day = _local_day(appointment.starts_at, zone) if appointment else None
    return sessions


# --- free slots ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FreeSlot:
    """A start at which a practitioner and at least one room are free for the whole visit."""

    starts_at: dt.datetime
    ends_at: dt.datetime
    practitioner_id: int
    room_ids: tuple[int, ...]


class _Busy:
    """Sorted, merged busy intervals with a fast "is this span free?" test."""

    def __init__(self, intervals: Iterable[Interval]) -> None:
        self.intervals = merge(intervals)
        self.ends = [i.end for i in self.intervals]

    def free(self, start: dt.datetime, end: dt.datetime) -> bool:
        index = bisect_right(self.ends, start)
        return index >= len(self.intervals) or self.intervals[index].start >= end


def _busy_by(
    session: Session, clinic_id: int, start: dt.datetime, end: dt.datetime
) -> tuple[dict[int, list[Interval]], dict[int, list[Interval]], dict[int, list[Interval]]]:
    """Active appointments in the window: practitioner spans, room visits, patient visits."""
    rows = session.scalars(
        select(Appointment).where(
            Appointment.clinic_id == clinic_id,
            Appointment.status.in_(ACTIVE_STATUSES),
            Appointment.starts_at < end,
            Appointment.ends_at > start,
        )
    ).all()
    practitioners: dict[int, list[Interval]] = {}
    rooms: dict[int, list[Interval]] = {}
    patients: dict[int, list[Interval]] = {}
    for row in rows:
        held_from, held_until = row.practitioner_span
        practitioners.setdefault(row.practitioner_id, []).append(Interval(held_from, held_until))
        if row.room_id is not None:
            rooms.setdefault(row.room_id, []).append(Interval(row.starts_at, row.ends_at))
        patients.setdefault(row.patient_id, []).append(Interval(row.starts_at, row.ends_at))
    return practitioners, rooms, patients


def find_free_slots(
    *,
    session: Session,
    principal: Principal,
    kind: str,
    first_day: dt.date,
    last_day: dt.date,
    practitioner_id: int | None = None,
    room_id: int | None = None,
    patient_id: int | None = None,
    now: dt.datetime | None = None,
    limit: int = MAX_SLOTS,
) -> tuple[VisitType, list[FreeSlot], bool]:
    """Free starts for a visit of ``kind`` on local days ``first_day`` to ``last_day``.

    Starts lie on the clinic's local quarter hours, from now on, inside the practitioner's
    working hours, on days open for the clinic, the room and the practitioner, with the
    practitioner free for their phases and a room (and the patient, when given) free for
    the whole visit. Returns (type, slots in time order, truncated).
    """
    _require_staff(principal)
    clinic_id = principal.clinic_id
    if last_day < first_day:
        raise ValidationFailed("to is before from", field="to")
    if (last_day - first_day).days >= MAX_SLOT_DAYS:
        raise ValidationFailed(f"ask for at most {MAX_SLOT_DAYS} days at a time", field="to")
    now = now or utcnow()
    zone = clinic_zone(session, clinic_id)
    vtype = visit_types(session=session, clinic_id=clinic_id)[kind]
    if practitioner_id is not None:
        practitioners = [
            practitioner_in_clinic(
                session=session, clinic_id=clinic_id, practitioner_id=practitioner_id
            )
        ]
    else:
        practitioners = active_practitioners(session=session, clinic_id=clinic_id)
    if room_id is not None:
        rooms = [room_in_clinic(session=session, clinic_id=clinic_id, room_id=room_id)]
    else:
        rooms = active_rooms(session=session, clinic_id=clinic_id)
    if patient_id is not None:
        patients_service.access_patient_by_id(
            session=session, principal=principal, patient_id=patient_id, event="slots.search"
        )
    start = _day_start(first_day, zone)
    end = _day_start(last_day + dt.timedelta(days=1), zone)
    closures = closures_between(
        session=session, clinic_id=clinic_id, first_day=first_day, last_day=last_day
    )
    by_practitioner, by_room, by_patient = _busy_by(session, clinic_id, start, end)
    patient_busy = by_patient.get(patient_id, []) if patient_id is not None else []
    room_busy = {
        room.id: _Busy(
            [
                *by_room.get(room.id, []),
                *_day_intervals(_closed_days(closures, room_id=room.id), zone),
            ]
        )
        for room in rooms
    }
    first_practitioner_phase = vtype.practitioner_span(start, start + vtype.length)
    lead = first_practitioner_phase.start - start
    held = first_practitioner_phase.duration
    found: list[FreeSlot] = []
    for practitioner in practitioners:
        away = {
            **_closed_days(closures),
            **_closed_days(closures, practitioner_id=practitioner.id),
        }
        working = working_intervals(
            weekly_hours(session=session, practitioner_id=practitioner.id),
            start=first_day,
            end=last_day + dt.timedelta(days=1),
            tz=zone,
            closures=[Closure(day, day) for day in away],
        )
        busy = _Busy(by_practitioner.get(practitioner.id, []))
        starts = free_slots(
            working=working,
            busy=patient_busy,
            duration=vtype.length,
            step=SLOT_STEP,
            start=start,
            end=end,
        )
        for slot in starts:
            if slot < now or not busy.free(slot + lead, slot + lead + held):
                continue
            free_rooms = tuple(
                room.id for room in rooms if room_busy[room.id].free(slot, slot + vtype.length)
            )
            if free_rooms:
                found.append(FreeSlot(slot, slot + vtype.length, practitioner.id, free_rooms))
    found.sort(key=lambda s: (s.starts_at, s.practitioner_id))
    return vtype, found[:limit], len(found) > limit


# --- the course auto-scheduler ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScheduledSession:
    number: int
    starts_at: dt.datetime
    ends_at: dt.datetime
    practitioner_id: int
    room_id: int
    in_window: bool
    preference_met: bool
    appointment: Appointment | None


@dataclass(frozen=True, slots=True)
class ScheduleResult:
    course: TreatmentCourse
    placed: list[ScheduledSession]
    unplaced: list[tuple[int, str]]


def _preferences(doc: dict[str, Any] | None) -> Preferences:
    from prolo.scheduling.planner import Preferences

    if not doc:
        return Preferences()
    weekdays = frozenset(int(d) for d in doc.get("weekdays") or [])
    times = tuple(TimeWindow.of(str(w[0]), str(w[1])) for w in doc.get("times") or [])
    return Preferences(weekdays=weekdays, times=times)


def schedule_course(
    *,
    session: Session,
    principal: Principal,
    course_id: int,
    data: ScheduleCourseIn,
    now: dt.datetime | None = None,
) -> ScheduleResult:
    """Place the course's remaining sessions in the calendar with the CP-SAT planner.

    Sessions go inside the protocol's interval windows (session k between
    ``interval_weeks_min`` and ``interval_weeks_max`` weeks after session k - 1; the first
    within two weeks of ``earliest_day``, tomorrow by default), at the patient's preferred
    local days and times where possible, with the course's practitioner (or any) and a
    room free. Each placed session is then booked through :func:`book_appointment`'s
    checks; with ``dry_run`` nothing is written. Sessions after the highest one already
    booked are planned; a gap left by a cancelled session is booked by hand.
    """
    from prolo.scheduling.planner import (
        CourseRequest,
        SchedulingProblem,
        plan_cpsat,
    )
    from prolo.scheduling.planner import Practitioner as PlannerPractitioner
    from prolo.scheduling.planner import Room as PlannerRoom

    _require_booker(principal)
    now = now or utcnow()
    course = courses_service.access_course_by_id(
        session=session, principal=principal, course_id=course_id, event="course.schedule"
    )
    if course.status not in courses_service.OPEN_STATUSES:
        raise courses_service.CourseStatusConflict(
            f"the course is {course.status}: no more sessions can be booked",
            extra={"current_status": course.status},
        )
    if data.preferences is not None:
        course.preferences = courses_service.preferences_doc(data.preferences)
        course.updated_at = now
    preferences = _preferences(course.preferences)
    zone = clinic_zone(session, course.clinic_id)
    vtype = visit_types(session=session, clinic_id=course.clinic_id)["injection"]
    live = {
        s.number: s.appointment
        for s in course_sessions(session=session, course=course)
        if s.appointment is not None
    }
    last_number = max(live, default=0)
    if last_number >= course.planned_sessions:
        raise Conflict(f"all {course.planned_sessions} sessions of the course are booked")
    numbers = list(range(last_number + 1, course.planned_sessions + 1))
    today = _local_day(now, zone)
    low, high = course.interval_weeks_min, course.interval_weeks_max
    if last_number:
        previous_day = _local_day(live[last_number].starts_at, zone)
        earliest = previous_day + dt.timedelta(weeks=low)
        first_window_days = 7 * (high - low)
    else:
        earliest = max(data.earliest_day or today + dt.timedelta(days=1), today)
        first_window_days = 14
    step = SLOT_STEP if vtype.length % SLOT_STEP == dt.timedelta(0) else GRID
    horizon_start = now + (-(now - _day_start(today, zone)) % step)
    last_day = earliest + dt.timedelta(days=first_window_days + 7 * high * (len(numbers) - 1) + 28)
    last_day = min(last_day, today + dt.timedelta(days=366))
    horizon_end = _day_start(last_day + dt.timedelta(days=1), zone)
    unplaced_all = [
        (n, "no practitioner with working hours or no room in the planning horizon")
        for n in numbers
    ]
    if horizon_end <= horizon_start:
        return ScheduleResult(course, [], unplaced_all)
    closures = closures_between(
        session=session, clinic_id=course.clinic_id, first_day=today, last_day=last_day
    )
    clinic_closed = _closed_days(closures)
    by_practitioner, by_room, by_patient = _busy_by(
        session, course.clinic_id, horizon_start, horizon_end
    )
    if course.practitioner_id is not None:
        candidates = [
            practitioner_in_clinic(
                session=session, clinic_id=course.clinic_id, practitioner_id=course.practitioner_id
            )
        ]
    else:
        candidates = active_practitioners(session=session, clinic_id=course.clinic_id)
    horizon = Interval(horizon_start, horizon_end)
    planner_practitioners = []
    for practitioner in candidates:
        away = {**clinic_closed, **_closed_days(closures, practitioner_id=practitioner.id)}
        working = [
            Interval(max(i.start, horizon.start), min(i.end, horizon.end))
            for i in working_intervals(
                weekly_hours(session=session, practitioner_id=practitioner.id),
                start=today,
                end=last_day + dt.timedelta(days=1),
                tz=zone,
                closures=[Closure(day, day) for day in away],
            )
            if i.end > horizon.start and i.start < horizon.end
        ]
        if working:
            planner_practitioners.append(
                PlannerPractitioner(
                    str(practitioner.id),
                    tuple(working),
                    tuple(merge(by_practitioner.get(practitioner.id, []))),
                )
            )
    planner_rooms = []
    for room in active_rooms(session=session, clinic_id=course.clinic_id):
        closed = _day_intervals({**clinic_closed, **_closed_days(closures, room_id=room.id)}, zone)
        available = subtract([horizon], closed)
        if available:
            planner_rooms.append(
                PlannerRoom(str(room.id), tuple(available), tuple(merge(by_room.get(room.id, []))))
            )
    if not planner_practitioners or not planner_rooms:
        return ScheduleResult(course, [], unplaced_all)
    request = CourseRequest(
        course_id=str(course.id),
        patient_id=str(course.patient_id),
        sessions=len(numbers),
        interval_weeks=(low, high),
        earliest=earliest,
        practitioner_id=str(course.practitioner_id) if course.practitioner_id else None,
        preferences=preferences,
        duration=vtype.length,
        first_window_days=first_window_days,
    )
    problem = SchedulingProblem(
        tz=zone,
        start=horizon_start,
        end=horizon_end,
        practitioners=tuple(planner_practitioners),
        rooms=tuple(planner_rooms),
        courses=(request,),
        patient_busy={str(course.patient_id): tuple(merge(by_patient.get(course.patient_id, [])))},
        closures=tuple(Closure(day, day) for day in clinic_closed),
        step=step,
    )
    plan = plan_cpsat(problem, time_limit_s=PLANNER_SECONDS, workers=1)
    placed: list[ScheduledSession] = []
    for planned in sorted(plan.sessions, key=lambda s: s.number):
        number = numbers[planned.number - 1]
        appointment = None
        if not data.dry_run:
            appointment = book_appointment(
                session=session,
                principal=principal,
                data=AppointmentIn(
                    patient_id=course.patient_id,
                    practitioner_id=int(planned.practitioner_id),
                    room_id=int(planned.room_id),
                    kind="injection",
                    starts_at=planned.start,
                    course_id=course.id,
                    session_number=number,
                ),
                now=now,
            )
        placed.append(
            ScheduledSession(
                number,
                planned.start,
                planned.end,
                int(planned.practitioner_id),
                int(planned.room_id),
                planned.in_window,
                planned.preference_met,
                appointment,
            )
        )
    unplaced = [(numbers[u.number - 1], u.reason) for u in plan.unplaced]
    audit.record(
        session,
        principal.actor,
        action="U",
        event="course.schedule",
        entity_type="CarePlan",
        entity_id=course.id,
        patient_id=course.patient_id,
        detail=f"{len(placed)} placed, {len(unplaced)} unplaced, dry_run={data.dry_run}",
    )
    return ScheduleResult(course, placed, unplaced)
