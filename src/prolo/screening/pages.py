"""The public self-check and the clinician's screening view of a patient.

The self-check runs the same engine as the API and stores nothing. Answers are posted,
never put in the address (addresses end up in access logs; answers are health data).
Every error is shown next to the question it is about.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from prolo import ui
from prolo.clinic.models import Clinic
from prolo.errors import ValidationFailed
from prolo.knowledge.loader import load_conditions
from prolo.knowledge.pages import explorer_context
from prolo.knowledge.safety import SafetyRules, load_safety_rules
from prolo.knowledge.schema import COMPLAINT_KEYS
from prolo.middleware import LOGIN_CSRF_COOKIE
from prolo.patients.models import Patient
from prolo.screening import service
from prolo.screening.schemas import (
    DECISION_LABELS,
    DECISION_TEXT,
    DURATION_UNITS,
    KIND_LABELS,
    PREGNANT_CHOICES,
    PRIOR_TREATMENT_LABELS,
    SEX_AT_BIRTH_LABELS,
    YES_NO_QUESTIONS,
    ScreeningOut,
    answers_from_form,
    form_field,
    form_values,
)
from prolo.security.principal import Principal
from prolo.ui import PostedForm
from prolo.web import DbSession, RowId, policy, resolve_principal

router = APIRouter(include_in_schema=False)
Screener = Annotated[Principal, policy("admin", "clinician")]


def _posted(form: FormData) -> dict[str, list[str]]:
    posted: dict[str, list[str]] = {}
    for key, value in form.multi_items():
        if isinstance(value, str):
            posted.setdefault(key, []).append(value)
    return posted


def _flat(posted: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """Posted values as the template reads them: lists for checkboxes, else one string."""
    return {
        key: list(values) if key == "prior_treatments" else (values[-1] if values else "")
        for key, values in posted.items()
    }


def _form_context(rules: SafetyRules) -> dict[str, Any]:
    conditions = load_conditions()
    return {
        **explorer_context(),
        "red_flags": rules.red_flags,
        "yes_no_questions": YES_NO_QUESTIONS,
        "prior_treatment_labels": PRIOR_TREATMENT_LABELS,
        "duration_units": list(DURATION_UNITS),
        "sex_labels": SEX_AT_BIRTH_LABELS,
        "pregnant_choices": PREGNANT_CHOICES,
        "condition_options": sorted(
            ((c.id, c.lay_name) for c in conditions.values()), key=lambda o: o[1].casefold()
        ),
        "decision_labels": DECISION_LABELS,
        "decision_text": DECISION_TEXT,
        "kind_labels": KIND_LABELS,
    }


def _screen_form(
    posted: Mapping[str, Sequence[str]], rules: SafetyRules
) -> tuple[ScreeningOut | None, dict[str, Any], dict[str, str]]:
    """Run the engine on posted answers: (result or None, raw answers, {field: message})."""
    answers, errors = answers_from_form(posted, rules)
    if errors:
        return None, answers, errors
    try:
        profile = service.profile_from_answers(answers)
        result = ScreeningOut.from_result(service.run_screening(profile))
    except ValidationFailed as exc:
        field = exc.field or "form"
        return None, answers, {form_field(field): _plain(field, _message(exc))}
    return result, answers, {}


def _message(exc: ValidationFailed) -> str:
    return exc.errors[0]["message"] if exc.errors else exc.detail


# Plain words for the engine's contradiction errors, keyed by (field, words in its message).
_PAGE_MESSAGES: tuple[tuple[str, str, str], ...] = (
    (
        "condition_id",
        "condition, not one of",
        "This condition does not fit where you said the pain is. Change one of the two, "
        "or choose “I don't know”.",
    ),
    (
        "pregnant",
        "sex at birth",
        "This does not fit the sex at birth you chose. Please check both answers.",
    ),
    (
        "history.diabetes_controlled",
        "diabetes is answered no",
        "You said you do not have diabetes: choose “I do not have diabetes, or I am not sure”.",
    ),
    (
        "prior_treatments",
        "'none'",
        "“Nothing yet” cannot be ticked together with a treatment you have tried.",
    ),
    ("pain_duration_weeks", "zero or more", "Enter zero or more."),
    (
        "pain_duration_weeks",
        "lifetime",
        "That is longer than a lifetime: check the number and unit.",
    ),
)


def _plain(field: str, message: str) -> str:
    """The engine's message for ``field`` in plain words for the page."""
    for known_field, words, plain in _PAGE_MESSAGES:
        if field == known_field and words in message:
            return plain
    text = message.strip()
    return (text[:1].upper() + text[1:]).rstrip(".") + "."


def _booking_clinic(session: Session) -> Clinic | None:
    """The clinic to book with when this installation serves exactly one."""
    clinics = session.scalars(select(Clinic).order_by(Clinic.id).limit(2)).all()
    return clinics[0] if len(clinics) == 1 else None


@router.get("/self-check", response_class=HTMLResponse, dependencies=[policy("public")])
def self_check_form(
    request: Request,
    session: DbSession,
    region: Annotated[str, Query(max_length=40)] = "",
) -> HTMLResponse:
    """The questionnaire; ``region`` preselects where the pain is (from a condition page)."""
    rules = load_safety_rules()
    return ui.render(
        request,
        "screening/self_check.html",
        principal=resolve_principal(request, session),
        values={"complaint": region if region in COMPLAINT_KEYS else "", "duration_unit": "months"},
        errors={},
        result=None,
        clinic=None,
        **_form_context(rules),
    )


@router.post("/self-check", response_class=HTMLResponse, dependencies=[policy("public")])
def self_check(request: Request, session: DbSession, posted_form: PostedForm) -> HTMLResponse:
    """Screen the answers and explain the result in plain words; nothing is stored."""
    rules = load_safety_rules()
    posted = _posted(posted_form)
    principal = resolve_principal(request, session)
    values = _flat(posted)
    submitted = values.pop("csrf_token", "")
    expected = principal.csrf_token if principal else request.cookies.get(LOGIN_CSRF_COOKIE)
    if not submitted or not expected or not hmac.compare_digest(expected, submitted):
        return ui.render(
            request,
            "screening/self_check.html",
            principal=principal,
            values=values,
            errors={"form": "The form expired. Please check your answers and send them again."},
            result=None,
            clinic=None,
            status_code=403,
            **_form_context(rules),
        )
    result, _, errors = _screen_form(posted, rules)
    return ui.render(
        request,
        "screening/self_check.html",
        principal=principal,
        values=values,
        errors=errors,
        result=result,
        clinic=_booking_clinic(session) if result else None,
        status_code=422 if errors else 200,
        **_form_context(rules),
    )


def _patient_view(
    request: Request,
    session: Session,
    principal: Principal,
    patient_id: int,
    *,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    screenings = service.list_screenings(
        session=session, principal=principal, patient_id=patient_id
    )
    patient = session.get(Patient, patient_id)
    assert patient is not None  # noqa: S101  (list_screenings checked access)
    rules = load_safety_rules()
    if values is None:
        values = _defaults_from_chart(patient)
    return ui.render(
        request,
        "screening/patient.html",
        principal=principal,
        patient=patient,
        screenings=screenings,
        values=values,
        errors=errors or {},
        answered=[form_values(s.answers) for s in screenings],
        status_code=status_code,
        **_form_context(rules),
    )


def _defaults_from_chart(patient: Patient) -> dict[str, Any]:
    """Preselect the condition when the chart links exactly one active diagnosis to one."""
    linked = {
        d.condition_id
        for d in patient.diagnoses
        if d.condition_id and d.clinical_status == "active"
    }
    values: dict[str, Any] = {"duration_unit": "months"}
    if len(linked) == 1:
        condition_id = linked.pop()
        values["condition_id"] = condition_id
        keys = load_conditions()[condition_id].match.complaint_keys
        if len(keys) == 1:
            values["complaint"] = keys[0]
    return values


@router.get("/patients/{patient_id}/screening", response_class=HTMLResponse)
def patient_screening(
    request: Request, session: DbSession, principal: Screener, patient_id: RowId
) -> HTMLResponse:
    """The patient's stored screenings with every reason and source, and a form to screen."""
    return _patient_view(request, session, principal, patient_id)


# A third path segment keeps this clear of the chart's /patients/{id}/{list} form posts.
@router.post("/patients/{patient_id}/screening/new", response_class=HTMLResponse)
def screen_patient(
    request: Request,
    session: DbSession,
    principal: Screener,
    patient_id: RowId,
    posted_form: PostedForm,
) -> Response:
    """Screen the patient from the form and store the result on their record."""
    rules = load_safety_rules()
    posted = _posted(posted_form)
    values = _flat(posted)
    ui.check_csrf(principal, values.pop("csrf_token", None))
    # With errors the view below re-checks access, so another clinic's patient stays a 404.
    answers, errors = answers_from_form(posted, rules)
    if not errors:
        try:
            profile = service.profile_from_answers(answers)
            screening = service.screen_patient(
                session=session, principal=principal, patient_id=patient_id, profile=profile
            )
        except ValidationFailed as exc:
            field = exc.field or "form"
            errors = {form_field(field): _plain(field, _message(exc))}
        else:
            return ui.redirect(f"/patients/{patient_id}/screening#screening-{screening.id}")
    return _patient_view(
        request, session, principal, patient_id, values=values, errors=errors, status_code=422
    )
