"""The patient portal: what is due, questionnaires (save and resume, one question per
screen if wanted), scores over time, the flare diary, and single-use links.

A patient gets here by logging in, or through a single-use link from the clinic
(:mod:`prolo.portal.links`), which opens a short visit limited to these pages.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlalchemy import select
from starlette.datastructures import FormData

from prolo import ui
from prolo.db import utcnow
from prolo.errors import AppError, Forbidden, NotFound, Unauthenticated
from prolo.instruments.base import Instrument, ItemError, NotScorable
from prolo.instruments.catalog import get_instrument
from prolo.instruments.questionnaire import is_structure_only
from prolo.knowledge.safety import load_safety_rules
from prolo.patients import service as patients
from prolo.portal import charts, diary, links, schedule, service
from prolo.portal.answers import (
    FormItem,
    answers_from_form,
    display_texts,
    form_items,
    plain_message,
    score_complete,
)
from prolo.portal.models import FlareDiaryEntry, QuestionnaireResponse
from prolo.portal.schemas import DiaryEntryIn, ResponseIn
from prolo.scheduling.models import Appointment
from prolo.security.principal import Principal
from prolo.ui import PostedForm
from prolo.web import DbSession, RowId, client_ip, policy, resolve_principal

router = APIRouter(include_in_schema=False)

TIMEPOINTS = tuple(schedule.TIMEPOINT_LABELS)


def _portal_patient(request: Request, session: DbSession) -> Principal:
    """A logged-in patient, or a patient on a link visit; everyone else is refused."""
    principal = resolve_principal(request, session)
    if principal is not None:
        if principal.role != "patient":
            raise Forbidden("the portal is for patients; staff use the patient's chart")
        return principal
    secret = request.cookies.get(links.VISIT_COOKIE)
    if secret:
        visit = links.principal_for_visit(
            session=session, secret=secret, source_ip=client_ip(request)
        )
        if visit is not None:
            request.state.principal = visit
            return visit
    raise Unauthenticated("log in, or open the link from your clinic again")


_portal_patient.__prolo_policy__ = ("patient",)  # type: ignore[attr-defined]
PortalPatient = Annotated[Principal, Depends(_portal_patient)]


def _patient_id(principal: Principal) -> int:
    if principal.patient_id is None:  # pragma: no cover - the database guarantees it
        raise Forbidden("this account has no patient record")
    return principal.patient_id


def _form(form: FormData) -> dict[str, str]:
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _instrument(instrument_id: str) -> Instrument:
    try:
        return get_instrument(instrument_id)
    except KeyError:
        raise NotFound("no such questionnaire") from None


# --- home ---------------------------------------------------------------------------


@router.get("/portal", response_class=HTMLResponse)
def patient_home(request: Request, session: DbSession, principal: PortalPatient) -> HTMLResponse:
    """The patient's own page: what to do now, next appointments, links to scores and diary."""
    patient_id = _patient_id(principal)
    patient = patients.access_patient_by_id(
        session=session, principal=principal, patient_id=patient_id
    )
    items = service.due_for_patient(session=session, principal=principal, patient_id=patient_id)
    todo = schedule.outstanding(items)
    upcoming_items = [i for i in items if i.status == "upcoming"][:5]
    diaries = [
        d
        for d in diary.diary_sessions(
            session=session, principal=principal, patient_id=patient_id, limit=3
        )
        if d.open
    ]
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
        request,
        "portal/home.html",
        principal=principal,
        patient=patient,
        upcoming=upcoming,
        todo=todo,
        later=upcoming_items,
        diaries=diaries,
        names={i.instrument_id: get_instrument(i.instrument_id).name for i in items},
    )


# --- questionnaires -----------------------------------------------------------------


def _form_context(
    session: DbSession,
    principal: Principal,
    instrument: Instrument,
) -> dict[str, Any]:
    questionnaire = service.clinic_questionnaire(session, principal.clinic_id, instrument.id)
    return {
        "instrument": instrument,
        "items": form_items(questionnaire),
        "instructions": display_texts(questionnaire),
        "structure_only": is_structure_only(questionnaire),
        "title": questionnaire.get("title") or instrument.name,
    }


def _values_from(answers: dict[str, Any]) -> dict[str, str]:
    return {
        f"a-{k}": (f"{v:g}" if isinstance(v, float) else str(v))
        for k, v in answers.items()
        if v is not None
    }


def _render_form(
    request: Request,
    principal: Principal,
    context: dict[str, Any],
    *,
    timepoint: str,
    course_id: int | None,
    key: str,
    values: dict[str, str],
    errors: dict[str, str],
    step: int | None,
    saved: bool = False,
    form_error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    items: list[FormItem] = context["items"]
    if step is not None:
        step = min(max(step, 1), len(items))
    answered = sum(1 for i in items if values.get(i.name))
    return ui.render(
        request,
        "portal/questionnaire.html",
        principal=principal,
        **context,
        timepoint=timepoint,
        timepoint_label=(
            "Answered when you choose"
            if timepoint == "ad_hoc" and not key.startswith("request-")
            else schedule.TIMEPOINT_LABELS[timepoint]
        ),
        course_id=course_id,
        key=key,
        values=values,
        errors=errors,
        step=step,
        answered=answered,
        saved=saved,
        form_error=form_error,
        status_code=status_code,
    )


def _timepoint(value: str) -> str:
    if value not in TIMEPOINTS:
        raise NotFound("no such questionnaire time")
    return value


@router.get("/portal/questionnaires/{instrument_id}", response_class=HTMLResponse)
def questionnaire_form(
    request: Request,
    session: DbSession,
    principal: PortalPatient,
    instrument_id: Annotated[str, Path(max_length=40)],
    timepoint: Annotated[str, Query(max_length=20)] = "ad_hoc",
    course: Annotated[int | None, Query(ge=1, le=2_147_483_647)] = None,
    step: Annotated[int | None, Query(ge=1, le=500)] = None,
    saved: bool = False,
) -> HTMLResponse:
    """The questionnaire, resuming a saved draft; ``step`` shows one question per screen."""
    instrument = _instrument(instrument_id)
    timepoint = _timepoint(timepoint)
    patient_id = _patient_id(principal)
    service.access_patient_outcomes(
        session=session, principal=principal, patient_id=patient_id, event="questionnaire.open"
    )
    draft = service.find_draft(
        session=session,
        patient_id=patient_id,
        instrument_id=instrument.id,
        timepoint=timepoint,
        course_id=course,
    )
    context = _form_context(session, principal, instrument)
    return _render_form(
        request,
        principal,
        context,
        timepoint=timepoint,
        course_id=course,
        key=(
            draft.idempotency_key if draft and draft.idempotency_key else secrets.token_urlsafe(18)
        ),
        values=_values_from(draft.answers) if draft else {},
        errors={},
        step=step,
        saved=saved,
    )


@router.post("/portal/questionnaires/{instrument_id}", response_class=HTMLResponse)
def questionnaire_submit(
    request: Request,
    session: DbSession,
    principal: PortalPatient,
    instrument_id: Annotated[str, Path(max_length=40)],
    posted_form: PostedForm,
) -> Response:
    """Save the answers as a draft, move one question on or back, or submit to be scored."""
    instrument = _instrument(instrument_id)
    form = _form(posted_form)
    ui.check_csrf(principal, form.get("csrf_token"))
    patient_id = _patient_id(principal)
    timepoint = _timepoint(form.get("timepoint", "ad_hoc"))
    course_raw = form.get("course", "")
    course_id = int(course_raw) if course_raw.isdigit() and len(course_raw) < 10 else None
    key = form.get("key", "")
    if not 8 <= len(key) <= 80 or not key.replace("-", "").replace("_", "").isalnum():
        raise Forbidden("the form expired: reload the page and try again")
    action = form.get("action", "submit")
    step_raw = form.get("step", "")
    step = int(step_raw) if step_raw.isdigit() and len(step_raw) < 4 else None
    context = _form_context(session, principal, instrument)
    items: list[FormItem] = context["items"]

    existing = session.scalar(
        select(QuestionnaireResponse).where(
            QuestionnaireResponse.patient_id == patient_id,
            QuestionnaireResponse.idempotency_key == key,
        )
    )
    if existing is not None and existing.status == "completed":
        return ui.redirect(f"/portal/responses/{existing.id}")  # a double submit: already in
    shown = (
        {i.item.link_id for i in items}
        if step is None
        else {items[min(step, len(items)) - 1].item.link_id}
    )
    posted, errors = answers_from_form(items, form)
    merged = dict(existing.answers) if existing is not None else {}
    for link_id in shown:
        merged.pop(link_id, None)
    merged.update(posted)
    values = _values_from(merged) | {k: v for k, v in form.items() if k.startswith("a-")}

    def again(status: int, form_error: str | None = None) -> HTMLResponse:
        return _render_form(
            request,
            principal,
            context,
            timepoint=timepoint,
            course_id=course_id,
            key=key,
            values=values,
            errors=errors,
            step=step,
            form_error=form_error,
            status_code=status,
        )

    if errors:
        return again(422, "Please correct the answers marked below.")
    if action in ("save", "next", "back"):
        data = ResponseIn(
            instrument_id=instrument.id,
            timepoint=timepoint,
            status="in-progress",
            course_id=course_id,
            answers=merged,
            idempotency_key=key,
        )
        try:
            service.submit_response(
                session=session, principal=principal, patient_id=patient_id, data=data
            )
        except AppError as error:
            return again(error.http_status, error.detail)
        base = f"/portal/questionnaires/{instrument.id}?timepoint={timepoint}"
        if course_id:
            base += f"&course={course_id}"
        if action == "save":
            return ui.redirect(base + (f"&step={step}" if step else "") + "&saved=1")
        target = (step or 1) + (1 if action == "next" else -1)
        return ui.redirect(base + f"&step={min(max(target, 1), len(items))}")
    # Submit: check the whole answer set first, so nothing half-done is scored.
    try:
        score_complete(instrument, merged)
    except ItemError as error:
        item = next((i.item for i in items if i.item.link_id == error.item), None)
        errors[error.item] = plain_message(error, item)
        if step is not None:
            step = next((n for n, i in enumerate(items, 1) if i.item.link_id == error.item), step)
        return again(422, "Please answer the questions marked below before you send.")
    except NotScorable as error:
        for link_id in error.items:
            if merged.get(link_id) is None:
                errors[link_id] = "Please answer this question."
        if step is not None and errors:
            step = next((n for n, i in enumerate(items, 1) if i.item.link_id in errors), step)
        return again(
            422, "Too many questions are unanswered to work out a score. Please answer them."
        )
    data = ResponseIn(
        instrument_id=instrument.id,
        timepoint=timepoint,
        status="completed",
        course_id=course_id,
        answers=merged,
        idempotency_key=key,
    )
    try:
        result = service.submit_response(
            session=session, principal=principal, patient_id=patient_id, data=data
        )
    except AppError as error:
        return again(error.http_status, error.detail)
    return ui.redirect(f"/portal/responses/{result.response.id}")


@router.get("/portal/responses/{response_id}", response_class=HTMLResponse)
def response_result(
    request: Request, session: DbSession, principal: PortalPatient, response_id: RowId
) -> Response:
    """A submitted questionnaire's scores, in plain words."""
    response = service.access_response_by_id(
        session=session,
        principal=principal,
        patient_id=_patient_id(principal),
        response_id=response_id,
        event="questionnaire.read",
    )
    if response.status != "completed":
        base = f"/portal/questionnaires/{response.instrument_id}?timepoint={response.timepoint}"
        return ui.redirect(base + (f"&course={response.course_id}" if response.course_id else ""))
    instrument = get_instrument(response.instrument_id)
    scores = service.scores_of(session, [response.id])[response.id]
    return ui.render(
        request,
        "portal/response.html",
        principal=principal,
        response=response,
        instrument=instrument,
        scores=[(s, instrument.spec(s.score_key)) for s in scores],
    )


def trajectories_for(
    session: DbSession, principal: Principal, patient_id: int, *, with_mcid: bool, tz: Any
) -> list[dict[str, Any]]:
    rows = service.list_scores(session=session, principal=principal, patient_id=patient_id)
    series: dict[tuple[str, str], list[charts.Point]] = {}
    for row in rows:
        series.setdefault((row.instrument_id, row.score_key), []).append(
            charts.Point(row.effective_at, row.value)
        )
    found = []
    for n, ((instrument_id, key), points) in enumerate(sorted(series.items())):
        try:
            instrument = get_instrument(instrument_id)
            spec = instrument.spec(key)
        except KeyError:
            continue  # a score of an instrument no longer in the catalog
        title = instrument.name if key == "total" else f"{instrument.name}: {spec.name}"
        mcid = spec.mcid.value if (with_mcid and spec.mcid and spec.mcid.unit == "points") else None
        found.append(
            {
                "title": title,
                "instrument": instrument,
                "spec": spec,
                "points": points,
                "mcid": spec.mcid if with_mcid else None,
                "svg": charts.trajectory_svg(
                    points,
                    chart_id=f"chart{n}",
                    title=title,
                    low=spec.low,
                    high=spec.high,
                    lower_is_better=spec.direction == "lower_is_better",
                    tz=tz,
                    mcid=mcid,
                ),
            }
        )
    return found


@router.get("/portal/scores", response_class=HTMLResponse)
def my_scores(request: Request, session: DbSession, principal: PortalPatient) -> HTMLResponse:
    """The patient's scores over time, one chart per measure."""
    patient_id = _patient_id(principal)
    tz = service.clinic_zone(session, principal.clinic_id)
    return ui.render(
        request,
        "portal/scores.html",
        principal=principal,
        trajectories=trajectories_for(session, principal, patient_id, with_mcid=False, tz=tz),
    )


# --- flare diary --------------------------------------------------------------------

SWELLING = [("none", "No swelling"), ("some", "Some swelling"), ("marked", "A lot of swelling")]
REDNESS = [
    ("none", "No redness"),
    ("at_site", "Red only where I was injected"),
    ("spreading", "Redness spreading beyond where I was injected"),
]


def flare_chart(found: diary.DiarySession, chart_id: str) -> Any:
    return charts.flare_svg(
        [charts.FlareDay(e.day, e.pain, bool(e.red_flags)) for e in found.entries],
        chart_id=chart_id,
        title="Pain each day after the session",
        baseline_pain=found.baseline_pain,
    )


@router.get("/portal/diary", response_class=HTMLResponse)
def diary_list(request: Request, session: DbSession, principal: PortalPatient) -> HTMLResponse:
    """The patient's injection sessions and their seven-day diaries."""
    sessions = diary.diary_sessions(
        session=session, principal=principal, patient_id=_patient_id(principal)
    )
    return ui.render(request, "portal/diary_list.html", principal=principal, sessions=sessions)


def _diary_page(
    request: Request,
    session: DbSession,
    principal: Principal,
    appointment_id: int,
    *,
    day: int | None,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    flags: tuple[Any, ...] = (),
    clinic_phone: str | None = None,
    saved: bool = False,
    status_code: int = 200,
) -> HTMLResponse:
    found = diary.diary_session(
        session=session,
        principal=principal,
        patient_id=_patient_id(principal),
        appointment_id=appointment_id,
    )
    chosen = day or found.today
    entry: FlareDiaryEntry | None = next((e for e in found.entries if e.day == chosen), None)
    if values is None:
        values = (
            {
                "pain": str(entry.pain),
                "swelling": entry.swelling,
                "redness": entry.redness,
                "warmth": "yes" if entry.warmth else "no",
                "fever": "yes" if entry.fever else "no",
                "normal_activity": "yes" if entry.normal_activity else "no",
            }
            if entry
            else {}
        )
    return ui.render(
        request,
        "portal/diary.html",
        principal=principal,
        found=found,
        day=chosen,
        days=list(range(1, (found.today or 0) + 1)),
        values=values,
        errors=errors or {},
        flags=flags,
        clinic_phone=clinic_phone,
        saved=saved,
        svg=flare_chart(found, "flare"),
        swelling=SWELLING,
        redness=REDNESS,
        warning_signs=load_safety_rules().post_injection_warning_signs,
        status_code=status_code,
    )


@router.get("/portal/diary/{appointment_id}", response_class=HTMLResponse)
def diary_form(
    request: Request,
    session: DbSession,
    principal: PortalPatient,
    appointment_id: RowId,
    day: Annotated[int | None, Query(ge=1, le=7)] = None,
    saved: bool = False,
) -> HTMLResponse:
    """One session's diary: today's questions and the curve so far."""
    return _diary_page(request, session, principal, appointment_id, day=day, saved=saved)


@router.post("/portal/diary/{appointment_id}", response_class=HTMLResponse)
def diary_save(
    request: Request,
    session: DbSession,
    principal: PortalPatient,
    appointment_id: RowId,
    posted_form: PostedForm,
) -> Response:
    """Save a diary day; warning signs alert the clinic and tell the patient to call."""
    form = _form(posted_form)
    ui.check_csrf(principal, form.get("csrf_token"))
    values = {k: v for k, v in form.items() if k != "csrf_token"}
    day_raw = form.get("day", "")
    day = int(day_raw) if day_raw.isdigit() and len(day_raw) < 3 else None
    raw: dict[str, Any] = {
        "appointment_id": appointment_id,
        "day": day,
        "pain": int(form["pain"])
        if form.get("pain", "").isdigit() and len(form["pain"]) < 4
        else None,
        "swelling": form.get("swelling") or None,
        "redness": form.get("redness") or None,
    }
    for key in ("warmth", "fever", "normal_activity"):
        raw[key] = {"yes": True, "no": False}.get(form.get(key, ""))
    messages = {
        "day": "Choose the day.",
        "pain": "Choose your pain from 0 to 10.",
        "swelling": "Choose an answer about swelling.",
        "redness": "Choose an answer about redness.",
        "warmth": "Answer yes or no.",
        "fever": "Answer yes or no.",
        "normal_activity": "Answer yes or no.",
    }
    try:
        data = DiaryEntryIn.model_validate(raw)
    except ValidationError as exc:
        errors = {field: messages.get(field, msg) for field, msg in ui.field_errors(exc).items()}
        return _diary_page(
            request,
            session,
            principal,
            appointment_id,
            day=day,
            values=values,
            errors=errors,
            status_code=422,
        )
    try:
        result = diary.record_day(
            session=session, principal=principal, patient_id=_patient_id(principal), data=data
        )
    except AppError as error:
        if error.http_status == 404:
            raise
        return _diary_page(
            request,
            session,
            principal,
            appointment_id,
            day=day,
            values=values,
            errors={error.field or "day": error.detail},
            status_code=error.http_status,
        )
    if result.flags:
        return _diary_page(
            request,
            session,
            principal,
            appointment_id,
            day=data.day,
            flags=result.flags,
            clinic_phone=result.clinic_phone,
            saved=True,
        )
    return ui.redirect(f"/portal/diary/{appointment_id}?day={data.day}&saved=1")


# --- single-use links -----------------------------------------------------------------


def _secret(request: Request) -> str:
    return str(request.app.state.settings.secret_key.get_secret_value())


@router.get("/portal/link/{token}", response_class=HTMLResponse, dependencies=[policy("public")])
def open_link(request: Request, session: DbSession, token: str) -> HTMLResponse:
    """Check a link and offer to open it (a GET never uses it up: mail scanners fetch links)."""
    if len(token) > 200:
        raise links.LinkGone(links.INVALID)
    links.check_link(session=session, token=token, secret_key=_secret(request))
    return ui.render(request, "portal/link.html", token=token)


@router.post("/portal/link/{token}", response_class=HTMLResponse, dependencies=[policy("public")])
def use_link(request: Request, session: DbSession, token: str, posted_form: PostedForm) -> Response:
    """Use the link once and start a short portal visit."""
    form = _form(posted_form)
    cookie_token = request.cookies.get("prolo_csrf", "")
    if not cookie_token or not hmac.compare_digest(cookie_token, form.get("csrf_token", "")):
        raise Forbidden("the page expired: open the link from your message again")
    if len(token) > 200:
        raise links.LinkGone(links.INVALID)
    visit, link = links.use_link(
        session=session, token=token, secret_key=_secret(request), source_ip=client_ip(request)
    )
    settings = request.app.state.settings
    response = ui.redirect("/portal")
    response.set_cookie(
        links.VISIT_COOKIE,
        visit,
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
        max_age=int((link.visit_expires_at - link.used_at).total_seconds())
        if link.visit_expires_at and link.used_at
        else None,
    )
    return response


@router.post("/portal/visit/end", dependencies=[policy("public")])
def end_visit(request: Request, session: DbSession, posted_form: PostedForm) -> Response:
    """End a link visit now (the 'Leave' button)."""
    form = _form(posted_form)
    secret = request.cookies.get(links.VISIT_COOKIE)
    if secret:
        visit = links.principal_for_visit(session=session, secret=secret, source_ip=None)
        if visit is not None:
            ui.check_csrf(visit, form.get("csrf_token"))
            links.end_visit(session=session, secret=secret)
    response = ui.redirect("/login")
    response.delete_cookie(links.VISIT_COOKIE)
    return response
