"""The staff home page."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import func, select

from prolo import ui
from prolo.clinic.models import Clinic
from prolo.courses.models import TreatmentCourse
from prolo.db import utcnow
from prolo.patients.models import Patient
from prolo.scheduling.models import Appointment
from prolo.security.principal import Principal
from prolo.web import DbSession, policy

router = APIRouter(include_in_schema=False)
Staff = Annotated[Principal, policy("admin", "clinician", "front_desk")]


@router.get("/home", response_class=HTMLResponse)
def staff_home(request: Request, session: DbSession, principal: Staff) -> HTMLResponse:
    """Today at a glance: the clinic, its numbers and the next appointments."""
    clinic = session.get(Clinic, principal.clinic_id)
    now = utcnow()
    patients = session.scalar(
        select(func.count(Patient.id)).where(Patient.clinic_id == principal.clinic_id)
    )
    active_courses = session.scalar(
        select(func.count(TreatmentCourse.id)).where(
            TreatmentCourse.clinic_id == principal.clinic_id, TreatmentCourse.status == "active"
        )
    )
    upcoming = session.execute(
        select(Appointment, Patient)
        .join(Patient, Patient.id == Appointment.patient_id)
        .where(
            Appointment.clinic_id == principal.clinic_id,
            Appointment.starts_at >= now,
            Appointment.status == "booked",
        )
        .order_by(Appointment.starts_at)
        .limit(10)
    ).all()
    from prolo.portal import diary

    clinical = principal.role in ("admin", "clinician")
    alerts = diary.open_alerts(session=session, principal=principal, limit=5) if clinical else []
    open_alerts = diary.count_open_alerts(session=session, clinic_id=principal.clinic_id)
    return ui.render(
        request,
        "clinic/home.html",
        alerts=alerts,
        open_alerts=open_alerts,
        principal=principal,
        clinic=clinic,
        patients=patients or 0,
        active_courses=active_courses or 0,
        upcoming=upcoming,
    )
