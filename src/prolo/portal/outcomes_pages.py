"""The clinic's side of the portal: a patient's outcomes (trajectories with the MCID
band, questionnaire schedule, flare curves, alerts), the clinic's alerts, and the
list of questionnaires due or overdue."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.datastructures import FormData

from prolo import ui
from prolo.errors import AppError
from prolo.instruments.catalog import instruments
from prolo.knowledge.safety import WarningSign, load_safety_rules
from prolo.portal import diary, links, service
from prolo.portal.pages import flare_chart, trajectories_for
from prolo.security.principal import Principal
from prolo.ui import PostedForm
from prolo.web import DbSession, RowId, policy

router = APIRouter(include_in_schema=False)
Clinical = Annotated[Principal, policy("admin", "clinician")]
Staff = Annotated[Principal, policy("admin", "clinician", "front_desk")]


def _form(form: FormData) -> dict[str, str]:
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _outcomes(
    request: Request,
    session: DbSession,
    principal: Principal,
    patient_id: int,
    *,
    link: tuple[str, object] | None = None,
    message: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    patient = service.access_patient_outcomes(
        session=session, principal=principal, patient_id=patient_id, event="outcomes.read"
    )
    tz = service.clinic_zone(session, patient.clinic_id)
    items = service.due_for_patient(session=session, principal=principal, patient_id=patient.id)
    sessions = diary.diary_sessions(session=session, principal=principal, patient_id=patient.id)
    alerts = diary.patient_alerts(session=session, principal=principal, patient_id=patient.id)
    curves = [(s, flare_chart(s, f"flare{s.appointment.id}")) for s in sessions if s.entries]
    return ui.render(
        request,
        "portal/outcomes.html",
        principal=principal,
        patient=patient,
        trajectories=trajectories_for(session, principal, patient.id, with_mcid=True, tz=tz),
        current=[i for i in items if i.status in ("due", "overdue", "upcoming")][:12],
        earlier=[i for i in items if i.status in ("done", "missed")],
        curves=curves,
        alerts=alerts,
        sign_names={s.id: s.sign for s in _signs()},
        names={k: v.name for k, v in instruments().items()},
        link=link,
        message=message,
        error=error,
        status_code=status_code,
    )


def _signs() -> tuple[WarningSign, ...]:
    return load_safety_rules().post_injection_warning_signs


@router.get("/patients/{patient_id}/outcomes", response_class=HTMLResponse)
def patient_outcomes(
    request: Request,
    session: DbSession,
    principal: Clinical,
    patient_id: RowId,
    requested: bool = False,
) -> HTMLResponse:
    """Each score's trajectory with the MCID band, what is due, flare curves and alerts."""
    message = (
        "The patient will see the questionnaire as due in their portal." if requested else None
    )
    return _outcomes(request, session, principal, patient_id, message=message)


@router.post("/patients/{patient_id}/outcomes/request", response_class=HTMLResponse)
def request_questionnaire(
    request: Request,
    session: DbSession,
    principal: Clinical,
    patient_id: RowId,
    posted_form: PostedForm,
) -> Response:
    """Ask the patient to answer an instrument now (it shows as due in their portal)."""
    form = _form(posted_form)
    ui.check_csrf(principal, form.get("csrf_token"))
    try:
        service.request_questionnaire(
            session=session,
            principal=principal,
            patient_id=patient_id,
            instrument_id=form.get("instrument_id", ""),
        )
    except AppError as error:
        if error.http_status == 404:
            raise
        return _outcomes(
            request, session, principal, patient_id, error=error.detail, status_code=422
        )
    return ui.redirect(f"/patients/{patient_id}/outcomes?requested=1#schedule")


@router.post("/patients/{patient_id}/outcomes/link", response_class=HTMLResponse)
def send_link(
    request: Request,
    session: DbSession,
    principal: Clinical,
    patient_id: RowId,
    posted_form: PostedForm,
) -> Response:
    """Create a single-use portal link and show it once, to copy into a message."""
    form = _form(posted_form)
    ui.check_csrf(principal, form.get("csrf_token"))
    settings = request.app.state.settings
    token, row = links.issue_link(
        session=session,
        principal=principal,
        patient_id=patient_id,
        secret_key=settings.secret_key.get_secret_value(),
        hours=72,
    )
    url = f"{settings.base_url.rstrip('/')}/portal/link/{token}"
    return _outcomes(request, session, principal, patient_id, link=(url, row.expires_at))


@router.get("/alerts", response_class=HTMLResponse)
def clinic_alerts(request: Request, session: DbSession, principal: Clinical) -> HTMLResponse:
    """The clinic's open alerts, newest first."""
    rows = diary.open_alerts(session=session, principal=principal)
    return ui.render(
        request,
        "portal/alerts.html",
        principal=principal,
        alerts=rows,
        sign_names={s.id: s.sign for s in _signs()},
    )


@router.post("/alerts/{alert_id}/acknowledge", response_class=HTMLResponse)
def acknowledge(
    request: Request,
    session: DbSession,
    principal: Clinical,
    alert_id: RowId,
    posted_form: PostedForm,
) -> Response:
    """Mark an alert as handled; back to where the button was."""
    form = _form(posted_form)
    ui.check_csrf(principal, form.get("csrf_token"))
    diary.acknowledge_alert(session=session, principal=principal, alert_id=alert_id)
    back = form.get("next", "/alerts")
    return ui.redirect(back if back.startswith("/") and not back.startswith("//") else "/alerts")


@router.get("/questionnaires/due", response_class=HTMLResponse)
def due_list(request: Request, session: DbSession, principal: Clinical) -> HTMLResponse:
    """Patients with questionnaires due or overdue now, most overdue first."""
    rows = service.clinic_outstanding(session=session, principal=principal)
    return ui.render(
        request,
        "portal/due.html",
        principal=principal,
        rows=rows,
        names={k: v.name for k, v in instruments().items()},
    )
