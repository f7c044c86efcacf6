"""Pages of the calendar: the front desk's day and week views (by practitioner or by
room), booking, one appointment with its actions, and the patient's own appointments.

Times are shown in the clinic's zone and entered there: a form's date and time are read
as the clinic's wall clock on that day, so a booking across a daylight-saving change
lands where the front desk meant it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from prolo import ui
from prolo.clinic.models import Practitioner, Room
from prolo.courses.models import TreatmentCourse
from prolo.errors import AppError, NotFound
from prolo.patients.models import Patient
from prolo.scheduling import service
from prolo.scheduling.models import ACTIVE_STATUSES, Appointment
from prolo.scheduling.schemas import EARLIEST_DAY, LATEST_DAY, AppointmentIn, RescheduleIn
from prolo.scheduling.slots import local_to_utc, working_intervals
from prolo.security.principal import CLINICAL, Principal
from prolo.ui import PostedForm
from prolo.web import DbSession, policy

router = APIRouter(include_in_schema=False)

_staff = policy("admin", "clinician", "front_desk")
Staff = Annotated[Principal, _staff]
Patient_ = Annotated[Principal, policy("patient")]

ROW = dt.timedelta(minutes=5)  # one table row of the day grid
KIND_LABELS = {
    "consultation": "New-patient consultation",
    "injection": "Injection session",
    "follow_up": "Follow-up",
}
STATUS_LABELS = {
    "booked": "Booked",
    "arrived": "Arrived",
    "fulfilled": "Done",
    "cancelled": "Cancelled",
    "noshow": "No-show",
}
CANCEL_REASONS = [
    ("patient_request", "Patient asked"),
    ("clinic_request", "Clinic asked"),
    ("other", "Other"),
]
DAY = Annotated[dt.date | None, Query(ge=EARLIEST_DAY, le=LATEST_DAY)]
IdPath = Annotated[int, Path(ge=1, le=2_147_483_647)]


def _write_transaction(session: DbSession) -> Session:
    service.take_write_lock(session)
    return session


WriteSession = Annotated[Session, Depends(_write_transaction)]


def _booker(session: WriteSession, principal: Staff) -> Principal:
    return principal  # the write lock is taken before the principal is read


def _patient_writer(
    session: WriteSession, principal: Annotated[Principal, policy("patient")]
) -> Principal:
    return principal


Booker = Annotated[Principal, Depends(_booker)]
PatientWriter = Annotated[Principal, Depends(_patient_writer)]

ui.TEMPLATES.env.globals["kind_labels"] = KIND_LABELS
ui.TEMPLATES.env.globals["status_labels"] = STATUS_LABELS


def _form(form: FormData) -> dict[str, str]:
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _today(zone: ZoneInfo) -> dt.date:
    return dt.datetime.now(zone).date()


def _names(session: Session, clinic_id: int) -> tuple[dict[int, str], dict[int, str]]:
    practitioners = {
        p.id: p.display_name
        for p in session.scalars(select(Practitioner).where(Practitioner.clinic_id == clinic_id))
    }
    rooms = {r.id: r.name for r in session.scalars(select(Room).where(Room.clinic_id == clinic_id))}
    return practitioners, rooms


# --- the calendar grid --------------------------------------------------------------------


@dataclass
class Cell:
    """One cell of the grid: an appointment spanning rows, or a free (maybe bookable) row."""

    kind: Literal["appointment", "free"]
    rows: int = 1
    entry: service.CalendarEntry | None = None
    starts: dt.datetime | None = None
    ends: dt.datetime | None = None
    working: bool = True
    book_url: str | None = None


@dataclass
class Column:
    label: str
    sublabel: str = ""
    cells: dict[int, Cell | None] = field(default_factory=dict)
    overflow: list[service.CalendarEntry] = field(default_factory=list)


@dataclass
class Grid:
    rows: list[tuple[dt.datetime, str, bool]]  # (local start, label, is a label row)
    columns: list[Column]


def _day_bounds(day: dt.date, zone: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    return local_to_utc(day, dt.time(0), zone), local_to_utc(
        day + dt.timedelta(days=1), dt.time(0), zone
    )


def _build_column(
    column: Column,
    *,
    day: dt.date,
    zone: ZoneInfo,
    first_minute: int,
    last_minute: int,
    entries: list[service.CalendarEntry],
    by_practitioner: bool,
    working: list[tuple[dt.datetime, dt.datetime]],
    book_params: dict[str, str],
) -> None:
    """Fill ``column.cells`` for one local day; index = row number from ``first_minute``."""
    count = (last_minute - first_minute) // 5
    origin = dt.datetime.combine(day, dt.time(0), zone)
    taken: set[int] = set()
    for entry in entries:
        appointment = entry.appointment
        start, end = (
            appointment.practitioner_span
            if by_practitioner
            else (appointment.starts_at, appointment.ends_at)
        )
        local_start = start.astimezone(zone)
        if local_start.date() != day:
            column.overflow.append(entry)
            continue
        minute = local_start.hour * 60 + local_start.minute
        first = (minute - first_minute) // 5
        length = max(1, -(-int((end - start).total_seconds()) // 300))
        rows = set(range(first, first + length))
        if first < 0 or first + length > count or rows & taken:
            column.overflow.append(entry)
            continue
        taken |= rows
        column.cells[first] = Cell("appointment", rows=length, entry=entry, starts=start, ends=end)
        for row in range(first + 1, first + length):
            column.cells[row] = None  # covered by the rowspan
    for row in range(count):
        if row in taken:
            continue
        moment = origin + dt.timedelta(minutes=first_minute + 5 * row)
        # wall-clock rows that fall in a DST gap still map to a real instant
        instant = local_to_utc(day, moment.time(), zone)
        inside = any(a <= instant and instant + ROW <= b for a, b in working)
        cell = Cell("free", working=inside)
        if inside and moment.minute % 15 == 0 and instant > dt.datetime.now(dt.UTC):
            params = "&".join(f"{k}={v}" for k, v in book_params.items())
            cell.book_url = (
                f"/calendar/book?date={day.isoformat()}&time={moment.strftime('%H:%M')}&{params}"
            )
        column.cells[row] = cell


def _hours_window(
    session: Session, practitioners: list[Practitioner], days: list[dt.date], zone: ZoneInfo
) -> list[tuple[dt.datetime, dt.datetime]]:
    intervals: list[tuple[dt.datetime, dt.datetime]] = []
    for practitioner in practitioners:
        hours = service.weekly_hours(session=session, practitioner_id=practitioner.id)
        for interval in working_intervals(
            hours, start=min(days), end=max(days) + dt.timedelta(days=1), tz=zone
        ):
            intervals.append((interval.start, interval.end))
    return intervals


def _minute_range(
    working: list[tuple[dt.datetime, dt.datetime]],
    entries: list[service.CalendarEntry],
    zone: ZoneInfo,
) -> tuple[int, int]:
    minutes = [8 * 60, 18 * 60]
    for start, end in working:
        minutes += [_minute_of(start, zone), _minute_of(end, zone, end=True)]
    for entry in entries:
        minutes += [
            _minute_of(entry.appointment.starts_at, zone),
            _minute_of(entry.appointment.ends_at, zone, end=True),
        ]
    first = max(0, min(minutes) // 60 * 60)
    last = min(24 * 60, -(-max(minutes) // 60) * 60)
    return first, last


def _minute_of(moment: dt.datetime, zone: ZoneInfo, *, end: bool = False) -> int:
    local = moment.astimezone(zone)
    minute = local.hour * 60 + local.minute
    return 24 * 60 if end and minute == 0 else minute


@router.get("/calendar", response_class=HTMLResponse)
def calendar(
    request: Request,
    session: DbSession,
    principal: Staff,
    date: DAY = None,
    view: Literal["day", "week"] = "day",
    by: Literal["practitioner", "room"] = "practitioner",
    resource: Annotated[int | None, Query(ge=1, le=2_147_483_647)] = None,
) -> HTMLResponse:
    """The front desk's calendar: a day of every practitioner (or room), or one's week."""
    clinic_id = principal.clinic_id
    zone = service.clinic_zone(session, clinic_id)
    day = date or _today(zone)
    practitioners = service.active_practitioners(session=session, clinic_id=clinic_id)
    rooms = service.active_rooms(session=session, clinic_id=clinic_id)
    resources: list[Practitioner] | list[Room] = practitioners if by == "practitioner" else rooms
    chosen = next((r for r in resources if r.id == resource), resources[0] if resources else None)
    if view == "week":
        first_day = day - dt.timedelta(days=day.weekday())
        days = [first_day + dt.timedelta(days=i) for i in range(7)]
    else:
        first_day, days = day, [day]
    start, _ = _day_bounds(days[0], zone)
    _, end = _day_bounds(days[-1], zone)
    entries = [
        e
        for e in service.list_appointments(
            session=session,
            principal=principal,
            start=start,
            end=end,
            practitioner_id=chosen.id
            if view == "week" and by == "practitioner" and chosen
            else None,
            room_id=chosen.id if view == "week" and by == "room" and chosen else None,
            include_inactive=False,
        )
        if e.appointment.status in ACTIVE_STATUSES
    ]
    practitioner_names, room_names = _names(session, clinic_id)
    shown_practitioners = (
        practitioners
        if by == "practitioner" and view == "day"
        else ([chosen] if by == "practitioner" and isinstance(chosen, Practitioner) else [])
    )
    working_by_practitioner = {
        p.id: _hours_window(session, [p], days, zone) for p in shown_practitioners
    }
    all_working = [w for ws in working_by_practitioner.values() for w in ws]
    if by == "room":  # rooms follow the clinic's combined working hours
        all_working = _hours_window(session, practitioners, days, zone)
    first_minute, last_minute = _minute_range(all_working, entries, zone)
    columns: list[Column] = []
    if view == "day":
        for res in resources:
            if by == "practitioner":
                mine = [e for e in entries if e.appointment.practitioner_id == res.id]
                working = working_by_practitioner.get(res.id, [])
                label = practitioner_names[res.id]
            else:
                mine = [e for e in entries if e.appointment.room_id == res.id]
                working = all_working
                label = room_names[res.id]
            column = Column(label=label)
            _build_column(
                column,
                day=day,
                zone=zone,
                first_minute=first_minute,
                last_minute=last_minute,
                entries=mine,
                by_practitioner=by == "practitioner",
                working=working,
                book_params={f"{by}_id": str(res.id)},
            )
            columns.append(column)
    elif chosen is not None:
        working = (
            working_by_practitioner.get(chosen.id, []) if by == "practitioner" else all_working
        )
        for each in days:
            lo, hi = _day_bounds(each, zone)
            mine = [e for e in entries if lo <= e.appointment.starts_at < hi]
            column = Column(label=each.strftime("%a %d %b"), sublabel=each.isoformat())
            _build_column(
                column,
                day=each,
                zone=zone,
                first_minute=first_minute,
                last_minute=last_minute,
                entries=mine,
                by_practitioner=by == "practitioner",
                working=working,
                book_params={f"{by}_id": str(chosen.id)},
            )
            columns.append(column)
    rows = []
    for row in range((last_minute - first_minute) // 5):
        minute = first_minute + 5 * row
        moment = dt.datetime.combine(day, dt.time(minute // 60, minute % 60))
        rows.append((moment, moment.strftime("%H:%M"), minute % 30 == 0))
    step = dt.timedelta(days=7 if view == "week" else 1)
    return ui.render(
        request,
        "scheduling/calendar.html",
        principal=principal,
        grid=Grid(rows=rows, columns=columns),
        day=day,
        days=days,
        view=view,
        by=by,
        chosen=chosen,
        resources=resources,
        practitioner_names=practitioner_names,
        room_names=room_names,
        previous=(first_day - step).isoformat(),
        following=(first_day + step).isoformat(),
        today=_today(zone).isoformat(),
        zone=zone.key,
    )


# --- booking ------------------------------------------------------------------------------


def _local_moment(date_text: str, time_text: str, zone: ZoneInfo) -> dt.datetime:
    """The clinic's wall-clock date and time as an aware instant; ValueError when unreadable."""
    day = dt.date.fromisoformat(date_text)
    clock = dt.time.fromisoformat(time_text)
    return local_to_utc(day, clock, zone)


def _booking_context(
    session: Session, principal: Principal, values: dict[str, str]
) -> dict[str, Any]:
    clinic_id = principal.clinic_id
    zone = service.clinic_zone(session, clinic_id)
    patients = session.scalars(
        select(Patient)
        .where(Patient.clinic_id == clinic_id)
        .order_by(Patient.family_name, Patient.given_name, Patient.id)
        .limit(1000)
    ).all()
    courses: list[TreatmentCourse] = []
    patient_id = values.get("patient_id", "")
    if patient_id.isdigit():
        courses = list(
            session.scalars(
                select(TreatmentCourse).where(
                    TreatmentCourse.clinic_id == clinic_id,
                    TreatmentCourse.patient_id == int(patient_id),
                    TreatmentCourse.status.in_(("planned", "active")),
                )
            )
        )
    types = service.visit_types(session=session, clinic_id=clinic_id)
    suggestions: list[service.FreeSlot] = []
    date_text, kind = values.get("date", ""), values.get("kind", "injection")
    if date_text and kind in types:
        try:
            day = dt.date.fromisoformat(date_text)
            practitioner = values.get("practitioner_id", "")
            room = values.get("room_id", "")
            _, suggestions, _ = service.find_free_slots(
                session=session,
                principal=principal,
                kind=kind,
                first_day=day,
                last_day=day,
                practitioner_id=int(practitioner) if practitioner.isdigit() else None,
                room_id=int(room) if room.isdigit() else None,
                patient_id=int(patient_id) if patient_id.isdigit() else None,
            )
        except (ValueError, AppError):
            suggestions = []
    practitioner_names, room_names = _names(session, clinic_id)
    practitioners = service.active_practitioners(session=session, clinic_id=clinic_id)
    rooms = service.active_rooms(session=session, clinic_id=clinic_id)
    return {
        "patient_options": [("", "Choose a patient…")]
        + [(str(p.id), f"{p.display_name} ({p.mrn})") for p in patients],
        "type_options": [(code, f"{t.name} ({t.minutes} min)") for code, t in types.items()],
        "practitioner_options": [("", "Choose…")]
        + [(str(p.id), p.display_name) for p in practitioners],
        "room_options": [("", "Choose…")] + [(str(r.id), r.name) for r in rooms],
        "courses": courses,
        "course_options": [("", "Not part of a course")]
        + [
            (str(c.id), f"{c.condition_id.replace('-', ' ')} · {c.planned_sessions} sessions")
            for c in courses
        ],
        "suggestions": _group_suggestions(suggestions, values, practitioner_names, zone),
        "practitioner_names": practitioner_names,
        "room_names": room_names,
        "zone": zone,
    }


def _group_suggestions(
    slots: list[service.FreeSlot],
    values: dict[str, str],
    practitioner_names: dict[int, str],
    zone: ZoneInfo,
    *,
    limit: int = 16,
) -> list[tuple[str, list[tuple[str, str]]]]:
    """Free starts as (local time, [(practitioner, booking form URL), ...]), earliest first."""
    keep = {k: values[k] for k in ("patient_id", "course_id") if values.get(k)}
    rows: dict[str, list[tuple[str, str]]] = {}
    for slot in slots:
        label = slot.starts_at.astimezone(zone).strftime("%H:%M")
        if label not in rows and len(rows) == limit:
            break
        params = {
            **keep,
            "date": values.get("date", ""),
            "time": label,
            "kind": values.get("kind", "injection"),
            "practitioner_id": str(slot.practitioner_id),
            "room_id": str(slot.room_ids[0]),
        }
        url = "/calendar/book?" + "&".join(f"{k}={v}" for k, v in params.items())
        rows.setdefault(label, []).append((practitioner_names[slot.practitioner_id], url))
    return list(rows.items())


_FIELD_FOR_FORM = {"starts_at": "time", "ends_at": "time"}


def _errors_from(exc: AppError) -> dict[str, str]:
    errors: dict[str, str] = {}
    for error in exc.errors or []:
        name = _FIELD_FOR_FORM.get(error.get("field") or "form", error.get("field") or "form")
        errors.setdefault(name, error.get("message") or exc.detail)
    if not errors:
        errors["form"] = exc.detail
    return errors


def _validation_errors(exc: ValidationError) -> dict[str, str]:
    return {_FIELD_FOR_FORM.get(k, k): v for k, v in ui.field_errors(exc).items()}


@router.get("/calendar/book", response_class=HTMLResponse)
def book_form(
    request: Request,
    session: DbSession,
    principal: Staff,
    date: DAY = None,
    time: Annotated[str, Query(max_length=5, pattern=r"^(\d\d:\d\d)?$")] = "",
    kind: Literal["consultation", "injection", "follow_up"] = "injection",
    practitioner_id: Annotated[int | None, Query(ge=1, le=2_147_483_647)] = None,
    room_id: Annotated[int | None, Query(ge=1, le=2_147_483_647)] = None,
    patient_id: Annotated[int | None, Query(ge=1, le=2_147_483_647)] = None,
    course_id: Annotated[int | None, Query(ge=1, le=2_147_483_647)] = None,
) -> HTMLResponse:
    zone = service.clinic_zone(session, principal.clinic_id)
    values = {
        "date": (date or _today(zone)).isoformat(),
        "time": time,
        "kind": kind,
        "practitioner_id": str(practitioner_id or ""),
        "room_id": str(room_id or ""),
        "patient_id": str(patient_id or ""),
        "course_id": str(course_id or ""),
    }
    return ui.render(
        request,
        "scheduling/book.html",
        principal=principal,
        values=values,
        errors={},
        **_booking_context(session, principal, values),
    )


@router.post("/calendar/book", response_class=HTMLResponse)
def book(
    request: Request, session: WriteSession, principal: Booker, posted_form: PostedForm
) -> Response:
    values = _form(posted_form)
    ui.check_csrf(principal, values.pop("csrf_token", None))
    zone = service.clinic_zone(session, principal.clinic_id)
    errors: dict[str, str] = {}
    try:
        starts_at = _local_moment(values.get("date", ""), values.get("time", ""), zone)
    except ValueError:
        errors["time"] = "enter a date and a time, e.g. 09:30"
    if not errors:
        try:
            data = AppointmentIn.model_validate(
                {
                    "patient_id": values.get("patient_id") or None,
                    "practitioner_id": values.get("practitioner_id") or None,
                    "room_id": values.get("room_id") or None,
                    "kind": values.get("kind"),
                    "course_id": values.get("course_id") or None,
                    "starts_at": starts_at,
                }
            )
            appointment = service.book_appointment(session=session, principal=principal, data=data)
            return ui.redirect(f"/calendar/appointments/{appointment.id}?booked=1")
        except ValidationError as exc:
            errors = _validation_errors(exc)
        except AppError as exc:
            if exc.http_status == 404 and not exc.errors:
                errors = {"patient_id": exc.detail}
            else:
                errors = _errors_from(exc)
    return ui.render(
        request,
        "scheduling/book.html",
        principal=principal,
        values=values,
        errors=errors,
        status_code=409 if any("already" in e for e in errors.values()) else 422,
        **_booking_context(session, principal, values),
    )


# --- one appointment ----------------------------------------------------------------------


def _appointment_page(
    request: Request,
    session: Session,
    principal: Principal,
    appointment: Appointment,
    *,
    errors: dict[str, dict[str, str]] | None = None,
    values: dict[str, dict[str, str]] | None = None,
    notice: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    zone = service.clinic_zone(session, appointment.clinic_id)
    practitioner_names, room_names = _names(session, appointment.clinic_id)
    patient = session.get_one(Patient, appointment.patient_id)
    local_start = appointment.starts_at.astimezone(zone)
    defaults = {
        "date": local_start.date().isoformat(),
        "time": local_start.strftime("%H:%M"),
        "practitioner_id": str(appointment.practitioner_id),
        "room_id": str(appointment.room_id or ""),
    }
    course = session.get(TreatmentCourse, appointment.course_id) if appointment.course_id else None
    return ui.render(
        request,
        "scheduling/appointment.html",
        principal=principal,
        appointment=appointment,
        patient=patient,
        course=course,
        practitioner_names=practitioner_names,
        room_names=room_names,
        practitioner_options=[
            (str(p.id), p.display_name)
            for p in service.active_practitioners(session=session, clinic_id=appointment.clinic_id)
        ],
        room_options=[
            (str(r.id), r.name)
            for r in service.active_rooms(session=session, clinic_id=appointment.clinic_id)
        ],
        errors=errors or {},
        values={"reschedule": defaults, **(values or {})},
        cancel_reasons=CANCEL_REASONS,
        clinical=principal.role in CLINICAL,
        notice=notice,
        started=appointment.starts_at <= dt.datetime.now(dt.UTC),
        status_code=status_code,
    )


@router.get("/calendar/appointments/{appointment_id}", response_class=HTMLResponse)
def appointment_page(
    request: Request,
    session: DbSession,
    principal: Staff,
    appointment_id: IdPath,
    booked: Annotated[int, Query(ge=0, le=1)] = 0,
    done: Annotated[str, Query(max_length=20)] = "",
) -> HTMLResponse:
    appointment = service.access_appointment_by_id(
        session=session, principal=principal, appointment_id=appointment_id
    )
    notices = {
        "moved": "The appointment was moved.",
        "cancelled": "The appointment was cancelled.",
        "noshow": "Marked as a no-show.",
        "arrived": "Marked as arrived.",
        "fulfilled": "Marked as done.",
    }
    notice = "The appointment is booked." if booked else notices.get(done, "")
    return _appointment_page(request, session, principal, appointment, notice=notice)


_ACTIONS = {
    "cancel": service.cancel_appointment,
    "no-show": service.mark_no_show,
    "arrive": service.mark_arrived,
    "fulfil": service.mark_fulfilled,
}
_DONE = {"cancel": "cancelled", "no-show": "noshow", "arrive": "arrived", "fulfil": "fulfilled"}


@router.post("/calendar/appointments/{appointment_id}/{action}", response_class=HTMLResponse)
def appointment_action(
    request: Request,
    session: WriteSession,
    principal: Booker,
    appointment_id: IdPath,
    action: str,
    posted_form: PostedForm,
) -> Response:
    """Reschedule, cancel, mark arrived, no-show or done, from the appointment page."""
    if action not in (*_ACTIONS, "reschedule"):
        raise NotFound("no such action")
    values = _form(posted_form)
    ui.check_csrf(principal, values.pop("csrf_token", None))
    appointment = service.access_appointment_by_id(
        session=session, principal=principal, appointment_id=appointment_id
    )
    zone = service.clinic_zone(session, appointment.clinic_id)
    try:
        if action == "reschedule":
            try:
                starts_at = _local_moment(values.get("date", ""), values.get("time", ""), zone)
            except ValueError:
                raise_form = {"time": "enter a date and a time, e.g. 09:30"}
                return _appointment_page(
                    request,
                    session,
                    principal,
                    appointment,
                    errors={"reschedule": raise_form},
                    values={"reschedule": values},
                    status_code=422,
                )
            data = RescheduleIn.model_validate(
                {
                    "starts_at": starts_at,
                    "practitioner_id": values.get("practitioner_id") or None,
                    "room_id": values.get("room_id") or None,
                }
            )
            service.reschedule_appointment(
                session=session, principal=principal, appointment_id=appointment_id, data=data
            )
            return ui.redirect(f"/calendar/appointments/{appointment_id}?done=moved")
        if action == "cancel":
            reason = values.get("reason", "patient_request")
            if reason not in {r for r, _ in CANCEL_REASONS}:
                reason = "other"
            service.cancel_appointment(
                session=session, principal=principal, appointment_id=appointment_id, reason=reason
            )
        else:
            _ACTIONS[action](session=session, principal=principal, appointment_id=appointment_id)
    except ValidationError as exc:
        return _appointment_page(
            request,
            session,
            principal,
            appointment,
            errors={action: _validation_errors(exc)},
            values={action: values},
            status_code=422,
        )
    except AppError as exc:
        if exc.http_status == 404:
            raise
        session.refresh(appointment)
        return _appointment_page(
            request,
            session,
            principal,
            appointment,
            errors={action: _errors_from(exc)},
            values={action: values},
            status_code=exc.http_status,
        )
    return ui.redirect(f"/calendar/appointments/{appointment_id}?done={_DONE[action]}")


# --- the patient's own appointments -------------------------------------------------------


@router.get("/my/appointments", response_class=HTMLResponse)
def my_appointments(
    request: Request,
    session: DbSession,
    principal: Patient_,
    done: Annotated[str, Query(max_length=20)] = "",
) -> HTMLResponse:
    """The patient's upcoming and past appointments, in the clinic's time."""
    now = dt.datetime.now(dt.UTC)
    entries = service.list_appointments(
        session=session,
        principal=principal,
        start=now - dt.timedelta(days=730),
        end=now + dt.timedelta(days=730),
    )
    practitioner_names, room_names = _names(session, principal.clinic_id)
    upcoming = [
        e
        for e in entries
        if e.appointment.ends_at > now and e.appointment.status in ACTIVE_STATUSES
    ]
    past = [e for e in entries if e not in upcoming][::-1]
    return ui.render(
        request,
        "scheduling/my_appointments.html",
        principal=principal,
        upcoming=upcoming,
        past=past[:50],
        practitioner_names=practitioner_names,
        room_names=room_names,
        now=now,
        notice={
            "cancelled": "Your appointment was cancelled.",
            "too-late": "This appointment has already started: please call the clinic.",
        }.get(done, ""),
    )


@router.post("/my/appointments/{appointment_id}/cancel", response_class=HTMLResponse)
def cancel_my_appointment(
    request: Request,
    session: WriteSession,
    principal: PatientWriter,
    appointment_id: IdPath,
    posted_form: PostedForm,
) -> Response:
    values = _form(posted_form)
    ui.check_csrf(principal, values.get("csrf_token"))
    try:
        service.cancel_appointment(
            session=session, principal=principal, appointment_id=appointment_id
        )
    except AppError as exc:
        if exc.http_status == 404:
            raise
        return ui.redirect("/my/appointments?done=too-late")
    return ui.redirect("/my/appointments?done=cancelled")
