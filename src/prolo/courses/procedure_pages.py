"""Clinician pages for procedure records: document a session, sign it, amend it.

The form is one page without script: site rows are fixed slots (empty rows are ignored),
checkboxes are the pre-procedure re-check, and every error is shown next to its field.
Times are entered in the clinic's zone and stored in UTC.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlalchemy import or_, select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from prolo import ui
from prolo.clinic.models import Practitioner
from prolo.courses import procedures
from prolo.courses.models import Procedure, TreatmentCourse
from prolo.courses.procedure_schemas import (
    ADVERSE_LABELS,
    AmendmentIn,
    ProcedureIn,
    ProcedureUpdate,
)
from prolo.db import utcnow
from prolo.errors import AppError, NotFound
from prolo.knowledge.safety import load_safety_rules
from prolo.patients import service as patients
from prolo.patients.models import Patient
from prolo.scheduling.models import Appointment
from prolo.security.principal import Principal
from prolo.ui import PostedForm
from prolo.web import DbSession, RowId, policy

router = APIRouter(include_in_schema=False)
Keeper = Annotated[Principal, policy("admin", "clinician")]

SITE_ROWS = 6
HISTORY_LABELS = {
    "infection_at_site": "Infection, broken or infected skin at or near the site",
    "systemic_infection": "An infection elsewhere, or fever, today",
    "bleeding_disorder": "Bleeding disorder",
    "fracture_at_site": "Recent fracture at the site",
    "prosthetic_joint_at_site": "Replaced (prosthetic) joint at the site",
    "immunosuppressed": "Immune-suppressing medicine or illness",
    "malignancy_at_site": "Cancer at the site",
    "diabetes": "Diabetes",
}
OTHER_CHECKS = {
    "anticoagulant": "Takes an anticoagulant (e.g. warfarin, heparin, apixaban)",
    "antiplatelet": "Takes an antiplatelet medicine (e.g. clopidogrel, aspirin)",
    "allergy_local_anaesthetic": "Allergy to a local anaesthetic",
    "allergy_dextrose": "Allergy to dextrose",
}
AFTERCARE_FIELDS = ("normal_activity", "expected_inflammation", "pain_advice", "when_to_call")
SIDES = (("left", "Left"), ("right", "Right"), ("midline", "Midline"), ("bilateral", "Both sides"))
GUIDANCE = (("landmark", "Landmark (palpation)"), ("ultrasound", "Ultrasound"))
DECISION_LABELS = {
    "candidate": "No reason against injecting",
    "candidate_with_precautions": "Inject with precautions",
    "not_candidate": "Do not inject",
    "refer": "Refer for medical assessment first",
}


def _form(form: FormData) -> dict[str, str]:
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _errors(exc: ValidationError) -> dict[str, str]:
    """Pydantic errors keyed by the form's dotted field names (first message each)."""
    found: dict[str, str] = {}
    for err in exc.errors():
        message = err["msg"].removeprefix("Value error, ")
        loc = ".".join(str(p) for p in err["loc"]) or "form"
        if loc == "form" and "total volume" in message:
            loc = "injectate.total_volume_ml"  # the record-level check is about this field
        found.setdefault(loc, message)
    return found


def _number(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def _local_input(value: dt.datetime, zone: dt.tzinfo) -> str:
    return value.astimezone(zone).strftime("%Y-%m-%dT%H:%M")


def body_from_form(values: dict[str, str], *, zone: dt.tzinfo) -> dict[str, Any]:
    """The flat form as the nested record body (checkboxes: present means yes)."""

    def flag(name: str) -> bool:
        return name in values

    performed: Any = values.get("performed_at", "")
    try:
        performed = dt.datetime.fromisoformat(performed).replace(tzinfo=zone)
    except ValueError:
        pass  # the schema names the field
    sites = []
    for i in range(SITE_ROWS):
        site_id = values.get(f"sites.{i}.site_id", "").strip()
        if site_id:
            sites.append(
                {
                    "site_id": site_id,
                    "side": values.get(f"sites.{i}.side", ""),
                    "volume_ml": _number(values.get(f"sites.{i}.volume_ml")),
                }
            )
    adverse = []
    for kind in ADVERSE_LABELS:
        if flag(f"adverse.{kind}"):
            adverse.append(
                {
                    "kind": kind,
                    "severity": values.get(f"adverse.{kind}.severity", "mild"),
                    "description": values.get(f"adverse.{kind}.description", "").strip() or None,
                }
            )
    pregnant = values.get("checks.pregnant", "")
    body: dict[str, Any] = {
        "performed_at": performed,
        "appointment_id": _number(values.get("appointment_id")),
        "course_id": _number(values.get("course_id")),
        "body_region": values.get("body_region", ""),
        "injectate": {
            "solution": values.get("injectate.solution", ""),
            "concentration_percent": _number(values.get("injectate.concentration_percent")),
            "anaesthetic": values.get("injectate.anaesthetic", "").strip() or None,
            "anaesthetic_concentration_percent": _number(
                values.get("injectate.anaesthetic_concentration_percent")
            ),
            "total_volume_ml": _number(values.get("injectate.total_volume_ml")),
        },
        "sites": sites,
        "guidance": values.get("guidance", ""),
        "needle": {
            "gauge": _number(values.get("needle.gauge")),
            "length_mm": _number(values.get("needle.length_mm")),
        },
        "checks": {
            "pain_duration_weeks": _number(values.get("checks.pain_duration_weeks")),
            "red_flags": {q: flag(f"checks.red_flags.{q}") for q in load_safety_rules().questions},
            "history": {k: flag(f"checks.history.{k}") for k in HISTORY_LABELS},
            **{k: flag(f"checks.{k}") for k in OTHER_CHECKS},
            "pregnant": {"yes": True, "no": False}.get(pregnant),
        },
        "adverse_events": adverse,
        "aftercare": {
            **{k: flag(f"aftercare.{k}") for k in AFTERCARE_FIELDS},
            "note": values.get("aftercare.note", "").strip() or None,
        },
        "note": values.get("note", "").strip() or None,
    }
    if "reason" in values:
        body["reason"] = values["reason"].strip()
    return body


def values_from_record(procedure: Procedure, *, zone: dt.tzinfo) -> dict[str, str]:
    """A stored record as flat form values (to edit a draft or start an amendment)."""
    d = procedure.details
    v: dict[str, str] = {
        "performed_at": _local_input(procedure.performed_at, zone),
        "appointment_id": str(procedure.appointment_id or ""),
        "course_id": str(procedure.course_id or ""),
        "body_region": procedure.body_region or "",
        "guidance": d["guidance"],
        "note": procedure.note or "",
    }
    for key, value in d["injectate"].items():
        v[f"injectate.{key}"] = (
            "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
        )
    for key, value in d["needle"].items():
        v[f"needle.{key}"] = f"{value:g}" if isinstance(value, float) else str(value)
    for i, site in enumerate(d["sites"]):
        v[f"sites.{i}.site_id"] = site["site_id"]
        v[f"sites.{i}.side"] = site["side"]
        v[f"sites.{i}.volume_ml"] = f"{site['volume_ml']:g}"
    checks = d["checks"]
    v["checks.pain_duration_weeks"] = f"{checks['pain_duration_weeks']:g}"
    for q, yes in checks["red_flags"].items():
        if yes:
            v[f"checks.red_flags.{q}"] = "on"
    for k, yes in checks["history"].items():
        if yes is True:
            v[f"checks.history.{k}"] = "on"
    for k in OTHER_CHECKS:
        if checks.get(k):
            v[f"checks.{k}"] = "on"
    v["checks.pregnant"] = {True: "yes", False: "no"}.get(checks.get("pregnant"), "")
    for event in d["adverse_events"]:
        v[f"adverse.{event['kind']}"] = "on"
        v[f"adverse.{event['kind']}.severity"] = event["severity"]
        v[f"adverse.{event['kind']}.description"] = event.get("description") or ""
    for k in AFTERCARE_FIELDS:
        if d["aftercare"].get(k):
            v[f"aftercare.{k}"] = "on"
    v["aftercare.note"] = d["aftercare"].get("note") or ""
    return v


def _defaults(
    session: Session, patient: Patient, appointment: Appointment | None, zone: dt.tzinfo
) -> dict[str, str]:
    """A new record's starting values: the session's time, its course, aftercare ticked."""
    when = appointment.starts_at if appointment is not None else dt.datetime.now(dt.UTC)
    values = {
        "performed_at": _local_input(when, zone),
        "appointment_id": str(appointment.id) if appointment is not None else "",
        "course_id": str(appointment.course_id or "") if appointment is not None else "",
        "guidance": "landmark",
    }
    if appointment is not None and appointment.course_id:
        course = session.get(TreatmentCourse, appointment.course_id)
        if course is not None:
            from prolo.knowledge import load_conditions

            condition = load_conditions().get(course.condition_id)
            if condition is not None:
                values["body_region"] = condition.body_region
    for k in AFTERCARE_FIELDS:
        values[f"aftercare.{k}"] = "on"
    return values


def _context(
    session: Session, principal: Principal, patient: Patient, zone: dt.tzinfo
) -> dict[str, Any]:
    catalog = procedures.load_injection_sites()
    rules = load_safety_rules()
    # Only visits a record may document (procedures.require_session_held): not cancelled
    # or missed, and not booked for later.
    visits = session.scalars(
        select(Appointment)
        .where(
            Appointment.patient_id == patient.id,
            Appointment.kind == "injection",
            Appointment.status.not_in(procedures.NOT_HELD_STATUSES),
            or_(Appointment.status != "booked", Appointment.starts_at <= utcnow()),
        )
        .order_by(Appointment.starts_at.desc())
        .limit(20)
    ).all()
    courses = session.scalars(
        select(TreatmentCourse)
        .where(TreatmentCourse.patient_id == patient.id)
        .order_by(TreatmentCourse.id.desc())
    ).all()
    practitioners = {
        p.id: p.display_name
        for p in session.scalars(
            select(Practitioner).where(Practitioner.clinic_id == patient.clinic_id)
        )
    }
    return {
        "patient": patient,
        "regions": [(key, region.label) for key, region in catalog.regions.items()]
        + [("multiple", "Several regions")],
        "site_groups": [(region.label, region.sites) for region in catalog.regions.values()],
        "site_rows": range(SITE_ROWS),
        "sides": list(SIDES),
        "guidance_options": list(GUIDANCE),
        "red_flags": [(r.question, r.question_text) for r in rules.red_flags],
        "history_labels": HISTORY_LABELS,
        "other_checks": OTHER_CHECKS,
        "adverse_labels": ADVERSE_LABELS,
        "aftercare": procedures.AFTERCARE,
        "visits": [
            (str(v.id), f"{ui._local(v.starts_at)} · {practitioners.get(v.practitioner_id, '')}")
            for v in visits
        ],
        "courses": [(str(c.id), f"Course {c.id} · {c.condition_id} · {c.status}") for c in courses],
        "female": patient.sex == "female",
        "zone_name": str(zone),
    }


def _render_form(
    request: Request,
    session: Session,
    principal: Principal,
    patient: Patient,
    *,
    values: dict[str, str],
    errors: dict[str, str],
    action: str,
    mode: str,
    procedure: Procedure | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    zone = request.app.state.settings.tz
    return ui.render(
        request,
        "courses/procedure_form.html",
        principal=principal,
        values=values,
        errors=errors,
        action=action,
        mode=mode,
        procedure=procedure,
        status_code=status_code,
        **_context(session, principal, patient, zone),
    )


def _submit(
    request: Request,
    session: Session,
    principal: Principal,
    patient: Patient,
    values: dict[str, str],
    *,
    mode: str,
    action: str,
    procedure: Procedure | None = None,
) -> Response:
    zone = request.app.state.settings.tz
    body = body_from_form(values, zone=zone)
    savepoint = session.begin_nested()  # a refused save leaves nothing behind
    try:
        if mode == "new":
            data: ProcedureIn = ProcedureIn.model_validate(body)
            saved = procedures.create_procedure(
                session=session, principal=principal, patient_id=patient.id, data=data
            )
        elif mode == "amend":
            assert procedure is not None  # noqa: S101
            data = AmendmentIn.model_validate(body)
            saved = procedures.amend_procedure(
                session=session, principal=principal, procedure_id=procedure.id, data=data
            )
        else:
            assert procedure is not None  # noqa: S101
            data = ProcedureUpdate.model_validate(body)
            saved = procedures.update_procedure(
                session=session, principal=principal, procedure_id=procedure.id, data=data
            )
    except ValidationError as exc:
        savepoint.rollback()
        return _render_form(
            request,
            session,
            principal,
            patient,
            values=values,
            errors=_errors(exc),
            action=action,
            mode=mode,
            procedure=procedure,
            status_code=422,
        )
    except AppError as exc:
        savepoint.rollback()
        if exc.http_status == 404:
            raise
        return _render_form(
            request,
            session,
            principal,
            patient,
            values=values,
            errors={exc.field or "form": exc.detail},
            action=action,
            mode=mode,
            procedure=procedure,
            status_code=exc.http_status,
        )
    savepoint.commit()
    return ui.redirect(f"/procedures/{saved.id}")


@router.get("/patients/{patient_id}/procedures", response_class=HTMLResponse)
def patient_procedures(
    request: Request, session: DbSession, principal: Keeper, patient_id: RowId
) -> HTMLResponse:
    rows = procedures.list_procedures(session=session, principal=principal, patient_id=patient_id)
    patient = session.get_one(Patient, patient_id)
    amended = {p.amends_id for p in rows if p.amends_id is not None}
    return ui.render(
        request,
        "courses/procedure_list.html",
        principal=principal,
        patient=patient,
        procedures=rows,
        amended=amended,
        decision_labels=DECISION_LABELS,
    )


@router.get("/procedures/new", response_class=HTMLResponse)
def new_procedure_form(
    request: Request,
    session: DbSession,
    principal: Keeper,
    patient_id: Annotated[int, Query(ge=1, le=2_147_483_647)],
    appointment_id: Annotated[int | None, Query(ge=1, le=2_147_483_647)] = None,
) -> HTMLResponse:
    procedures._require_keeper(principal)
    patient = patients.access_patient_by_id(
        session=session, principal=principal, patient_id=patient_id
    )
    appointment = session.get(Appointment, appointment_id) if appointment_id else None
    if appointment is not None and appointment.patient_id != patient.id:
        appointment = None
    values = _defaults(session, patient, appointment, request.app.state.settings.tz)
    return _render_form(
        request,
        session,
        principal,
        patient,
        values=values,
        errors={},
        action=f"/procedures/new?patient_id={patient.id}",
        mode="new",
    )


@router.post("/procedures/new", response_class=HTMLResponse)
def create_procedure(
    request: Request,
    session: DbSession,
    principal: Keeper,
    patient_id: Annotated[int, Query(ge=1, le=2_147_483_647)],
    posted_form: PostedForm,
) -> Response:
    values = _form(posted_form)
    ui.check_csrf(principal, values.pop("csrf_token", None))
    procedures._require_keeper(principal)
    patient = patients.access_patient_by_id(
        session=session, principal=principal, patient_id=patient_id
    )
    return _submit(
        request,
        session,
        principal,
        patient,
        values,
        mode="new",
        action=f"/procedures/new?patient_id={patient.id}",
    )


def _view(
    request: Request,
    session: Session,
    principal: Principal,
    procedure: Procedure,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    patient = session.get_one(Patient, procedure.patient_id)
    practitioner = session.get(Practitioner, procedure.practitioner_id)
    catalog = procedures.load_injection_sites()
    labels = {s.id: s.label for r in catalog.regions.values() for s in r.sites}
    original = session.get(Procedure, procedure.amends_id) if procedure.amends_id else None
    return ui.render(
        request,
        "courses/procedure_view.html",
        principal=principal,
        procedure=procedure,
        d=procedure.details,
        patient=patient,
        practitioner=practitioner,
        site_labels=labels,
        region_label=(
            catalog.regions[procedure.body_region].label  # type: ignore[index]
            if procedure.body_region in catalog.regions
            else "Several regions"
        ),
        amendment=procedures.amendment_of(session=session, procedure=procedure),
        original=original,
        can_sign=procedure.status == "draft"
        and principal.practitioner_id == procedure.practitioner_id,
        decision_labels=DECISION_LABELS,
        adverse_labels=ADVERSE_LABELS,
        aftercare={a.id: a for a in procedures.AFTERCARE},
        error=error,
        status_code=status_code,
    )


@router.get("/procedures/{procedure_id}", response_class=HTMLResponse)
def view_procedure(
    request: Request, session: DbSession, principal: Keeper, procedure_id: RowId
) -> HTMLResponse:
    procedure = procedures.access_procedure_by_id(
        session=session, principal=principal, procedure_id=procedure_id
    )
    return _view(request, session, principal, procedure)


def _signed_refusal(
    request: Request, session: Session, principal: Principal, procedure: Procedure
) -> HTMLResponse:
    return _view(
        request,
        session,
        principal,
        procedure,
        error=(
            f"Procedure record {procedure.id} is signed and cannot be changed. "
            "Record an amendment instead; the signed record is kept as it is."
        ),
        status_code=409,
    )


def _stored_form(
    request: Request,
    session: Session,
    principal: Principal,
    procedure: Procedure,
    *,
    mode: str,
    reason: str | None,
) -> HTMLResponse:
    """The form filled from a stored record, to edit a draft or amend a signed one."""
    patient = session.get_one(Patient, procedure.patient_id)
    values = values_from_record(procedure, zone=request.app.state.settings.tz)
    if reason is not None:
        values["reason"] = reason
    return _render_form(
        request,
        session,
        principal,
        patient,
        values=values,
        errors={},
        action=f"/procedures/{procedure.id}/{mode}",
        mode=mode,
        procedure=procedure,
    )


@router.get("/procedures/{procedure_id}/edit", response_class=HTMLResponse)
def edit_procedure_form(
    request: Request, session: DbSession, principal: Keeper, procedure_id: RowId
) -> HTMLResponse:
    procedure = procedures.access_procedure_by_id(
        session=session, principal=principal, procedure_id=procedure_id
    )
    if procedure.status == "signed":
        return _signed_refusal(request, session, principal, procedure)
    return _stored_form(
        request,
        session,
        principal,
        procedure,
        mode="edit",
        reason=procedure.amendment_reason or None,
    )


@router.post("/procedures/{procedure_id}/edit", response_class=HTMLResponse)
def edit_procedure(
    request: Request,
    session: DbSession,
    principal: Keeper,
    procedure_id: RowId,
    posted_form: PostedForm,
) -> Response:
    values = _form(posted_form)
    ui.check_csrf(principal, values.pop("csrf_token", None))
    procedure = procedures.access_procedure_by_id(
        session=session, principal=principal, procedure_id=procedure_id
    )
    if procedure.status == "signed":
        return _signed_refusal(request, session, principal, procedure)
    patient = session.get_one(Patient, procedure.patient_id)
    return _submit(
        request,
        session,
        principal,
        patient,
        values,
        mode="edit",
        action=f"/procedures/{procedure.id}/edit",
        procedure=procedure,
    )


@router.post("/procedures/{procedure_id}/sign", response_class=HTMLResponse)
def sign_procedure(
    request: Request,
    session: DbSession,
    principal: Keeper,
    procedure_id: RowId,
    posted_form: PostedForm,
) -> Response:
    values = _form(posted_form)
    ui.check_csrf(principal, values.get("csrf_token"))
    savepoint = session.begin_nested()  # a refused signature leaves nothing behind
    try:
        procedures.sign_procedure(session=session, principal=principal, procedure_id=procedure_id)
    except AppError as exc:
        savepoint.rollback()
        if exc.http_status == 404:
            raise
        procedure = procedures.access_procedure_by_id(
            session=session, principal=principal, procedure_id=procedure_id
        )
        return _view(
            request, session, principal, procedure, error=exc.detail, status_code=exc.http_status
        )
    savepoint.commit()
    return ui.redirect(f"/procedures/{procedure_id}")


@router.get("/procedures/{procedure_id}/amend", response_class=HTMLResponse)
def amend_procedure_form(
    request: Request, session: DbSession, principal: Keeper, procedure_id: RowId
) -> Response:
    procedure = procedures.access_procedure_by_id(
        session=session, principal=principal, procedure_id=procedure_id
    )
    if procedure.status != "signed":
        return ui.redirect(f"/procedures/{procedure.id}/edit")
    return _stored_form(request, session, principal, procedure, mode="amend", reason="")


@router.post("/procedures/{procedure_id}/amend", response_class=HTMLResponse)
def amend_procedure(
    request: Request,
    session: DbSession,
    principal: Keeper,
    procedure_id: RowId,
    posted_form: PostedForm,
) -> Response:
    values = _form(posted_form)
    ui.check_csrf(principal, values.pop("csrf_token", None))
    procedure = procedures.access_procedure_by_id(
        session=session, principal=principal, procedure_id=procedure_id
    )
    patient = session.get_one(Patient, procedure.patient_id)
    values.setdefault("reason", "")
    return _submit(
        request,
        session,
        principal,
        patient,
        values,
        mode="amend",
        action=f"/procedures/{procedure.id}/amend",
        procedure=procedure,
    )


@router.post("/procedures/{procedure_id}/discard", response_class=HTMLResponse)
def discard_procedure(
    request: Request,
    session: DbSession,
    principal: Keeper,
    procedure_id: RowId,
    posted_form: PostedForm,
) -> Response:
    values = _form(posted_form)
    ui.check_csrf(principal, values.get("csrf_token"))
    procedure = procedures.access_procedure_by_id(
        session=session, principal=principal, procedure_id=procedure_id
    )
    if procedure.status == "signed":
        return _signed_refusal(request, session, principal, procedure)
    patient_id = procedure.patient_id
    procedures.discard_draft(session=session, principal=principal, procedure_id=procedure_id)
    return ui.redirect(f"/patients/{patient_id}/procedures")


__all__ = ["NotFound", "router"]
