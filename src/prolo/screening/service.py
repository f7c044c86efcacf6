"""Screening use cases: the anonymous self-check and screenings stored on a patient's record.

The engine (:func:`prolo.screening.rules.screen`) decides; this module turns its input
errors into :class:`~prolo.errors.ValidationFailed` naming the field, stores a
clinician's screening with every reason, and audits each read and write of a stored
screening in the caller's transaction. Services never commit.

The anonymous self-check stores nothing and identifies nobody, so it is not audited:
an audit row per anonymous visitor would record no one and let anyone grow the chain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from prolo.errors import AccessDenied, Forbidden, ValidationFailed
from prolo.knowledge.safety import load_safety_rules
from prolo.patients import service as patients
from prolo.screening.models import Screening, ScreeningReason
from prolo.screening.profile import ScreeningInputError, ScreeningProfile
from prolo.screening.rules import ScreeningResult, screen
from prolo.screening.schemas import ScreeningOut, profile_answers
from prolo.security import audit
from prolo.security.principal import CLINICAL, Principal

SCREENERS = CLINICAL  # clinicians and admins screen, and read stored screenings


def profile_from_answers(answers: Mapping[str, Any]) -> ScreeningProfile:
    """A validated profile; ValidationFailed naming the first malformed answer."""
    try:
        return ScreeningProfile.from_answers(answers)
    except ScreeningInputError as exc:
        raise _invalid(exc) from exc


def run_screening(profile: ScreeningProfile) -> ScreeningResult:
    """Screen without storing; ValidationFailed naming a missing or contradictory answer."""
    try:
        return screen(profile)
    except ScreeningInputError as exc:
        raise _invalid(exc) from exc


def _invalid(exc: ScreeningInputError) -> ValidationFailed:
    """The engine's input error as a 422 naming the field (``errors[0].field``)."""
    return ValidationFailed(
        f"{exc.field}: {exc.message}",
        field=exc.field,
        errors=[{"field": exc.field, "message": exc.message}],
    )


def _require_screener(principal: Principal) -> None:
    if principal.role not in SCREENERS:
        raise Forbidden("only clinicians and admins screen patients or read their screenings")


def screen_patient(
    *, session: Session, principal: Principal, patient_id: int, profile: ScreeningProfile
) -> Screening:
    """Screen a patient and store the result on their record, with every reason. Audited."""
    _require_screener(principal)
    patient = patients.access_patient_by_id(
        session=session, principal=principal, patient_id=patient_id, event="screening.create"
    )
    result = ScreeningOut.from_result(run_screening(profile))
    screening = Screening(
        patient_id=patient.id,
        clinic_id=patient.clinic_id,
        screened_by_user_id=principal.user_id,
        decision=result.decision,
        safety_rules_version=load_safety_rules().version,
        answers=profile_answers(profile),
        result=result.model_dump(mode="json"),
        reasons=[
            ScreeningReason(
                position=n,
                rule_id=reason.rule_id,
                kind=reason.kind,
                condition_id=reason.condition_id,
                patient_message=reason.patient_message,
                clinician_message=reason.clinician_message,
                sources=[s.model_dump(mode="json") for s in reason.sources],
            )
            for n, reason in enumerate(result.reasons)
        ],
    )
    session.add(screening)
    session.flush()
    audit.record(
        session,
        principal.actor,
        action="C",
        event="screening.create",
        entity_type="Screening",
        entity_id=screening.id,
        patient_id=patient.id,
        detail=f"{len(result.reasons)} reasons",
    )
    return screening


def list_screenings(
    *, session: Session, principal: Principal, patient_id: int
) -> Sequence[Screening]:
    """A patient's stored screenings, newest first. Audited as one read of the record."""
    _require_screener(principal)
    patient = patients.access_patient_by_id(
        session=session, principal=principal, patient_id=patient_id, event="screening.read"
    )
    return session.scalars(
        select(Screening)
        .where(Screening.patient_id == patient.id)
        .options(selectinload(Screening.reasons))
        .order_by(Screening.screened_at.desc(), Screening.id.desc())
    ).all()


def access_screening_by_id(
    *, session: Session, principal: Principal, patient_id: int, screening_id: int
) -> Screening:
    """One stored screening of this patient; AccessDenied (404) when absent or not theirs."""
    _require_screener(principal)
    patient = patients.access_patient_by_id(
        session=session, principal=principal, patient_id=patient_id, event="screening.read"
    )
    screening = session.get(Screening, screening_id)
    if screening is None or screening.patient_id != patient.id:
        raise AccessDenied("no such screening", entity_type="Screening", entity_id=screening_id)
    audit.record(
        session,
        principal.actor,
        action="R",
        event="screening.read",
        entity_type="Screening",
        entity_id=screening.id,
        patient_id=patient.id,
    )
    return screening
