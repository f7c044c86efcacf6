"""JSON API for questionnaire responses, scores, what is due, the flare diary, clinic
alerts, portal links and the clinic's questionnaire schedule.

Responses and diaries: a patient only their own, clinicians and admins their
clinic's patients. Every read and write is audited by the service it calls.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import BaseModel, Field

from prolo.errors import ValidationFailed
from prolo.instruments.catalog import get_instrument
from prolo.portal import diary, links, service
from prolo.portal.models import QuestionnaireResponse, Score
from prolo.portal.schedule import DueItem
from prolo.portal.schemas import (
    AlertOut,
    DiaryEntryIn,
    DiaryEntryOut,
    DiaryResultOut,
    DraftUpdateIn,
    DueItemOut,
    PortalLinkIn,
    PortalLinkOut,
    RedFlagOut,
    ResponseIn,
    ResponseOut,
    ScheduleIn,
    ScheduleOut,
    ScoreOut,
)
from prolo.security.principal import Principal
from prolo.web import MAX_ROW_ID, DbSession, RowId, policy

router = APIRouter(tags=["questionnaires"])

Reader = Annotated[Principal, policy("admin", "clinician", "patient")]
Clinical = Annotated[Principal, policy("admin", "clinician")]
Staff = Annotated[Principal, policy("admin", "clinician", "front_desk")]
Admin = Annotated[Principal, policy("admin")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=8,
        max_length=80,
        pattern=r"^[A-Za-z0-9_.:\-]+$",
        description="a retry with the same key is not stored twice",
    ),
]
InstrumentFilter = Annotated[str | None, Query(max_length=40)]


def _response_out(
    session: DbSession, response: QuestionnaireResponse, scores: list[Score] | None = None
) -> ResponseOut:
    if scores is None:
        scores = service.scores_of(session, [response.id])[response.id]
    return ResponseOut(
        id=response.id,
        patient_id=response.patient_id,
        course_id=response.course_id,
        instrument_id=response.instrument_id,
        timepoint=response.timepoint,
        status=response.status,
        answers=response.answers,
        authored_at=response.authored_at,
        idempotency_key=response.idempotency_key,
        scores=[ScoreOut.model_validate(s) for s in scores],
    )


@router.post(
    "/api/patients/{patient_id}/responses",
    response_model=ResponseOut,
    status_code=201,
    responses={200: {"description": "a retry of a stored submission (same idempotency key)"}},
)
def submit_response(
    session: DbSession,
    principal: Reader,
    patient_id: RowId,
    data: ResponseIn,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> ResponseOut:
    """Store a questionnaire response and its scores in one transaction.

    ``status: completed`` scores it (a 422 names the item that stops it);
    ``in-progress`` stores a draft to finish later, unscored.
    """
    if idempotency_key and data.idempotency_key and idempotency_key != data.idempotency_key:
        raise ValidationFailed(
            "the Idempotency-Key header and the body's idempotency_key differ",
            field="idempotency_key",
        )
    if idempotency_key and not data.idempotency_key:
        data = data.model_copy(update={"idempotency_key": idempotency_key})
    result = service.submit_response(
        session=session, principal=principal, patient_id=patient_id, data=data
    )
    if not result.created:
        response.status_code = 200
    return _response_out(session, result.response, result.scores)


@router.get("/api/patients/{patient_id}/responses", response_model=list[ResponseOut])
def list_responses(
    session: DbSession,
    principal: Reader,
    patient_id: RowId,
    instrument_id: InstrumentFilter = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_ROW_ID)] = 0,
) -> list[ResponseOut]:
    """The patient's responses, newest first, each with its scores."""
    rows = service.list_responses(
        session=session,
        principal=principal,
        patient_id=patient_id,
        instrument_id=instrument_id,
        limit=limit,
        offset=offset,
    )
    scores = service.scores_of(session, [r.id for r in rows])
    return [
        ResponseOut(
            id=r.id,
            patient_id=r.patient_id,
            course_id=r.course_id,
            instrument_id=r.instrument_id,
            timepoint=r.timepoint,
            status=r.status,
            answers=r.answers,
            authored_at=r.authored_at,
            idempotency_key=r.idempotency_key,
            scores=[ScoreOut.model_validate(s) for s in scores[r.id]],
        )
        for r in rows
    ]


@router.get("/api/patients/{patient_id}/responses/{response_id}", response_model=ResponseOut)
def read_response(
    session: DbSession, principal: Reader, patient_id: RowId, response_id: RowId
) -> ResponseOut:
    """One response with its scores."""
    response = service.access_response_by_id(
        session=session,
        principal=principal,
        patient_id=patient_id,
        response_id=response_id,
        event="questionnaire.read",
    )
    return _response_out(session, response)


@router.put("/api/patients/{patient_id}/responses/{response_id}", response_model=ResponseOut)
def update_draft(
    session: DbSession,
    principal: Reader,
    patient_id: RowId,
    response_id: RowId,
    data: DraftUpdateIn,
) -> ResponseOut:
    """Save a draft's answers, or complete and score it (409 once it is completed)."""
    response = service.update_draft(
        session=session,
        principal=principal,
        patient_id=patient_id,
        response_id=response_id,
        data=data,
    )
    return _response_out(session, response)


@router.get("/api/patients/{patient_id}/scores", response_model=list[ScoreOut])
def list_scores(
    session: DbSession, principal: Reader, patient_id: RowId, instrument_id: InstrumentFilter = None
) -> list[ScoreOut]:
    """The patient's scores over time (Observations), oldest first."""
    rows = service.list_scores(
        session=session, principal=principal, patient_id=patient_id, instrument_id=instrument_id
    )
    return [ScoreOut.model_validate(r) for r in rows]


def due_out(item: DueItem) -> DueItemOut:
    return DueItemOut(
        course_id=item.course_id,
        timepoint=item.timepoint,
        label=item.label,
        instrument_id=item.instrument_id,
        instrument_name=get_instrument(item.instrument_id).name,
        status=item.status,
        opens_at=item.opens_at,
        due_by=item.due_by,
        closes_at=item.closes_at,
        appointment_id=item.appointment_id,
        response_id=item.response_id,
        draft=item.draft,
    )


@router.get("/api/patients/{patient_id}/due", response_model=list[DueItemOut])
def due_questionnaires(
    session: DbSession,
    principal: Reader,
    patient_id: RowId,
    outstanding: Annotated[bool, Query(description="only what can be answered now")] = False,
) -> list[DueItemOut]:
    """Every questionnaire of the patient's courses with its status (due, overdue, ...)."""
    items = service.due_for_patient(session=session, principal=principal, patient_id=patient_id)
    if outstanding:
        items = [i for i in items if i.answerable]
    return [due_out(i) for i in items]


class RequestIn(BaseModel):
    instrument_id: str = Field(min_length=1, max_length=40)
    course_id: int | None = Field(default=None, ge=1, le=MAX_ROW_ID)


@router.post(
    "/api/patients/{patient_id}/questionnaire-requests", response_model=ResponseOut, status_code=201
)
def request_questionnaire(
    session: DbSession, principal: Clinical, patient_id: RowId, data: RequestIn
) -> ResponseOut:
    """Ask the patient to answer an instrument now: it appears in their portal as due."""
    response = service.request_questionnaire(
        session=session,
        principal=principal,
        patient_id=patient_id,
        instrument_id=data.instrument_id,
        course_id=data.course_id,
    )
    return _response_out(session, response)


# --- flare diary --------------------------------------------------------------------


def diary_result(result: diary.DiaryResult) -> DiaryResultOut:
    advice = None
    if result.flags:
        phone = f" on {result.clinic_phone}" if result.clinic_phone else ""
        advice = (
            f"Please call the clinic{phone} today. If you cannot reach the clinic, "
            "contact an urgent care service."
        )
    return DiaryResultOut(
        entry=DiaryEntryOut.model_validate(result.entry),
        red_flags=[
            RedFlagOut(
                sign_id=f.sign_id, sign=f.sign, reason=f.reason, patient_message=f.patient_message
            )
            for f in result.flags
        ],
        advice=advice,
        alert_id=result.alert.id if result.alert else None,
    )


@router.post(
    "/api/patients/{patient_id}/flare-diary", response_model=DiaryResultOut, status_code=201
)
def record_diary_day(
    session: DbSession, principal: Reader, patient_id: RowId, data: DiaryEntryIn
) -> DiaryResultOut:
    """Record one diary day after an injection session; warning signs alert the clinic."""
    result = diary.record_day(
        session=session, principal=principal, patient_id=patient_id, data=data
    )
    return diary_result(result)


class DiarySessionOut(BaseModel):
    appointment_id: int
    starts_at: str
    today: int | None
    baseline_pain: float | None
    entries: list[DiaryEntryOut]


@router.get(
    "/api/patients/{patient_id}/flare-diary/{appointment_id}", response_model=DiarySessionOut
)
def read_diary(
    session: DbSession, principal: Reader, patient_id: RowId, appointment_id: RowId
) -> DiarySessionOut:
    """One session's diary: the flare curve's days."""
    found = diary.diary_session(
        session=session, principal=principal, patient_id=patient_id, appointment_id=appointment_id
    )
    return DiarySessionOut(
        appointment_id=found.appointment.id,
        starts_at=found.appointment.starts_at.isoformat(),
        today=found.today,
        baseline_pain=found.baseline_pain,
        entries=[DiaryEntryOut.model_validate(e) for e in found.entries],
    )


# --- alerts -------------------------------------------------------------------------


@router.get("/api/alerts", response_model=list[AlertOut])
def list_alerts(session: DbSession, principal: Clinical) -> list[AlertOut]:
    """The clinic's open alerts, newest first."""
    rows = diary.open_alerts(session=session, principal=principal)
    return [AlertOut.model_validate(alert) for alert, _ in rows]


@router.post("/api/alerts/{alert_id}/acknowledge", response_model=AlertOut)
def acknowledge_alert(session: DbSession, principal: Clinical, alert_id: RowId) -> AlertOut:
    """Mark an alert as handled."""
    return AlertOut.model_validate(
        diary.acknowledge_alert(session=session, principal=principal, alert_id=alert_id)
    )


# --- portal links and the schedule ----------------------------------------------------


@router.post(
    "/api/patients/{patient_id}/portal-links", response_model=PortalLinkOut, status_code=201
)
def create_portal_link(
    request: Request, session: DbSession, principal: Staff, patient_id: RowId, data: PortalLinkIn
) -> PortalLinkOut:
    """A single-use link into the patient's portal (for an email or a text message)."""
    settings = request.app.state.settings
    token, link = links.issue_link(
        session=session,
        principal=principal,
        patient_id=patient_id,
        secret_key=settings.secret_key.get_secret_value(),
        hours=data.hours,
    )
    return PortalLinkOut(
        url=f"{settings.base_url.rstrip('/')}/portal/link/{token}", expires_at=link.expires_at
    )


@router.get("/api/clinic/questionnaire-schedule", response_model=ScheduleOut)
def read_schedule(session: DbSession, principal: Staff) -> ScheduleOut:
    """The clinic's questionnaire schedule (defaults when it set none)."""
    settings = service.schedule_settings(session, principal.clinic_id)
    return ScheduleOut(
        pre_session=settings.pre_session,
        follow_up_days=dict(settings.follow_up_days),
        open_days_before=settings.open_days_before,
        due_hours_before_session=settings.due_hours_before_session,
        follow_up_due_days=settings.follow_up_due_days,
        last_follow_up_grace_days=settings.last_follow_up_grace_days,
    )


@router.put("/api/clinic/questionnaire-schedule", response_model=ScheduleOut)
def update_schedule(session: DbSession, principal: Admin, data: ScheduleIn) -> ScheduleOut:
    """Replace the clinic's questionnaire schedule (administrators)."""
    service.update_schedule_settings(session=session, principal=principal, data=data)
    return read_schedule(session, principal)
