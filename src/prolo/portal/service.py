"""Questionnaire use cases: submit and read responses and scores, what is due, the
clinic's schedule and licensed wording. Each runs inside the caller's transaction and
writes its audit row there.

Who may do what:

- a patient reads and answers their own questionnaires;
- clinicians and admins read and enter those of their clinic's patients;
- front desk and researchers see no scores (clinical data; researchers get the
  de-identified registry instead).
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from prolo.clinic.models import Clinic
from prolo.courses.models import TreatmentCourse
from prolo.db import utcnow
from prolo.errors import AccessDenied, Conflict, Forbidden, NotFound, ValidationFailed
from prolo.instruments.base import Instrument, ItemError, NotScorable, ScoreSet
from prolo.instruments.catalog import get_instrument, instruments
from prolo.instruments.questionnaire import is_structure_only, load_questionnaire
from prolo.instruments.texts import LicensedTextError, merge_licensed_text, parse_licensed_text
from prolo.patients import service as patients
from prolo.patients.models import Patient
from prolo.portal import schedule
from prolo.portal.answers import check_draft, score_complete
from prolo.portal.models import (
    DueScheduleSetting,
    InstrumentText,
    QuestionnaireResponse,
    Score,
)
from prolo.portal.schemas import DraftUpdateIn, ResponseIn, ScheduleIn
from prolo.scheduling.models import Appointment
from prolo.security import audit
from prolo.security.principal import CLINICAL, Principal

READERS = CLINICAL | {"patient"}


# --- errors in the API's words ------------------------------------------------------


def item_problem(error: ItemError | NotScorable) -> ValidationFailed:
    """A scoring error as a 422 naming the item(s); nothing about the values."""
    if isinstance(error, ItemError):
        return ValidationFailed(
            f"{error.item}: {error.message}",
            field=f"answers.{error.item}",
            extra={"item": error.item},
        )
    return ValidationFailed(
        f"not scorable: {error.message}",
        errors=[{"field": f"answers.{i}", "message": error.message} for i in error.items]
        or [{"field": "answers", "message": error.message}],
        extra={"items": list(error.items)},
    )


def instrument_or_error(instrument_id: str, *, field: str = "instrument_id") -> Instrument:
    """The catalog's instrument, or a 422 naming the field."""
    try:
        return get_instrument(instrument_id)
    except KeyError:
        raise ValidationFailed("unknown instrument", field=field) from None


def score_answers(instrument: Instrument, answers: Mapping[str, object]) -> ScoreSet:
    """Score a complete answer set; 422 naming the item when it cannot be scored."""
    try:
        return score_complete(instrument, answers)
    except (ItemError, NotScorable) as error:
        raise item_problem(error) from None


# --- access -------------------------------------------------------------------------


def access_patient_outcomes(
    *, session: Session, principal: Principal, patient_id: int, event: str
) -> Patient:
    """The patient whose questionnaires ``principal`` may see; audited as ``event``."""
    if principal.role not in READERS:
        raise Forbidden("your role may not see questionnaire answers or scores")
    return patients.access_patient_by_id(
        session=session, principal=principal, patient_id=patient_id, event=event
    )


def access_response_by_id(
    *, session: Session, principal: Principal, patient_id: int, response_id: int, event: str
) -> QuestionnaireResponse:
    """One response of the patient, if ``principal`` may see it; AccessDenied otherwise."""
    patient = access_patient_outcomes(
        session=session, principal=principal, patient_id=patient_id, event=event
    )
    response = session.get(QuestionnaireResponse, response_id)
    if response is None or response.patient_id != patient.id:
        raise AccessDenied(
            "no such questionnaire response",
            entity_type="QuestionnaireResponse",
            entity_id=response_id,
        )
    return response


def _course_of(session: Session, patient: Patient, course_id: int | None) -> int | None:
    if course_id is None:
        return None
    course = session.get(TreatmentCourse, course_id)
    if course is None or course.patient_id != patient.id:
        raise ValidationFailed("no such treatment course for this patient", field="course_id")
    return course.id


# --- responses ----------------------------------------------------------------------


@dataclass(frozen=True)
class Submitted:
    """A stored response and whether this call created it (False: a replay)."""

    response: QuestionnaireResponse
    created: bool
    scores: list[Score] | None = None  # the stored scores, when this call stored them


def _store_scores(
    session: Session, response: QuestionnaireResponse, scores: ScoreSet
) -> list[Score]:
    rows = [
        Score(
            response_id=response.id,
            patient_id=response.patient_id,
            instrument_id=response.instrument_id,
            score_key=score.key,
            value=score.value,
            effective_at=response.authored_at,
        )
        for score in scores.scores
    ]
    session.add_all(rows)
    session.flush()
    return rows


def _audit(
    session: Session, principal: Principal, response: QuestionnaireResponse, action: str, event: str
) -> None:
    audit.record(
        session,
        principal.actor,
        action=action,
        event=event,
        entity_type="QuestionnaireResponse",
        entity_id=response.id,
        patient_id=response.patient_id,
    )


def _same_submission(
    response: QuestionnaireResponse, data: ResponseIn, course_id: int | None
) -> bool:
    return (
        response.instrument_id == data.instrument_id
        and response.timepoint == data.timepoint
        and response.course_id == course_id
        and response.status == data.status
        and {k: v for k, v in response.answers.items() if v is not None}
        == {k: v for k, v in data.answers.items() if v is not None}
    )


def submit_response(
    *,
    session: Session,
    principal: Principal,
    patient_id: int,
    data: ResponseIn,
    now: dt.datetime | None = None,
) -> Submitted:
    """Store a response (and, when completed, its scores) in the caller's transaction.

    With an idempotency key, a retry of the same submission returns the stored one
    (``created=False``); the key on a different submission is a Conflict. A key that
    names a draft of the same instrument updates (and may complete) that draft.
    Nothing is stored when an answer is wrong or the set cannot be scored.
    """
    if principal.role not in READERS:
        raise Forbidden("your role may not enter questionnaire answers")
    patient = access_patient_outcomes(
        session=session, principal=principal, patient_id=patient_id, event="questionnaire.write"
    )
    instrument = instrument_or_error(data.instrument_id)
    course_id = _course_of(session, patient, data.course_id)
    if data.idempotency_key is not None:
        existing = session.scalar(
            select(QuestionnaireResponse).where(
                QuestionnaireResponse.patient_id == patient.id,
                QuestionnaireResponse.idempotency_key == data.idempotency_key,
            )
        )
        if existing is not None:
            if existing.status == "in-progress" and existing.instrument_id == instrument.id:
                update = DraftUpdateIn(answers=data.answers, status=data.status)
                return Submitted(_update(session, principal, existing, update, now), False)
            if _same_submission(existing, data, course_id):
                return Submitted(existing, False)
            raise Conflict(
                "this idempotency key was already used for a different submission",
                field="idempotency_key",
            )
    authored = data.authored_at or now or utcnow()
    if data.status == "completed":
        scores: ScoreSet | None = score_answers(instrument, data.answers)
        answers = check_draft(instrument, data.answers)
    else:
        scores = None
        answers = _draft_answers(instrument, data.answers)
    response = QuestionnaireResponse(
        clinic_id=patient.clinic_id,
        patient_id=patient.id,
        course_id=course_id,
        instrument_id=instrument.id,
        timepoint=data.timepoint,
        status=data.status,
        answers=answers,
        authored_at=authored,
        idempotency_key=data.idempotency_key,
    )
    if data.idempotency_key is None:
        # Without a key no concurrent retry can collide, so no savepoint (two round
        # trips on every submission) is needed.
        session.add(response)
        session.flush()
    else:
        try:
            with session.begin_nested():
                session.add(response)
                session.flush()
        except IntegrityError:
            # A concurrent retry with the same key won the race: answer with its row.
            winner = session.scalar(
                select(QuestionnaireResponse).where(
                    QuestionnaireResponse.patient_id == patient.id,
                    QuestionnaireResponse.idempotency_key == data.idempotency_key,
                )
            )
            if winner is None or not _same_submission(winner, data, course_id):
                raise Conflict(
                    "this idempotency key was already used for a different submission",
                    field="idempotency_key",
                ) from None
            return Submitted(winner, False)
    stored = _store_scores(session, response, scores) if scores is not None else []
    _audit(session, principal, response, "C", "questionnaire_response.create")
    return Submitted(response, True, stored)


def _draft_answers(instrument: Instrument, answers: Mapping[str, object]) -> dict[str, Any]:
    try:
        return dict(check_draft(instrument, answers))
    except ItemError as error:
        raise item_problem(error) from None


def _update(
    session: Session,
    principal: Principal,
    response: QuestionnaireResponse,
    data: DraftUpdateIn,
    now: dt.datetime | None,
) -> QuestionnaireResponse:
    if response.status != "in-progress":
        raise Conflict("this response is completed and can no longer change", field="status")
    instrument = instrument_or_error(response.instrument_id)
    if data.status == "completed":
        scores = score_answers(instrument, data.answers)
        response.answers = dict(check_draft(instrument, data.answers))
        response.status = "completed"
        response.authored_at = now or utcnow()
        session.flush()
        _store_scores(session, response, scores)
        _audit(session, principal, response, "U", "questionnaire_response.complete")
    else:
        response.answers = _draft_answers(instrument, data.answers)
        session.flush()
        _audit(session, principal, response, "U", "questionnaire_response.save")
    return response


def update_draft(
    *,
    session: Session,
    principal: Principal,
    patient_id: int,
    response_id: int,
    data: DraftUpdateIn,
    now: dt.datetime | None = None,
) -> QuestionnaireResponse:
    """Save a draft's new answers, or complete and score it; Conflict once completed."""
    response = access_response_by_id(
        session=session,
        principal=principal,
        patient_id=patient_id,
        response_id=response_id,
        event="questionnaire.write",
    )
    return _update(session, principal, response, data, now)


def find_draft(
    *,
    session: Session,
    patient_id: int,
    instrument_id: str,
    timepoint: str,
    course_id: int | None,
) -> QuestionnaireResponse | None:
    """The newest in-progress response for this item (the caller has checked access)."""
    stmt = select(QuestionnaireResponse).where(
        QuestionnaireResponse.patient_id == patient_id,
        QuestionnaireResponse.instrument_id == instrument_id,
        QuestionnaireResponse.timepoint == timepoint,
        QuestionnaireResponse.status == "in-progress",
    )
    if course_id is None:
        stmt = stmt.where(QuestionnaireResponse.course_id.is_(None))
    else:
        stmt = stmt.where(QuestionnaireResponse.course_id == course_id)
    return session.scalars(stmt.order_by(QuestionnaireResponse.id.desc()).limit(1)).first()


def scores_of(session: Session, response_ids: Sequence[int]) -> dict[int, list[Score]]:
    """Scores keyed by response id (the caller has checked access and audited)."""
    found: dict[int, list[Score]] = {rid: [] for rid in response_ids}
    if not response_ids:
        return found
    rows = session.scalars(
        select(Score).where(Score.response_id.in_(response_ids)).order_by(Score.id)
    ).all()
    for row in rows:
        found[row.response_id].append(row)
    return found


def list_responses(
    *,
    session: Session,
    principal: Principal,
    patient_id: int,
    instrument_id: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[QuestionnaireResponse]:
    """The patient's responses, newest first."""
    patient = access_patient_outcomes(
        session=session, principal=principal, patient_id=patient_id, event="questionnaire.read"
    )
    stmt = select(QuestionnaireResponse).where(QuestionnaireResponse.patient_id == patient.id)
    if instrument_id is not None:
        stmt = stmt.where(QuestionnaireResponse.instrument_id == instrument_id)
    stmt = stmt.order_by(QuestionnaireResponse.authored_at.desc(), QuestionnaireResponse.id.desc())
    return list(session.scalars(stmt.limit(limit).offset(offset)).all())


def list_scores(
    *,
    session: Session,
    principal: Principal,
    patient_id: int,
    instrument_id: str | None = None,
) -> list[Score]:
    """The patient's scores (Observations), oldest first."""
    patient = access_patient_outcomes(
        session=session, principal=principal, patient_id=patient_id, event="score.read"
    )
    stmt = select(Score).where(Score.patient_id == patient.id)
    if instrument_id is not None:
        stmt = stmt.where(Score.instrument_id == instrument_id)
    return list(session.scalars(stmt.order_by(Score.effective_at, Score.id)).all())


def request_questionnaire(
    *,
    session: Session,
    principal: Principal,
    patient_id: int,
    instrument_id: str,
    course_id: int | None = None,
) -> QuestionnaireResponse:
    """A clinician asks the patient to answer an instrument now (an empty ``ad_hoc`` draft).

    An open request for the same instrument is returned rather than duplicated.
    """
    if principal.role not in CLINICAL:
        raise Forbidden("only clinicians and admins may request a questionnaire")
    patient = access_patient_outcomes(
        session=session, principal=principal, patient_id=patient_id, event="questionnaire.request"
    )
    instrument = instrument_or_error(instrument_id)
    course = _course_of(session, patient, course_id)
    open_request = find_draft(
        session=session,
        patient_id=patient.id,
        instrument_id=instrument.id,
        timepoint="ad_hoc",
        course_id=course,
    )
    if open_request is not None:
        return open_request
    response = QuestionnaireResponse(
        clinic_id=patient.clinic_id,
        patient_id=patient.id,
        course_id=course,
        instrument_id=instrument.id,
        timepoint="ad_hoc",
        status="in-progress",
        answers={},
        authored_at=utcnow(),
        idempotency_key=f"request-{secrets.token_urlsafe(12)}",
    )
    session.add(response)
    session.flush()
    _audit(session, principal, response, "C", "questionnaire.request")
    return response


# --- what is due --------------------------------------------------------------------


def clinic_zone(session: Session, clinic_id: int) -> ZoneInfo:
    """The clinic's time zone (UTC when the clinic row is missing)."""
    clinic = session.get(Clinic, clinic_id)
    return ZoneInfo(clinic.timezone) if clinic is not None else ZoneInfo("UTC")


def schedule_settings(session: Session, clinic_id: int) -> schedule.ScheduleSettings:
    """The clinic's questionnaire schedule, or the defaults."""
    row = session.get(DueScheduleSetting, clinic_id)
    if row is None:
        return schedule.ScheduleSettings()
    return schedule.ScheduleSettings(
        pre_session=row.pre_session,
        follow_up_days=tuple(
            sorted(((k, int(v)) for k, v in row.follow_up_days.items()), key=lambda kv: kv[1])
        ),
        open_days_before=row.open_days_before,
        due_hours_before_session=row.due_hours_before_session,
        follow_up_due_days=row.follow_up_due_days,
        last_follow_up_grace_days=row.last_follow_up_grace_days,
    )


def update_schedule_settings(
    *, session: Session, principal: Principal, data: ScheduleIn
) -> schedule.ScheduleSettings:
    """Replace the clinic's questionnaire schedule (admins only)."""
    if principal.role != "admin":
        raise Forbidden("only an administrator may change the questionnaire schedule")
    follow_ups = dict(sorted(data.follow_up_days.items(), key=lambda kv: kv[1]))
    try:
        checked = schedule.ScheduleSettings(
            pre_session=data.pre_session,
            follow_up_days=tuple(follow_ups.items()),
            open_days_before=data.open_days_before,
            due_hours_before_session=data.due_hours_before_session,
            follow_up_due_days=data.follow_up_due_days,
            last_follow_up_grace_days=data.last_follow_up_grace_days,
        )
    except ValueError as error:
        raise ValidationFailed(str(error), field="follow_up_days") from None
    if [name for name, _ in checked.follow_up_days] != [
        f for f in schedule.FOLLOW_UPS if f in follow_ups
    ]:
        raise ValidationFailed(
            "follow-ups must come in the order week_6, month_3, month_6, month_12",
            field="follow_up_days",
        )
    row = session.get(DueScheduleSetting, principal.clinic_id)
    if row is None:
        row = DueScheduleSetting(clinic_id=principal.clinic_id)
        session.add(row)
    row.pre_session = checked.pre_session
    row.follow_up_days = dict(checked.follow_up_days)
    row.open_days_before = checked.open_days_before
    row.due_hours_before_session = checked.due_hours_before_session
    row.follow_up_due_days = checked.follow_up_due_days
    row.last_follow_up_grace_days = checked.last_follow_up_grace_days
    row.updated_at = utcnow()
    session.flush()
    audit.record(
        session,
        principal.actor,
        action="U",
        event="schedule.update",
        entity_type="DueScheduleSetting",
        entity_id=principal.clinic_id,
    )
    return checked


def condition_instruments(condition_id: str) -> tuple[str, ...]:
    """The condition's default instruments from the knowledge base that prolo can score."""
    from prolo.knowledge.loader import load_conditions

    condition = load_conditions().get(condition_id)
    known = instruments()
    listed = condition.instruments if condition is not None else ("pain-nrs",)
    return tuple(i for i in listed if i in known) or ("pain-nrs",)


def _courses(session: Session, patient_ids: Sequence[int]) -> dict[int, list[schedule.Course]]:
    # Courses and their sessions are read here directly: the schedule needs only a
    # few columns, and the courses domain has no read service yet.
    found: dict[int, list[schedule.Course]] = {pid: [] for pid in patient_ids}
    if not patient_ids:
        return found
    courses = session.scalars(
        select(TreatmentCourse)
        .where(TreatmentCourse.patient_id.in_(patient_ids))
        .order_by(TreatmentCourse.id)
    ).all()
    sessions: dict[int, list[schedule.Session]] = {c.id: [] for c in courses}
    if courses:
        rows = session.execute(
            select(Appointment.course_id, Appointment.id, Appointment.starts_at, Appointment.status)
            .where(
                Appointment.course_id.in_([c.id for c in courses]),
                Appointment.kind == "injection",
            )
            .order_by(Appointment.starts_at)
        ).all()
        for course_id, appt_id, starts_at, status in rows:
            sessions[course_id].append(schedule.Session(appt_id, starts_at, status))
    for course in courses:
        found[course.patient_id].append(
            schedule.Course(
                id=course.id,
                status=course.status,
                created_at=course.created_at,
                ended_on=course.ended_on,
                instruments=condition_instruments(course.condition_id),
                sessions=tuple(sessions[course.id]),
            )
        )
    return found


def _answered(session: Session, patient_ids: Sequence[int]) -> dict[int, list[schedule.Answered]]:
    found: dict[int, list[schedule.Answered]] = {pid: [] for pid in patient_ids}
    if not patient_ids:
        return found
    rows = session.execute(
        select(
            QuestionnaireResponse.patient_id,
            QuestionnaireResponse.id,
            QuestionnaireResponse.instrument_id,
            QuestionnaireResponse.timepoint,
            QuestionnaireResponse.course_id,
            QuestionnaireResponse.authored_at,
            QuestionnaireResponse.status,
        )
        .where(QuestionnaireResponse.patient_id.in_(patient_ids))
        .order_by(QuestionnaireResponse.authored_at, QuestionnaireResponse.id)
    ).all()
    for pid, rid, instrument_id, timepoint, course_id, authored_at, status in rows:
        found[pid].append(
            schedule.Answered(
                rid, instrument_id, timepoint, course_id, authored_at, status == "completed"
            )
        )
    return found


def due_for_patient(
    *,
    session: Session,
    principal: Principal,
    patient_id: int,
    now: dt.datetime | None = None,
) -> list[schedule.DueItem]:
    """Every questionnaire item of the patient's courses with its status now."""
    patient = access_patient_outcomes(
        session=session, principal=principal, patient_id=patient_id, event="questionnaire.due"
    )
    return schedule.due_items(
        _courses(session, [patient.id])[patient.id],
        _answered(session, [patient.id])[patient.id],
        now=now or utcnow(),
        tz=clinic_zone(session, patient.clinic_id),
        settings=schedule_settings(session, patient.clinic_id),
    )


@dataclass(frozen=True)
class PatientDue:
    """One patient's outstanding questionnaires, for the clinic's list."""

    patient: Patient
    items: list[schedule.DueItem]

    @property
    def overdue(self) -> int:
        return sum(1 for i in self.items if i.status == "overdue")


def clinic_outstanding(
    *, session: Session, principal: Principal, now: dt.datetime | None = None, limit: int = 500
) -> list[PatientDue]:
    """The clinic's patients with due or overdue questionnaires, most overdue first."""
    if principal.role not in CLINICAL:
        raise Forbidden("your role may not see questionnaire status")
    active = select(TreatmentCourse.patient_id).where(
        TreatmentCourse.clinic_id == principal.clinic_id,
        TreatmentCourse.status.in_(("planned", "active", "completed", "stopped")),
    )
    drafts = select(QuestionnaireResponse.patient_id).where(
        QuestionnaireResponse.clinic_id == principal.clinic_id,
        QuestionnaireResponse.status == "in-progress",
    )
    patient_rows = session.scalars(
        select(Patient)
        .where(
            Patient.clinic_id == principal.clinic_id,
            Patient.id.in_(active.union(drafts).scalar_subquery()),
        )
        .order_by(Patient.family_name, Patient.given_name, Patient.id)
    ).all()
    ids = [p.id for p in patient_rows]
    courses, answered = _courses(session, ids), _answered(session, ids)
    tz = clinic_zone(session, principal.clinic_id)
    settings = schedule_settings(session, principal.clinic_id)
    moment = now or utcnow()
    found: list[PatientDue] = []
    for patient in patient_rows:
        items = schedule.outstanding(
            schedule.due_items(
                courses[patient.id], answered[patient.id], now=moment, tz=tz, settings=settings
            )
        )
        if items:
            found.append(PatientDue(patient, items))
    found.sort(key=lambda d: -d.overdue)
    audit.record(
        session,
        principal.actor,
        action="R",
        event="questionnaire.due.list",
        entity_type="QuestionnaireResponse",
        detail=f"{len(found)} patients with questionnaires outstanding",
    )
    return found[:limit]


# --- the clinic's licensed wording ----------------------------------------------------


def clinic_questionnaire(session: Session, clinic_id: int, instrument_id: str) -> dict[str, Any]:
    """The instrument's questionnaire with the clinic's licensed wording merged in."""
    questionnaire = load_questionnaire(instrument_id)
    row = session.scalar(
        select(InstrumentText).where(
            InstrumentText.clinic_id == clinic_id, InstrumentText.instrument_id == instrument_id
        )
    )
    if row is None:
        return questionnaire
    texts = parse_licensed_text(instrument_id, row.texts, where="the clinic's wording")
    return merge_licensed_text(questionnaire, texts)


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, Mapping):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    return False


def load_instrument_text(
    *, session: Session, principal: Principal, instrument_id: str, items: Mapping[str, Any]
) -> tuple[InstrumentText, bool]:
    """Store the clinic's licensed wording for an instrument (admins only).

    The wording is validated against the questionnaire first; every problem is
    reported at once. Returns the row and whether the wording is now complete.
    """
    if principal.role != "admin":
        raise Forbidden("only an administrator may load licensed wording")
    try:
        instrument = get_instrument(instrument_id)
    except KeyError:
        raise NotFound("unknown instrument", field="instrument_id") from None
    if _has_nul(items):
        raise ValidationFailed("text must not contain NUL characters", field="items")
    data = {"instrument": instrument.id, "items": dict(items)}
    try:
        texts = parse_licensed_text(instrument.id, data, where="items")
    except LicensedTextError as error:
        raise ValidationFailed(
            "; ".join(error.problems),
            errors=[{"field": "items", "message": p} for p in error.problems],
        ) from None
    row = session.scalar(
        select(InstrumentText).where(
            InstrumentText.clinic_id == principal.clinic_id,
            InstrumentText.instrument_id == instrument.id,
        )
    )
    if row is None:
        row = InstrumentText(clinic_id=principal.clinic_id, instrument_id=instrument.id)
        session.add(row)
    row.texts = data
    row.loaded_by = principal.user_id
    row.loaded_at = utcnow()
    session.flush()
    audit.record(
        session,
        principal.actor,
        action="U",
        event="instrument_text.load",
        entity_type="InstrumentText",
        entity_id=row.id,
    )
    complete = not is_structure_only(merge_licensed_text(load_questionnaire(instrument.id), texts))
    return row, complete


@dataclass(frozen=True)
class DueWindow:
    """One open questionnaire window of a patient's course: what a reminder announces."""

    clinic_id: int
    patient_id: int
    course_id: int | None
    timepoint: str
    instruments: tuple[str, ...]
    opens_at: dt.datetime
    due_by: dt.datetime | None


def open_windows(
    *, session: Session, clinic_id: int, now: dt.datetime | None = None
) -> list[DueWindow]:
    """Every window of the clinic's courses with questionnaires due or overdue now.

    For jobs (reminders), not for people: no principal, audited as the system. Items of
    one course and timepoint are grouped, so a patient gets one reminder per window.
    """
    moment = now or utcnow()
    patient_ids = list(
        session.scalars(
            select(TreatmentCourse.patient_id)
            .where(
                TreatmentCourse.clinic_id == clinic_id,
                TreatmentCourse.status.in_(("planned", "active", "completed", "stopped")),
            )
            .distinct()
        ).all()
    )
    courses, answered = _courses(session, patient_ids), _answered(session, patient_ids)
    tz = clinic_zone(session, clinic_id)
    settings = schedule_settings(session, clinic_id)
    windows: dict[tuple[int, int | None, str, dt.datetime], list[schedule.DueItem]] = {}
    for pid in patient_ids:
        items = schedule.due_items(
            courses[pid], answered[pid], now=moment, tz=tz, settings=settings
        )
        for item in items:
            if item.answerable and item.timepoint != "ad_hoc":
                key = (pid, item.course_id, item.timepoint, item.opens_at)
                windows.setdefault(key, []).append(item)
    audit.record(
        session,
        audit.SYSTEM,
        action="R",
        event="questionnaire.due.scan",
        entity_type="QuestionnaireResponse",
        detail=f"clinic {clinic_id}: {len(windows)} open windows",
    )
    return [
        DueWindow(
            clinic_id=clinic_id,
            patient_id=pid,
            course_id=course_id,
            timepoint=timepoint,
            instruments=tuple(i.instrument_id for i in items),
            opens_at=opens_at,
            due_by=items[0].due_by,
        )
        for (pid, course_id, timepoint, opens_at), items in sorted(
            windows.items(), key=lambda kv: (kv[0][0], kv[0][3])
        )
    ]
