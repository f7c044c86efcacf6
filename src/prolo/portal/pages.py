"""The patient's home page."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from prolo import ui
from prolo.db import utcnow
from prolo.patients import service as patients
from prolo.scheduling.models import Appointment
from prolo.security.principal import Principal
from prolo.web import DbSession, policy

router = APIRouter(include_in_schema=False)
PatientUser = Annotated[Principal, policy("patient")]


@router.get("/portal", response_class=HTMLResponse)
def patient_home(request: Request, session: DbSession, principal: PatientUser) -> HTMLResponse:
    """The patient's own page: next appointments and what is due."""
    assert principal.patient_id is not None  # noqa: S101  (the database guarantees it)
    patient = patients.access_patient_by_id(
        session=session, principal=principal, patient_id=principal.patient_id
    )
    upcoming = session.scalars(
        select(Appointment)
        .where(
            Appointment.patient_id == patient.id,
            Appointment.starts_at >= utcnow(),
            Appointment.status == "booked",
        )
        .order_by(Appointment.starts_at)
        .limit(5)
    ).all()
    return ui.render(
        request, "portal/home.html", principal=principal, patient=patient, upcoming=upcoming
    )
