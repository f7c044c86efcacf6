"""Pages of treatment courses for clinicians: the list, planning a course from a
condition's protocol, and one course with its plan, consent, sessions and scheduling."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from prolo import ui
from prolo.clinic.models import Practitioner
from prolo.courses import service
from prolo.courses.consent import CONSENT_TEXTS, CURRENT_VERSION
from prolo.courses.models import STOP_REASONS, TreatmentCourse
from prolo.courses.schemas import ConsentIn, CourseIn, CourseStatusIn, CourseUpdate
from prolo.errors import AppError
from prolo.knowledge.loader import load_conditions
from prolo.patients.models import Diagnosis, Patient
from prolo.scheduling import service as scheduling
from prolo.scheduling.schemas import ScheduleCourseIn
from prolo.scheduling.slots import WEEKDAY_NAMES, local_to_utc
from prolo.security.principal import Principal
from prolo.ui import PostedForm
from prolo.web import DbSession, policy

router = APIRouter(include_in_schema=False)

_clinical = policy("admin", "clinician")
Clinical = Annotated[Principal, _clinical]
IdPath = Annotated[int, Path(ge=1, le=2_147_483_647)]
STOP_LABELS = {
    "goal_reached": "Goal reached",
    "no_response": "No response",
    "adverse_event": "Adverse event",
    "patient_choice": "Patient's choice",
    "surgery": "Surgery",
}
PROTOCOL_LABELS = {
    "published": "From a published protocol",
    "incomplete": "Published protocol, completed by the clinician",
    "not_published": "No published protocol: figures entered by the clinician",
}
COURSE_STATUS_LABELS = {
    "planned": "Planned",
    "active": "Active",
    "completed": "Completed",
    "stopped": "Stopped",
}


def _write_transaction(session: DbSession) -> Session:
    scheduling.take_write_lock(session)
    return session


WriteSession = Annotated[Session, Depends(_write_transaction)]


def _scheduler(session: WriteSession, principal: Clinical) -> Principal:
    return principal  # the write lock is taken before the principal is read


Scheduler = Annotated[Principal, Depends(_scheduler)]


def _form(form: FormData) -> tuple[dict[str, str], list[str], list[str]]:
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    acknowledged = [v for v in form.getlist("acknowledged") if isinstance(v, str)]
    weekdays = [v for v in form.getlist("weekdays") if isinstance(v, str)]
    return values, acknowledged, weekdays


def _errors(exc: AppError | ValidationError) -> dict[str, str]:
    if isinstance(exc, ValidationError):
        return ui.field_errors(exc)
    found: dict[str, str] = {}
    for error in exc.errors or []:
        found.setdefault(error.get("field") or "form", error.get("message") or exc.detail)
    return found or {"form": exc.detail}


@router.get("/courses", response_class=HTMLResponse)
def course_list(
    request: Request,
    session: DbSession,
    principal: Clinical,
    status: Literal["planned", "active", "completed", "stopped"] | None = None,
    patient_id: Annotated[int | None, Query(ge=1, le=2_147_483_647)] = None,
) -> HTMLResponse:
    rows, total = service.list_courses(
        session=session, principal=principal, status=status, patient_id=patient_id, limit=200
    )
    patients = {
        p.id: p
        for p in session.scalars(
            select(Patient).where(Patient.id.in_({r.patient_id for r in rows}))
        )
    }
    conditions = load_conditions()
    return ui.render(
        request,
        "courses/list.html",
        principal=principal,
        courses=rows,
        total=total,
        patients=patients,
        condition_names={k: c.clinical_name for k, c in conditions.items()},
        status=status or "",
        status_labels_course=COURSE_STATUS_LABELS,
    )


def _new_context(session: Session, principal: Principal, values: dict[str, str]) -> dict[str, Any]:
    conditions = sorted(load_conditions().values(), key=lambda c: c.clinical_name)
    published = {True: "published protocol", False: "no published protocol"}
    condition_options = [("", "Choose a condition…")] + [
        (c.id, f"{c.clinical_name} ({published[c.protocol.status == 'published']})")
        for c in conditions
    ]
    patient_options = [("", "Choose a patient…")] + [
        (str(p.id), f"{p.display_name} ({p.mrn})")
        for p in session.scalars(
            select(Patient)
            .where(Patient.clinic_id == principal.clinic_id)
            .order_by(Patient.family_name, Patient.given_name)
            .limit(1000)
        )
    ]
    practitioner_options = [("", "Any practitioner")] + [
        (str(p.id), p.display_name)
        for p in scheduling.active_practitioners(session=session, clinic_id=principal.clinic_id)
    ]
    diagnosis_options: list[tuple[str, str]] = []
    patient_id = values.get("patient_id", "")
    if patient_id.isdigit():
        diagnosis_options = [("", "None")] + [
            (str(d.id), f"{d.code} {d.display}")
            for d in session.scalars(
                select(Diagnosis)
                .join(Patient)
                .where(
                    Diagnosis.patient_id == int(patient_id),
                    Patient.clinic_id == principal.clinic_id,
                )
            )
        ]
    protocol = None
    condition_id = values.get("condition_id", "")
    if condition_id:
        try:
            protocol = service.protocol_plan(condition_id)
        except AppError:
            protocol = None
    return {
        "condition_options": condition_options,
        "patient_options": patient_options,
        "practitioner_options": practitioner_options,
        "diagnosis_options": diagnosis_options,
        "protocol": protocol,
    }


@router.get("/courses/new", response_class=HTMLResponse)
def new_course_form(
    request: Request,
    session: DbSession,
    principal: Clinical,
    patient_id: Annotated[int | None, Query(ge=1, le=2_147_483_647)] = None,
    condition_id: Annotated[str, Query(max_length=60)] = "",
) -> HTMLResponse:
    values = {"patient_id": str(patient_id or ""), "condition_id": condition_id}
    context = _new_context(session, principal, values)
    protocol = context["protocol"]
    if protocol:
        for name in service.PLAN_FIELDS:
            if protocol[name] is not None:
                values[name] = str(protocol[name])
    return ui.render(
        request, "courses/new.html", principal=principal, values=values, errors={}, **context
    )


@router.post("/courses/new", response_class=HTMLResponse)
def plan_course(
    request: Request, session: DbSession, principal: Clinical, posted_form: PostedForm
) -> Response:
    values, _, _ = _form(posted_form)
    ui.check_csrf(principal, values.pop("csrf_token", None))
    try:
        data = CourseIn.model_validate({k: v for k, v in values.items() if v != ""})
        course = service.plan_course(session=session, principal=principal, data=data)
    except (ValidationError, AppError) as exc:
        if isinstance(exc, AppError) and exc.http_status == 404:
            errors = {"patient_id": exc.detail}
        else:
            errors = _errors(exc)
        return ui.render(
            request,
            "courses/new.html",
            principal=principal,
            values=values,
            errors=errors,
            status_code=422,
            **_new_context(session, principal, values),
        )
    return ui.redirect(f"/courses/{course.id}")


def _refused(
    request: Request,
    session: Session,
    principal: Principal,
    course: TreatmentCourse,
    exc: ValidationError | AppError,
    *,
    section: str,
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
) -> HTMLResponse:
    """The course page again, with a refused form's errors in its ``section``.

    A 404 (the course is not the caller's) is raised, never rendered; the course is
    re-read, since the refused change may have touched it before failing.
    """
    if isinstance(exc, AppError) and exc.http_status == 404:
        raise exc
    session.refresh(course)
    return _course_page(
        request,
        session,
        principal,
        course,
        errors={section: errors if errors is not None else _errors(exc)},
        values={section: values} if values is not None else None,
        status_code=422 if isinstance(exc, ValidationError) else exc.http_status,
    )


def _course_page(
    request: Request,
    session: Session,
    principal: Principal,
    course: TreatmentCourse,
    *,
    errors: dict[str, dict[str, str]] | None = None,
    values: dict[str, dict[str, Any]] | None = None,
    notice: str = "",
    preview: scheduling.ScheduleResult | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    patient = session.get_one(Patient, course.patient_id)
    conditions = load_conditions()
    condition = conditions.get(course.condition_id)
    practitioner_names = {
        p.id: p.display_name
        for p in session.scalars(
            select(Practitioner).where(Practitioner.clinic_id == course.clinic_id)
        )
    }
    room_names = {
        r.id: r.name for r in scheduling.active_rooms(session=session, clinic_id=course.clinic_id)
    }
    sessions = scheduling.course_sessions(session=session, course=course)
    procedures = service.procedures_by_appointment(session=session, course=course)
    consent = service.consent_on_file(session=session, course=course)
    preferences = course.preferences or {}
    times = preferences.get("times") or []
    plan_values = {
        "planned_sessions": str(course.planned_sessions),
        "interval_weeks_min": str(course.interval_weeks_min),
        "interval_weeks_max": str(course.interval_weeks_max),
        "injectate": course.injectate,
        "practitioner_id": str(course.practitioner_id or ""),
    }
    schedule_values = {
        "weekdays": [str(d) for d in preferences.get("weekdays") or []],
        "starts": times[0][0] if times else "",
        "ends": times[0][1] if times else "",
        "earliest_day": "",
    }
    all_values: dict[str, dict[str, Any]] = {"plan": plan_values, "schedule": schedule_values}
    all_values.update(values or {})
    return ui.render(
        request,
        "courses/course.html",
        principal=principal,
        course=course,
        patient=patient,
        condition=condition,
        sessions=sessions,
        procedures=procedures,
        consent=consent,
        consent_text=CONSENT_TEXTS[consent.text_version if consent else CURRENT_VERSION],
        practitioner_names=practitioner_names,
        room_names=room_names,
        practitioner_options=[("", "Any practitioner")]
        + [
            (str(p.id), p.display_name)
            for p in scheduling.active_practitioners(session=session, clinic_id=course.clinic_id)
        ],
        transitions=service.TRANSITIONS[course.status],
        stop_options=[(r, STOP_LABELS[r]) for r in STOP_REASONS],
        stop_labels=STOP_LABELS,
        protocol_labels=PROTOCOL_LABELS,
        status_labels_course=COURSE_STATUS_LABELS,
        weekday_names=WEEKDAY_NAMES,
        errors=errors or {},
        values=all_values,
        notice=notice,
        preview=preview,
        status_code=status_code,
    )


@router.get("/courses/{course_id}", response_class=HTMLResponse)
def course_page(
    request: Request,
    session: DbSession,
    principal: Clinical,
    course_id: IdPath,
    done: Annotated[str, Query(max_length=30)] = "",
) -> HTMLResponse:
    course = service.access_course_by_id(session=session, principal=principal, course_id=course_id)
    notices = {
        "edited": "The plan was saved.",
        "consent": "The consent was recorded.",
        "withdrawn": "The consent was marked withdrawn.",
        "status": f"The course is now {course.status}.",
    }
    if done.startswith("scheduled-"):
        parts = done.split("-")
        notice = f"{parts[1]} session(s) booked" + (
            f"; {parts[2]} could not be placed" if len(parts) > 2 and parts[2] != "0" else ""
        )
    else:
        notice = notices.get(done, "")
    return _course_page(request, session, principal, course, notice=notice)


@router.post("/courses/{course_id}/edit", response_class=HTMLResponse)
def edit_course(
    request: Request,
    session: DbSession,
    principal: Clinical,
    course_id: IdPath,
    posted_form: PostedForm,
) -> Response:
    values, _, _ = _form(posted_form)
    ui.check_csrf(principal, values.pop("csrf_token", None))
    course = service.access_course_by_id(session=session, principal=principal, course_id=course_id)
    try:
        data = CourseUpdate.model_validate({k: v for k, v in values.items() if v != ""})
        service.update_course(session=session, principal=principal, course_id=course_id, data=data)
    except (ValidationError, AppError) as exc:
        return _refused(request, session, principal, course, exc, section="plan", values=values)
    return ui.redirect(f"/courses/{course_id}?done=edited")


@router.post("/courses/{course_id}/status", response_class=HTMLResponse)
def change_status(
    request: Request,
    session: WriteSession,
    principal: Scheduler,
    course_id: IdPath,
    posted_form: PostedForm,
) -> Response:
    values, _, _ = _form(posted_form)
    ui.check_csrf(principal, values.pop("csrf_token", None))
    course = service.access_course_by_id(session=session, principal=principal, course_id=course_id)
    try:
        data = CourseStatusIn.model_validate(
            {"status": values.get("status"), "stop_reason": values.get("stop_reason") or None}
        )
        service.change_course_status(
            session=session, principal=principal, course_id=course_id, data=data
        )
    except (ValidationError, AppError) as exc:
        return _refused(request, session, principal, course, exc, section="status")
    return ui.redirect(f"/courses/{course_id}?done=status")


@router.post("/courses/{course_id}/consent", response_class=HTMLResponse)
def record_consent(
    request: Request,
    session: DbSession,
    principal: Clinical,
    course_id: IdPath,
    posted_form: PostedForm,
) -> Response:
    values, acknowledged, _ = _form(posted_form)
    ui.check_csrf(principal, values.pop("csrf_token", None))
    course = service.access_course_by_id(session=session, principal=principal, course_id=course_id)
    try:
        signed_at = None
        if values.get("signed_date") or values.get("signed_time"):
            zone = scheduling.clinic_zone(session, course.clinic_id)
            try:
                signed_at = local_to_utc(
                    dt.date.fromisoformat(values.get("signed_date", "")),
                    dt.time.fromisoformat(values.get("signed_time", "")),
                    zone,
                )
            except ValueError:
                raise AppError(
                    "enter the date and time of signing, or leave both empty for now",
                    field="signed_time",
                ) from None
        data = ConsentIn.model_validate(
            {
                "text_version": values.get("text_version", CURRENT_VERSION),
                "acknowledged": acknowledged,
                "signed_at": signed_at,
            }
        )
        service.record_consent(session=session, principal=principal, course_id=course_id, data=data)
    except (ValidationError, AppError) as exc:
        if isinstance(exc, AppError) and exc.http_status == 404:
            raise
        errors = _errors(exc)
        if isinstance(exc, AppError) and exc.extra.get("missing"):
            errors["acknowledged"] = "Every statement marked required must be acknowledged."
        if "signed_at" in errors:
            errors["signed_time"] = errors.pop("signed_at")
        return _course_page(
            request,
            session,
            principal,
            course,
            errors={"consent": errors},
            values={"consent": {**values, "acknowledged": acknowledged}},
            status_code=422,
        )
    return ui.redirect(f"/courses/{course_id}?done=consent#consent")


@router.post("/courses/{course_id}/consent/withdraw", response_class=HTMLResponse)
def withdraw_consent(
    request: Request,
    session: DbSession,
    principal: Clinical,
    course_id: IdPath,
    posted_form: PostedForm,
) -> Response:
    values, _, _ = _form(posted_form)
    ui.check_csrf(principal, values.get("csrf_token"))
    service.withdraw_consent(session=session, principal=principal, course_id=course_id)
    return ui.redirect(f"/courses/{course_id}?done=withdrawn#consent")


@router.post("/courses/{course_id}/schedule", response_class=HTMLResponse)
def schedule_course(
    request: Request,
    session: WriteSession,
    principal: Scheduler,
    course_id: IdPath,
    posted_form: PostedForm,
) -> Response:
    """Plan (preview) or book the course's remaining sessions from the course page."""
    values, _, weekdays = _form(posted_form)
    ui.check_csrf(principal, values.pop("csrf_token", None))
    course = service.access_course_by_id(session=session, principal=principal, course_id=course_id)
    dry_run = values.get("action") != "book"
    times = []
    if values.get("starts") or values.get("ends"):
        times = [{"starts": values.get("starts") or "", "ends": values.get("ends") or ""}]
    try:
        data = ScheduleCourseIn.model_validate(
            {
                "preferences": {"weekdays": weekdays, "times": times},
                "earliest_day": values.get("earliest_day") or None,
                "dry_run": dry_run,
            }
        )
        result = scheduling.schedule_course(
            session=session, principal=principal, course_id=course_id, data=data
        )
    except (ValidationError, AppError) as exc:
        errors = _errors(exc)
        if any(k.startswith("preferences") for k in errors) or "times" in errors:
            errors["starts"] = next(iter(errors.values()))
        return _refused(
            request,
            session,
            principal,
            course,
            exc,
            section="schedule",
            errors=errors,
            values={**values, "weekdays": weekdays},
        )
    if dry_run:
        return _course_page(
            request,
            session,
            principal,
            course,
            preview=result,
            values={"schedule": {**values, "weekdays": weekdays}},
        )
    return ui.redirect(
        f"/courses/{course_id}?done=scheduled-{len(result.placed)}-{len(result.unplaced)}#sessions"
    )
