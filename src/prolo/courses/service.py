"""Treatment courses and consent: the use cases, each inside the caller's transaction.

A course is planned from its condition's protocol in the knowledge base. Where the
knowledge base has no published protocol (``insufficient_evidence``), or a published one
lacks a figure, the clinician enters it and the course records that (``protocol_status``);
the protocol as read is kept with the course, so later edits by the clinician stay visible
against it. Status moves planned → active → completed, or to stopped with a reason, and
every other move is refused naming the current status.

Informed consent is recorded before the first session: an injection session cannot be
marked done without a consent on file (:func:`consent_on_file`, checked by scheduling and
by the procedure record). A course has at most one consent on file (a partial unique index
enforces it): recording a new consent supersedes the one on file, and withdrawing the one
on file leaves none, so an older consent never counts again once a newer one was recorded.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from prolo.clinic.models import Practitioner
from prolo.courses.consent import CONSENT_TEXTS
from prolo.courses.models import Consent, Procedure, TreatmentCourse
from prolo.courses.schemas import ConsentIn, CourseIn, CourseStatusIn, CourseUpdate
from prolo.db import utcnow
from prolo.errors import AccessDenied, Conflict, Forbidden, ValidationFailed
from prolo.knowledge.schema import Condition
from prolo.patients import service as patients_service
from prolo.patients.models import Diagnosis
from prolo.scheduling.schemas import PreferencesIn
from prolo.security import audit
from prolo.security.principal import CLINICAL, STAFF, Principal

# Who may read a course: clinicians and admins; the front desk to schedule its sessions;
# the patient their own. Who may change it: clinicians and admins.
COURSE_WRITERS = CLINICAL
OPEN_STATUSES = ("planned", "active")
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "planned": ("active", "stopped"),
    "active": ("completed", "stopped"),
    "completed": (),
    "stopped": (),
}


class CourseStatusConflict(Conflict):
    code = "course_status"


class ConsentMissing(Conflict):
    code = "consent_missing"


def _visible(principal: Principal, course: TreatmentCourse) -> bool:
    return principal.may_see(clinic_id=course.clinic_id, patient_id=course.patient_id)


def access_course_by_id(
    *, session: Session, principal: Principal, course_id: int, event: str = "course.read"
) -> TreatmentCourse:
    """The course if ``principal`` may see it; AccessDenied (404) otherwise. Audited."""
    course = session.get(TreatmentCourse, course_id)
    if course is None or not _visible(principal, course):
        raise AccessDenied("no such treatment course", entity_type="CarePlan", entity_id=course_id)
    audit.record(
        session,
        principal.actor,
        action="R",
        event=event,
        entity_type="CarePlan",
        entity_id=course.id,
        patient_id=course.patient_id,
    )
    return course


def _require_writer(principal: Principal) -> None:
    if principal.role not in COURSE_WRITERS:
        raise Forbidden("only clinicians and admins may plan or change a treatment course")


def _round_weeks(value: float) -> int:
    return max(1, round(value))


def protocol_plan(condition_id: str) -> dict[str, Any]:
    """The knowledge base's protocol for a condition as plan figures and a snapshot.

    Returns ``{"status", "planned_sessions", "interval_weeks_min", "interval_weeks_max",
    "injectate", "snapshot"}``; a figure the protocol does not give is None. The session
    count defaults to the top of the published range so the course covers the protocol;
    fractional week intervals are rounded to whole weeks (the calendar plans in weeks).
    ValidationFailed names an unknown condition.
    """
    from prolo.knowledge.loader import get_condition

    try:
        condition = get_condition(condition_id)
    except KeyError:
        raise ValidationFailed(
            f"no condition {condition_id!r} in the knowledge base", field="condition_id"
        ) from None
    protocol = condition.protocol
    sessions = protocol.sessions
    interval = protocol.interval_weeks
    snapshot: dict[str, Any] = {
        "condition_id": condition.id,
        "condition_version": condition.version,
        "condition_name": condition.clinical_name,
        "evidence_grade": condition.evidence_grade,
        "status": protocol.status,
        "sessions": sessions.model_dump() if sessions else None,
        "interval_weeks": interval.model_dump() if interval else None,
        "injectate": protocol.injectate,
        "sources": [_cited_source(condition, s.study_id, s.locator) for s in protocol.sources],
    }
    return {
        "status": protocol.status,
        "planned_sessions": sessions.high if sessions else None,
        "interval_weeks_min": _round_weeks(interval.low) if interval else None,
        "interval_weeks_max": _round_weeks(interval.high) if interval else None,
        "injectate": protocol.injectate,
        "snapshot": snapshot,
    }


def _cited_source(condition: Condition, study_id: str, locator: str) -> dict[str, Any]:
    study = condition.study(study_id)
    return {
        "study_id": study_id,
        "locator": locator,
        "citation": f"{study.first_author} {study.year}, {study.journal}",
        "pmid": study.pmid,
        "doi": study.doi,
        "url": study.url,
        "grade": study.grade,
    }


PLAN_FIELDS = ("planned_sessions", "interval_weeks_min", "interval_weeks_max", "injectate")
_FIELD_WORDS = {
    "planned_sessions": "the number of sessions",
    "interval_weeks_min": "the shortest interval",
    "interval_weeks_max": "the longest interval",
    "injectate": "the injectate",
}


def preferences_doc(preferences: PreferencesIn | None) -> dict[str, Any] | None:
    """The patient's preferred days and times as stored on the course."""
    if preferences is None:
        return None
    return {
        "weekdays": sorted(set(preferences.weekdays)),
        "times": [
            [w.starts.strftime("%H:%M"), w.ends.strftime("%H:%M")] for w in preferences.times
        ],
    }


def _practitioner_in_clinic(session: Session, clinic_id: int, practitioner_id: int) -> None:
    practitioner = session.get(Practitioner, practitioner_id)
    if practitioner is None or practitioner.clinic_id != clinic_id or not practitioner.active:
        raise ValidationFailed("no such practitioner in this clinic", field="practitioner_id")


def plan_course(*, session: Session, principal: Principal, data: CourseIn) -> TreatmentCourse:
    """Plan a course for a patient from the condition's protocol, plus the clinician's figures.

    A figure the protocol does not publish must be given (ValidationFailed names each);
    ``protocol_status`` says whether every figure came from a published protocol.
    """
    _require_writer(principal)
    patient = patients_service.access_patient_by_id(
        session=session, principal=principal, patient_id=data.patient_id, event="course.plan"
    )
    defaults = protocol_plan(data.condition_id)
    if data.diagnosis_id is not None:
        diagnosis = session.get(Diagnosis, data.diagnosis_id)
        if diagnosis is None or diagnosis.patient_id != patient.id:
            raise ValidationFailed("no such diagnosis for this patient", field="diagnosis_id")
    if data.practitioner_id is not None:
        _practitioner_in_clinic(session, patient.clinic_id, data.practitioner_id)
    given = data.model_dump(include=set(PLAN_FIELDS), exclude_none=True)
    missing = [name for name in PLAN_FIELDS if name not in given and defaults[name] is None]
    if missing:
        reason = (
            "the knowledge base has no published protocol for this condition"
            if defaults["status"] == "insufficient_evidence"
            else "the published protocol does not give it"
        )
        raise ValidationFailed(
            f"enter {', '.join(_FIELD_WORDS[m] for m in missing)}: {reason}",
            errors=[{"field": m, "message": f"required: {reason}"} for m in missing],
        )
    values = {name: given.get(name, defaults[name]) for name in PLAN_FIELDS}
    if values["interval_weeks_max"] < values["interval_weeks_min"]:
        raise ValidationFailed(
            "interval_weeks_max is below interval_weeks_min", field="interval_weeks_max"
        )
    if defaults["status"] == "insufficient_evidence":
        protocol_status = "not_published"
    elif any(defaults[name] is None for name in PLAN_FIELDS):
        protocol_status = "incomplete"
    else:
        protocol_status = "published"
    now = utcnow()
    course = TreatmentCourse(
        clinic_id=patient.clinic_id,
        patient_id=patient.id,
        practitioner_id=data.practitioner_id,
        diagnosis_id=data.diagnosis_id,
        condition_id=data.condition_id,
        status="planned",
        protocol_status=protocol_status,
        protocol=defaults["snapshot"],
        preferences=preferences_doc(data.preferences),
        created_by_user_id=principal.user_id,
        created_at=now,
        updated_at=now,
        **values,
    )
    session.add(course)
    session.flush()
    audit.record(
        session,
        principal.actor,
        action="C",
        event="course.create",
        entity_type="CarePlan",
        entity_id=course.id,
        patient_id=patient.id,
        detail=f"protocol {protocol_status}",
    )
    return course


def _require_open(course: TreatmentCourse, doing: str) -> None:
    if course.status not in OPEN_STATUSES:
        raise CourseStatusConflict(
            f"the course is {course.status}: it can no longer {doing}",
            extra={"current_status": course.status},
        )


def update_course(
    *, session: Session, principal: Principal, course_id: int, data: CourseUpdate
) -> TreatmentCourse:
    """Edit the plan of a planned or active course; fields left out keep their value."""
    _require_writer(principal)
    course = access_course_by_id(
        session=session, principal=principal, course_id=course_id, event="course.update"
    )
    _require_open(course, "be edited")
    changes = data.model_dump(include=set(PLAN_FIELDS) | {"practitioner_id"}, exclude_none=True)
    low = changes.get("interval_weeks_min", course.interval_weeks_min)
    high = changes.get("interval_weeks_max", course.interval_weeks_max)
    if high < low:
        raise ValidationFailed(
            "interval_weeks_max is below interval_weeks_min", field="interval_weeks_max"
        )
    if "practitioner_id" in changes:
        _practitioner_in_clinic(session, course.clinic_id, changes["practitioner_id"])
    sessions = changes.get("planned_sessions")
    if sessions is not None:
        highest = _highest_session_in_use(session, course.id)
        if sessions < highest:
            raise Conflict(
                f"session {highest} is already booked or done: plan at least {highest} sessions",
                field="planned_sessions",
            )
    for key, value in changes.items():
        setattr(course, key, value)
    if "preferences" in data.model_fields_set:
        course.preferences = preferences_doc(data.preferences)
    course.updated_at = utcnow()
    audit.record(
        session,
        principal.actor,
        action="U",
        event="course.update",
        entity_type="CarePlan",
        entity_id=course.id,
        patient_id=course.patient_id,
    )
    return course


def _highest_session_in_use(session: Session, course_id: int) -> int:
    from prolo.scheduling import service as scheduling

    return scheduling.highest_session_number(session=session, course_id=course_id)


def change_course_status(
    *, session: Session, principal: Principal, course_id: int, data: CourseStatusIn
) -> TreatmentCourse:
    """Move the course on; Conflict (409) names the current status for a move not allowed.

    Starting a course needs consent on file. Stopping or completing it cancels its
    sessions still booked in the future (and their reminders).
    """
    _require_writer(principal)
    course = access_course_by_id(
        session=session, principal=principal, course_id=course_id, event="course.status"
    )
    allowed = TRANSITIONS[course.status]
    if data.status not in allowed:
        options = " or ".join(allowed) if allowed else "nothing (it is final)"
        raise CourseStatusConflict(
            f"the course is {course.status}; it can move to {options}, not {data.status}",
            extra={"current_status": course.status},
        )
    today = utcnow().date()
    previous = course.status
    if data.status == "active":
        if consent_on_file(session=session, course=course) is None:
            raise ConsentMissing("record the patient's informed consent before starting the course")
        course.started_on = course.started_on or today
    else:
        course.ended_on = today
    # status and reason change together: the table checks that they agree
    course.status, course.stop_reason = data.status, data.stop_reason
    course.updated_at = utcnow()
    if data.status in ("completed", "stopped"):
        from prolo.scheduling import service as scheduling

        scheduling.cancel_course_appointments(
            session=session, principal=principal, course=course, reason="course_stopped"
        )
    audit.record(
        session,
        principal.actor,
        action="U",
        event="course.status",
        entity_type="CarePlan",
        entity_id=course.id,
        patient_id=course.patient_id,
        detail=f"{previous} -> {data.status}",
    )
    return course


def note_session_done(*, session: Session, course: TreatmentCourse) -> None:
    """A session of the course was done: a planned course becomes active (called by scheduling)."""
    if course.status == "planned":
        course.status = "active"
        course.started_on = course.started_on or utcnow().date()
        course.updated_at = utcnow()


def _on_file() -> tuple[ColumnElement[bool], ...]:
    # The same condition as the partial unique index uq_consent_course_on_file.
    return (Consent.withdrawn_at.is_(None), Consent.superseded_at.is_(None))


def consent_on_file(*, session: Session, course: TreatmentCourse) -> Consent | None:
    """The course's one consent on file (neither withdrawn nor superseded), or None."""
    return session.scalars(
        select(Consent).where(Consent.course_id == course.id, *_on_file()).limit(1)
    ).first()


def patient_consent_on_file(*, session: Session, patient_id: int) -> Consent | None:
    """The newest consent on file among the patient's courses, or None."""
    return session.scalars(
        select(Consent)
        .where(Consent.patient_id == patient_id, *_on_file())
        .order_by(Consent.signed_at.desc(), Consent.id.desc())
        .limit(1)
    ).first()


def record_consent(
    *, session: Session, principal: Principal, course_id: int, data: ConsentIn
) -> Consent:
    """Record the patient's informed consent to the course, by the clinician present.

    Every required statement of the text version must be acknowledged (ValidationFailed
    names those left out); the signing time may not be in the future, nor before the
    consent on file, which the new one supersedes (it no longer counts, even if the new
    one is withdrawn later).
    """
    _require_writer(principal)
    course = access_course_by_id(
        session=session, principal=principal, course_id=course_id, event="consent.create"
    )
    _require_open(course, "take a consent")
    text = CONSENT_TEXTS.get(data.text_version)
    if text is None:
        raise ValidationFailed(
            f"unknown consent text version {data.text_version!r}", field="text_version"
        )
    acknowledged = list(dict.fromkeys(data.acknowledged))
    unknown = [item for item in acknowledged if item not in {s.id for s in text.statements}]
    if unknown:
        raise ValidationFailed(
            f"not statements of consent text {text.version}: {', '.join(unknown)}",
            field="acknowledged",
        )
    missing = [item for item in text.required_ids if item not in acknowledged]
    if missing:
        raise ValidationFailed(
            f"the patient has not acknowledged: {', '.join(missing)}",
            field="acknowledged",
            extra={"missing": missing},
        )
    now = utcnow()
    signed_at = data.signed_at.astimezone(dt.UTC) if data.signed_at else now
    if signed_at > now + dt.timedelta(minutes=5):
        raise ValidationFailed("signed_at is in the future", field="signed_at")
    if signed_at < course.created_at - dt.timedelta(days=1):
        raise ValidationFailed("signed_at is before the course was planned", field="signed_at")
    previous = consent_on_file(session=session, course=course)
    if previous is not None:
        if signed_at < previous.signed_at:
            raise ValidationFailed(
                f"signed_at is before the consent on file (consent {previous.id}, signed "
                f"{previous.signed_at.isoformat()}), which a new consent replaces",
                field="signed_at",
            )
        previous.superseded_at = max(now, previous.signed_at)
        # Flushed before the new row: the unique index allows one consent on file at a time.
        session.flush()
        audit.record(
            session,
            principal.actor,
            action="U",
            event="consent.supersede",
            entity_type="Consent",
            entity_id=previous.id,
            patient_id=course.patient_id,
        )
    consent = Consent(
        clinic_id=course.clinic_id,
        course_id=course.id,
        patient_id=course.patient_id,
        signed_at=signed_at,
        recorded_by_user_id=principal.user_id,
        recorded_by_name=principal.display_name,
        text_version=text.version,
        items=acknowledged,
        created_at=now,
    )
    session.add(consent)
    session.flush()
    audit.record(
        session,
        principal.actor,
        action="C",
        event="consent.create",
        entity_type="Consent",
        entity_id=consent.id,
        patient_id=course.patient_id,
    )
    return consent


def withdraw_consent(*, session: Session, principal: Principal, course_id: int) -> Consent:
    """Mark the course's consent withdrawn: later sessions cannot be done until a new one."""
    _require_writer(principal)
    course = access_course_by_id(
        session=session, principal=principal, course_id=course_id, event="consent.withdraw"
    )
    consent = consent_on_file(session=session, course=course)
    if consent is None:
        raise ConsentMissing("there is no consent on file to withdraw")
    consent.withdrawn_at = max(utcnow(), consent.signed_at)
    session.flush()
    audit.record(
        session,
        principal.actor,
        action="U",
        event="consent.withdraw",
        entity_type="Consent",
        entity_id=consent.id,
        patient_id=course.patient_id,
    )
    return consent


def list_courses(
    *,
    session: Session,
    principal: Principal,
    patient_id: int | None = None,
    status: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[Sequence[TreatmentCourse], int]:
    """Courses the principal may see, newest first; returns (page, total)."""
    stmt = select(TreatmentCourse)
    if principal.role == "patient":
        stmt = stmt.where(TreatmentCourse.patient_id == principal.patient_id)
    elif principal.role in STAFF:
        stmt = stmt.where(TreatmentCourse.clinic_id == principal.clinic_id)
    else:
        stmt = stmt.where(TreatmentCourse.id.is_(None))
    if patient_id is not None:
        stmt = stmt.where(TreatmentCourse.patient_id == patient_id)
    if status is not None:
        stmt = stmt.where(TreatmentCourse.status == status)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = session.scalars(
        stmt.order_by(TreatmentCourse.created_at.desc(), TreatmentCourse.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    audit.record(
        session,
        principal.actor,
        action="R",
        event="course.search",
        entity_type="CarePlan",
        patient_id=patient_id,
        detail=f"{len(rows)} of {total} shown",
    )
    return rows, total


def procedures_by_appointment(*, session: Session, course: TreatmentCourse) -> dict[int, int]:
    """{appointment id: procedure id} for the course's procedure records (newest wins)."""
    rows = session.execute(
        select(Procedure.appointment_id, Procedure.id)
        .where(Procedure.course_id == course.id, Procedure.appointment_id.is_not(None))
        .order_by(Procedure.id)
    ).all()
    return {int(appointment): int(procedure) for appointment, procedure in rows}


def procedure_records_of_appointment(*, session: Session, appointment_id: int) -> list[Procedure]:
    """Every procedure record (draft, signed, amendment) documenting the visit, oldest first.

    Unaudited: scheduling asks it to refuse cancelling a documented visit, and shows only
    the records' ids and statuses, never their clinical content.
    """
    return list(
        session.scalars(
            select(Procedure)
            .where(Procedure.appointment_id == appointment_id)
            .order_by(Procedure.id)
        )
    )
