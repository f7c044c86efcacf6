"""JSON API for the calendar: free slots, booking, moves, cancellations, calendar settings.

Routes that write appointments take SQLite's write lock when their transaction begins
(:data:`WriteSession`), before the caller is even authenticated, so that the conflict
check and the insert are one serialised step; on PostgreSQL the exclusion constraints
arbitrate concurrent bookings. A clash answers 409 problem+json naming the conflicting
appointment's id and time (never the other patient).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response
from sqlalchemy.orm import Session

from prolo.clinic.models import Practitioner
from prolo.errors import NotFound, ValidationFailed
from prolo.scheduling import service
from prolo.scheduling.models import Appointment
from prolo.scheduling.schemas import (
    EARLIEST_DAY,
    LATEST_DAY,
    AppointmentIn,
    AppointmentOut,
    AppointmentTypeIn,
    AppointmentTypeOut,
    CancelIn,
    ClosureIn,
    ClosureOut,
    FreeSlotOut,
    Kind,
    PhaseOut,
    PlannedSessionOut,
    RescheduleIn,
    ScheduleCourseIn,
    ScheduleOut,
    SlotPage,
    UnplacedSessionOut,
    WorkingHoursIn,
    WorkingHoursOut,
    WorkingWindow,
)
from prolo.scheduling.slots import local_to_utc
from prolo.security.principal import Principal
from prolo.web import DbSession, policy

router = APIRouter(prefix="/api", tags=["scheduling"])

IdPath = Annotated[int, Path(ge=1, le=2_147_483_647)]
IdQuery = Annotated[int | None, Query(ge=1, le=2_147_483_647)]
DayQuery = Annotated[dt.date, Query(ge=EARLIEST_DAY, le=LATEST_DAY)]


def _write_transaction(session: DbSession) -> Session:
    """The request's session, its transaction begun with SQLite's write lock."""
    service.take_write_lock(session)
    return session


WriteSession = Annotated[Session, Depends(_write_transaction)]
_staff = policy("admin", "clinician", "front_desk")
_staff_or_patient = policy("admin", "clinician", "front_desk", "patient")


def _booker(session: WriteSession, principal: Annotated[Principal, _staff]) -> Principal:
    # Depends on WriteSession first, so the write lock is taken before the principal
    # is looked up in the same transaction.
    return principal


def _canceller(
    session: WriteSession, principal: Annotated[Principal, _staff_or_patient]
) -> Principal:
    return principal


def _clinical_writer(
    session: WriteSession, principal: Annotated[Principal, policy("admin", "clinician")]
) -> Principal:
    return principal


Booker = Annotated[Principal, Depends(_booker)]
Canceller = Annotated[Principal, Depends(_canceller)]
ClinicalWriter = Annotated[Principal, Depends(_clinical_writer)]
Staff = Annotated[Principal, _staff]
Reader = Annotated[Principal, _staff_or_patient]
Admin = Annotated[Principal, policy("admin")]
ClosureEditor = Annotated[Principal, policy("admin", "front_desk")]


def _out(appointment: Appointment) -> AppointmentOut:
    return AppointmentOut.of(appointment)


@router.get("/slots", response_model=SlotPage)
def find_free_slots(
    session: DbSession,
    principal: Staff,
    kind: Kind,
    from_: Annotated[dt.date, Query(alias="from", ge=EARLIEST_DAY, le=LATEST_DAY)],
    to: DayQuery,
    practitioner_id: IdQuery = None,
    room_id: IdQuery = None,
    patient_id: IdQuery = None,
) -> SlotPage:
    """Free starts for a visit of ``kind`` on local days ``from`` to ``to`` (at most 31)."""
    vtype, slots, truncated = service.find_free_slots(
        session=session,
        principal=principal,
        kind=kind,
        first_day=from_,
        last_day=to,
        practitioner_id=practitioner_id,
        room_id=room_id,
        patient_id=patient_id,
    )
    return SlotPage(
        kind=kind,
        minutes=vtype.minutes,
        items=[
            FreeSlotOut(
                starts_at=s.starts_at,
                ends_at=s.ends_at,
                practitioner_id=s.practitioner_id,
                room_ids=list(s.room_ids),
            )
            for s in slots
        ],
        truncated=truncated,
    )


@router.get("/appointments", response_model=list[AppointmentOut])
def list_appointments(
    session: DbSession,
    principal: Reader,
    from_: Annotated[dt.date, Query(alias="from", ge=EARLIEST_DAY, le=LATEST_DAY)],
    to: DayQuery,
    practitioner_id: IdQuery = None,
    room_id: IdQuery = None,
    patient_id: IdQuery = None,
) -> list[AppointmentOut]:
    """Appointments on local days ``from`` to ``to`` (at most 62): staff their clinic's,
    a patient their own."""
    if to < from_:
        raise ValidationFailed("to is before from", field="to")
    if (to - from_).days > 61:
        raise ValidationFailed("ask for at most 62 days at a time", field="to")
    zone = service.clinic_zone(session, principal.clinic_id)
    entries = service.list_appointments(
        session=session,
        principal=principal,
        start=local_to_utc(from_, dt.time(0), zone),
        end=local_to_utc(to + dt.timedelta(days=1), dt.time(0), zone),
        practitioner_id=practitioner_id,
        room_id=room_id,
        patient_id=patient_id,
    )
    return [_out(e.appointment) for e in entries]


@router.post("/appointments", response_model=AppointmentOut, status_code=201)
def book_appointment(
    session: WriteSession, principal: Booker, data: AppointmentIn
) -> AppointmentOut:
    """Book a visit. 409 names the appointment it would overlap; 422 names a bad field."""
    return _out(service.book_appointment(session=session, principal=principal, data=data))


@router.get("/appointments/{appointment_id}", response_model=AppointmentOut)
def read_appointment(
    session: DbSession, principal: Reader, appointment_id: IdPath
) -> AppointmentOut:
    return _out(
        service.access_appointment_by_id(
            session=session, principal=principal, appointment_id=appointment_id
        )
    )


@router.post("/appointments/{appointment_id}/reschedule", response_model=AppointmentOut)
def reschedule_appointment(
    session: WriteSession, principal: Booker, appointment_id: IdPath, data: RescheduleIn
) -> AppointmentOut:
    """Move a booked visit (and optionally change practitioner or room)."""
    return _out(
        service.reschedule_appointment(
            session=session, principal=principal, appointment_id=appointment_id, data=data
        )
    )


@router.post("/appointments/{appointment_id}/cancel", response_model=AppointmentOut)
def cancel_appointment(
    session: WriteSession,
    principal: Canceller,
    appointment_id: IdPath,
    data: CancelIn | None = None,
) -> AppointmentOut:
    """Cancel; a patient may cancel their own visit before it starts."""
    reason = data.reason if data else "patient_request"
    return _out(
        service.cancel_appointment(
            session=session, principal=principal, appointment_id=appointment_id, reason=reason
        )
    )


@router.post("/appointments/{appointment_id}/no-show", response_model=AppointmentOut)
def mark_no_show(
    session: WriteSession, principal: Booker, appointment_id: IdPath
) -> AppointmentOut:
    return _out(
        service.mark_no_show(session=session, principal=principal, appointment_id=appointment_id)
    )


@router.post("/appointments/{appointment_id}/arrive", response_model=AppointmentOut)
def mark_arrived(
    session: WriteSession, principal: Booker, appointment_id: IdPath
) -> AppointmentOut:
    return _out(
        service.mark_arrived(session=session, principal=principal, appointment_id=appointment_id)
    )


@router.post("/appointments/{appointment_id}/fulfil", response_model=AppointmentOut)
def mark_fulfilled(
    session: WriteSession, principal: ClinicalWriter, appointment_id: IdPath
) -> AppointmentOut:
    """The visit took place; an injection session needs consent on file (409 otherwise)."""
    return _out(
        service.mark_fulfilled(session=session, principal=principal, appointment_id=appointment_id)
    )


@router.post("/courses/{course_id}/schedule", response_model=ScheduleOut)
def schedule_course(
    session: WriteSession, principal: Booker, course_id: IdPath, data: ScheduleCourseIn
) -> ScheduleOut:
    """Place the course's remaining sessions in their protocol windows (CP-SAT planner)."""
    result = service.schedule_course(
        session=session, principal=principal, course_id=course_id, data=data
    )
    return ScheduleOut(
        course_id=course_id,
        dry_run=data.dry_run,
        placed=[
            PlannedSessionOut(
                session_number=s.number,
                starts_at=s.starts_at,
                ends_at=s.ends_at,
                practitioner_id=s.practitioner_id,
                room_id=s.room_id,
                in_window=s.in_window,
                preference_met=s.preference_met,
                appointment_id=s.appointment.id if s.appointment else None,
            )
            for s in result.placed
        ],
        unplaced=[UnplacedSessionOut(session_number=n, reason=r) for n, r in result.unplaced],
    )


# --- calendar settings --------------------------------------------------------------------


@router.get("/appointment-types", response_model=list[AppointmentTypeOut])
def list_appointment_types(session: DbSession, principal: Staff) -> list[AppointmentTypeOut]:
    """The clinic's kinds of visit, their lengths and phases."""
    types = service.visit_types(session=session, clinic_id=principal.clinic_id)
    return [_type_out(t) for t in types.values()]


def _type_out(vtype: service.VisitType) -> AppointmentTypeOut:
    return AppointmentTypeOut(
        code=vtype.code,
        name=vtype.name,
        minutes=vtype.minutes,
        phases=[
            PhaseOut(name=p.name, minutes=p.minutes, practitioner=p.practitioner)
            for p in vtype.phases
        ],
    )


@router.put("/appointment-types/{code}", response_model=AppointmentTypeOut)
def set_appointment_type(
    session: DbSession, principal: Admin, code: Kind, data: AppointmentTypeIn
) -> AppointmentTypeOut:
    """Set the clinic's length and phases for a kind of visit (admins)."""
    return _type_out(
        service.set_visit_type(session=session, principal=principal, code=code, data=data)
    )


def _hours_out(session: Session, principal: Principal, practitioner_id: int) -> WorkingHoursOut:
    rows = service.working_hours_rows(session=session, practitioner_id=practitioner_id)
    zone = service.clinic_zone(session, principal.clinic_id)
    return WorkingHoursOut(
        practitioner_id=practitioner_id,
        timezone=zone.key,
        windows=[
            WorkingWindow(weekday=r.weekday, starts=r.starts_local, ends=r.ends_local) for r in rows
        ],
    )


@router.get("/practitioners/{practitioner_id}/working-hours", response_model=WorkingHoursOut)
def read_working_hours(
    session: DbSession, principal: Staff, practitioner_id: IdPath
) -> WorkingHoursOut:
    """A practitioner's weekly hours, in the clinic's local time."""
    practitioner = session.get(Practitioner, practitioner_id)
    if practitioner is None or practitioner.clinic_id != principal.clinic_id:
        raise NotFound("no such practitioner")
    return _hours_out(session, principal, practitioner_id)


@router.put("/practitioners/{practitioner_id}/working-hours", response_model=WorkingHoursOut)
def set_working_hours(
    session: DbSession, principal: Admin, practitioner_id: IdPath, data: WorkingHoursIn
) -> WorkingHoursOut:
    """Replace a practitioner's weekly hours (admins)."""
    service.set_working_hours(
        session=session, principal=principal, practitioner_id=practitioner_id, data=data
    )
    return _hours_out(session, principal, practitioner_id)


@router.get("/closures", response_model=list[ClosureOut])
def list_closures(
    session: DbSession,
    principal: Staff,
    from_: Annotated[dt.date, Query(alias="from", ge=EARLIEST_DAY, le=LATEST_DAY)],
    to: DayQuery,
) -> list[ClosureOut]:
    """Closures touching local days ``from`` to ``to``."""
    rows = service.closures_between(
        session=session, clinic_id=principal.clinic_id, first_day=from_, last_day=to
    )
    return [ClosureOut.model_validate(r) for r in rows]


@router.post("/closures", response_model=ClosureOut, status_code=201)
def add_closure(session: DbSession, principal: ClosureEditor, data: ClosureIn) -> ClosureOut:
    """Close the clinic, a room or a practitioner's calendar on some days."""
    return ClosureOut.model_validate(
        service.add_closure(session=session, principal=principal, data=data)
    )


@router.delete("/closures/{closure_id}", status_code=204)
def remove_closure(session: DbSession, principal: ClosureEditor, closure_id: IdPath) -> Response:
    service.remove_closure(session=session, principal=principal, closure_id=closure_id)
    return Response(status_code=204)
