"""The outcomes registry's use cases: the report, evidence beside it, follow-up facts.

Each runs inside the caller's transaction and writes its audit row there. The report
reads the application database through SQLAlchemy into Arrow tables (one query per
table, filtered to the caller's clinic) and hands them to the DuckDB engine; the
routes run it in FastAPI's thread pool, so the event loop stays free while it works.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa
from sqlalchemy import bindparam, func, inspect, select, text, tuple_
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from prolo.courses.models import Procedure, TreatmentCourse
from prolo.errors import AccessDenied, Forbidden, ValidationFailed
from prolo.outcomes import engine, facts
from prolo.outcomes.mme import CONVERSION_FACTORS, OpioidDose, mme_per_day
from prolo.outcomes.models import CourseFollowUp
from prolo.outcomes.report import (
    ADVERSE_EVENT_SCHEMA,
    COURSE_SCHEMA,
    FLARE_SCHEMA,
    FOLLOW_UP_SCHEMA,
    SCORE_SCHEMA,
    RegistryTables,
    Selection,
    build_report,
    instrument_rules,
    primary_score_key,
)
from prolo.portal.models import QuestionnaireResponse, Score
from prolo.scheduling.models import Appointment
from prolo.security import audit
from prolo.security.principal import CLINICAL, Principal

REPORT_ROLES = CLINICAL  # clinicians and admins see their clinic's identifiable registry


# --------------------------------------------------------------------------- #
# reading the registry out of the application database


def _table(rows: Sequence[Sequence[Any]], schema: pa.Schema) -> pa.Table:
    columns: list[Sequence[Any]] = (
        list(zip(*rows, strict=True)) if rows else [() for _ in schema.names]
    )
    arrays = {
        name: pa.array(list(col), type=schema.field(name).type)
        for name, col in zip(schema.names, columns, strict=True)
    }
    return pa.table(arrays, schema=schema)


def load_registry(
    *, session: Session, clinic_id: int | None, course_ids: Sequence[int] | None = None
) -> RegistryTables:
    """The registry tables for one clinic (or every clinic, for CLI use) from the database;
    with ``course_ids``, only those courses' rows (see :mod:`prolo.outcomes.facts`)."""
    only = list(course_ids) if course_ids is not None else None
    course_filter = [TreatmentCourse.clinic_id == clinic_id] if clinic_id is not None else []
    if only is not None:
        course_filter.append(TreatmentCourse.id.in_(only))
    appts: dict[int, int] = dict(
        session.execute(  # type: ignore[arg-type]
            select(Appointment.course_id, func.count())
            .where(
                Appointment.course_id.is_not(None),
                Appointment.kind == "injection",
                Appointment.status == "fulfilled",
                *([Appointment.clinic_id == clinic_id] if clinic_id is not None else []),
                *([Appointment.course_id.in_(only)] if only is not None else []),
            )
            .group_by(Appointment.course_id)
        ).all()
    )
    procedures: dict[int, int] = dict(
        session.execute(  # type: ignore[arg-type]
            select(Procedure.course_id, func.count())
            .where(
                Procedure.course_id.is_not(None),
                Procedure.status.in_(("signed", "amended")),
                Procedure.amends_id.is_(None),
                *([Procedure.clinic_id == clinic_id] if clinic_id is not None else []),
                *([Procedure.course_id.in_(only)] if only is not None else []),
            )
            .group_by(Procedure.course_id)
        ).all()
    )
    course_rows = session.execute(
        select(
            TreatmentCourse.id,
            TreatmentCourse.clinic_id,
            TreatmentCourse.patient_id,
            TreatmentCourse.practitioner_id,
            TreatmentCourse.condition_id,
            TreatmentCourse.injectate,
            TreatmentCourse.status,
            TreatmentCourse.stop_reason,
            TreatmentCourse.planned_sessions,
            TreatmentCourse.started_on,
        )
        .where(*course_filter)
        .order_by(TreatmentCourse.id)
    ).all()
    courses = [
        (*row[:9], max(appts.get(row[0], 0), procedures.get(row[0], 0)), row[9])
        for row in course_rows
    ]
    started = {row[0]: row[9] for row in course_rows}

    rules = instrument_rules()
    keys = [(instrument_id, primary_score_key(instrument_id)) for instrument_id in rules]
    score_rows = session.execute(
        select(
            QuestionnaireResponse.course_id,
            Score.instrument_id,
            QuestionnaireResponse.timepoint,
            Score.effective_at,
            Score.value,
        )
        .join(QuestionnaireResponse, QuestionnaireResponse.id == Score.response_id)
        .join(TreatmentCourse, TreatmentCourse.id == QuestionnaireResponse.course_id)
        .where(
            QuestionnaireResponse.status == "completed",
            tuple_(Score.instrument_id, Score.score_key).in_(keys),
            *course_filter,
        )
    ).all()
    scores = []
    for course_id, instrument_id, timepoint, effective_at, value in score_rows:
        start = started.get(course_id)
        if start is None:
            continue  # a course not started has no timeline to place a score on
        day = (effective_at.astimezone(dt.UTC).date() - start).days
        scores.append((course_id, instrument_id, timepoint, day, value))

    follow_rows = session.execute(
        select(
            CourseFollowUp.course_id,
            CourseFollowUp.timepoint,
            CourseFollowUp.surgery_planned,
            CourseFollowUp.surgery_done,
            CourseFollowUp.pain_medicine_use,
            CourseFollowUp.opioid_use,
            CourseFollowUp.opioid_mme_per_day,
        ).where(
            *([CourseFollowUp.clinic_id == clinic_id] if clinic_id is not None else []),
            *([CourseFollowUp.course_id.in_(only)] if only is not None else []),
        )
    ).all()
    return RegistryTables(
        courses=_table(courses, COURSE_SCHEMA),
        scores=_table(scores, SCORE_SCHEMA),
        follow_ups=_table(follow_rows, FOLLOW_UP_SCHEMA),
        flares=_flares(session, clinic_id, only),
        adverse_events=_adverse_events(session, clinic_id, only),
    )


def _flares(
    session: Session, clinic_id: int | None, only: list[int] | None = None
) -> pa.Table | None:
    """Diary entries per injection session, when the portal's flare diary exists."""
    if not inspect(session.connection()).has_table("flare_diary_entry"):
        return None
    # Read by name: the diary belongs to the portal; the registry only counts it.
    sql = (
        "SELECT a.course_id, e.appointment_id, e.day, e.pain FROM flare_diary_entry e "
        "JOIN appointment a ON a.id = e.appointment_id WHERE a.course_id IS NOT NULL"
    )
    params: dict[str, Any] = {}
    if clinic_id is not None:
        sql += " AND e.clinic_id = :clinic"
        params["clinic"] = clinic_id
    statement = text(sql)
    if only is not None:
        sql += " AND a.course_id IN :only"
        params["only"] = only
        statement = text(sql).bindparams(bindparam("only", expanding=True))
    rows = session.execute(statement, params).all()
    return _table(rows, FLARE_SCHEMA)


def _adverse_events(
    session: Session, clinic_id: int | None, only: list[int] | None = None
) -> pa.Table | None:
    """Adverse events on signed procedure records (``details["adverse_events"][*]["kind"]``).

    A correction is an amendment pointing at the record it corrects; only the newest signed
    record of each chain counts, so an event is never counted twice. None when the clinic
    has no signed procedure record at all (the report then says there is no data).
    """
    rows = session.execute(
        select(Procedure.id, Procedure.amends_id, Procedure.course_id, Procedure.details).where(
            Procedure.course_id.is_not(None),
            Procedure.status.in_(("signed", "amended")),
            *([Procedure.clinic_id == clinic_id] if clinic_id is not None else []),
            *([Procedure.course_id.in_(only)] if only is not None else []),
        )
    ).all()
    if not rows:
        return None
    superseded = {amends for _, amends, _, _ in rows if amends is not None}
    events = []
    for record_id, _, course_id, details in rows:
        if record_id in superseded:
            continue
        for event in (details or {}).get("adverse_events", []) or []:
            kind = event.get("kind") if isinstance(event, dict) else None
            if isinstance(kind, str) and kind:
                events.append((course_id, kind))
    return _table(events, ADVERSE_EVENT_SCHEMA)


# --------------------------------------------------------------------------- #
# the report


def require_report_reader(principal: Principal) -> None:
    """The identifiable registry is for the clinic's clinicians and admins."""
    if principal.role not in REPORT_ROLES:
        raise Forbidden("outcome reports are for clinicians and administrators")


def outcome_report(
    *,
    session: Session,
    principal: Principal,
    selection: Selection,
    as_of: dt.date | None = None,
) -> dict[str, Any]:
    """The outcome report for ``selection`` within the caller's clinic. Audited."""
    require_report_reader(principal)
    selection = Selection(**{**selection.__dict__, "clinic_id": principal.clinic_id})
    report = report_for(session=session, selection=selection, as_of=as_of)
    audit.record(
        session,
        principal.actor,
        action="R",
        event="outcomes.report",
        entity_type="OutcomeReport",
        detail=f"{report['courses']['courses']} courses",
    )
    return report


def report_for(
    *,
    session: Session,
    selection: Selection,
    as_of: dt.date | None = None,
    kept: bool = True,
) -> dict[str, Any]:
    """The report without an access check (CLI and tests; callers audit).

    With ``kept`` (the application), from this process's kept course facts for the
    clinic, refreshed first from the database's change log (:mod:`prolo.outcomes.facts`);
    from the raw rows the caller's transaction sees when that transaction holds registry
    writes of its own. Without ``kept`` (one-shot commands), from the raw rows. Either
    way the numbers are those of the current data; ``report["facts"]`` says which path
    answered and how many courses the refresh brought up to date.
    """
    when = as_of or dt.datetime.now(dt.UTC).date()
    rules = instrument_rules()
    agg, source = None, {"source": "raw rows", "refreshed_courses": 0, "refresh_seconds": 0.0}
    bind = session.get_bind()
    db = bind if isinstance(bind, Engine) else bind.engine
    # An in-memory SQLite database has one connection: no second one to refresh from.
    if kept and not (db.dialect.name == "sqlite" and db.url.database in (None, "", ":memory:")):
        seen = facts.probe(session)
        registry = facts.kept_registry(db, selection.clinic_id, rules)
        with registry.lock:
            refresh = registry.refresh(db)
            source = {
                "source": "raw rows (this transaction holds unsaved registry changes)",
                "refreshed_courses": refresh.courses,
                "refresh_seconds": round(refresh.seconds, 3),
                "full_load": refresh.full,
            }
            if registry.serves(seen):
                # The kept registry holds only this clinic: no clinic filter to apply.
                agg = engine.compute(
                    facts.tables_of(registry),
                    replace(selection, clinic_id=None),
                    as_of=when,
                    rules=rules,
                )
                source["source"] = "kept course facts, refreshed from the database just now"
    if agg is None:
        tables = load_registry(session=session, clinic_id=selection.clinic_id)
        agg = engine.compute(tables, selection, as_of=when, rules=rules)
    report = build_report(agg, selection=selection, as_of=when, rules=rules)
    report["facts"] = source
    report["evidence"] = evidence_beside(report, selection)
    return report


# --------------------------------------------------------------------------- #
# evidence synthesis beside the clinic's own result


def evidence_for(condition_id: str) -> dict[str, Any]:
    """Pooled estimate and forest plot for a condition, or a plain statement why not.

    The synthesis itself (comparable trials, direction, REML with the Hartung-Knapp
    interval) lives in :mod:`prolo.knowledge.synthesis`, which the condition pages share.
    """
    return dict(_evidence_summary(condition_id))  # a copy: callers add the clinic's figure


@functools.lru_cache(maxsize=64)
def _evidence_summary(condition_id: str) -> dict[str, Any]:
    # The knowledge base is read once per process, so a condition's synthesis (REML
    # iterations and an SVG forest plot, ~45 ms for all conditions) never changes
    # while it runs: compute it once rather than on every report.
    from prolo.knowledge.synthesis import evidence_summary

    return evidence_summary(condition_id)


def evidence_beside(report: dict[str, Any], selection: Selection) -> list[dict[str, Any]]:
    """For each condition in the report: the published evidence and the clinic's result."""
    groups = report.get("breakdowns", {}).get("condition_id", [])
    wanted = [selection.condition_id] if selection.condition_id else [g["key"] for g in groups]
    own = {g["key"]: g for g in groups}
    out = []
    for condition_id in wanted:
        entry = evidence_for(condition_id)
        mine = own.get(condition_id)
        entry["clinic"] = mine["change"] if mine else {"n": 0, "mean": None}
        entry["clinic_note"] = (
            "Your clinic's figure is the mean change from baseline in pain (0-10) at each "
            "patient's latest follow-up. It is a before-and-after change without a comparison "
            "group, so it cannot be read as the same kind of number as the trials' differences "
            "between groups."
        )
        out.append(entry)
    return out


# --------------------------------------------------------------------------- #
# follow-up facts: surgery plans and pain medicine


def _course_in_clinic(session: Session, principal: Principal, course_id: int) -> TreatmentCourse:
    course = session.get(TreatmentCourse, course_id)
    if course is None or course.clinic_id != principal.clinic_id:
        raise AccessDenied(
            "no such treatment course", entity_type="TreatmentCourse", entity_id=course_id
        )
    return course


@dataclass(frozen=True)
class FollowUpFacts:
    """What a clinician records at a course timepoint (see :class:`CourseFollowUp`)."""

    timepoint: str
    surgery_planned: bool | None = None
    surgery_done: bool | None = None
    pain_medicine_use: bool | None = None
    opioids: tuple[OpioidDose, ...] = ()
    opioid_use: bool | None = None


def record_follow_up(
    *, session: Session, principal: Principal, course_id: int, facts: FollowUpFacts
) -> CourseFollowUp:
    """Record (or replace) the follow-up facts of a course at one timepoint. Audited."""
    if principal.role not in CLINICAL:
        raise Forbidden("only clinicians and admins record follow-up facts")
    course = _course_in_clinic(session, principal, course_id)
    if facts.timepoint == "baseline" and facts.surgery_done is not None:
        raise ValidationFailed(
            "surgery done is asked at follow-ups, not at baseline", field="surgery_done"
        )
    try:
        mme = mme_per_day(facts.opioids) if facts.opioids else None
    except ValueError as exc:
        raise ValidationFailed(str(exc), field="opioids") from None
    opioid_use = facts.opioid_use if not facts.opioids else True
    if opioid_use is False:
        mme = 0.0
    row = session.scalar(
        select(CourseFollowUp).where(
            CourseFollowUp.course_id == course.id, CourseFollowUp.timepoint == facts.timepoint
        )
    )
    if row is None:
        row = CourseFollowUp(
            clinic_id=course.clinic_id,
            patient_id=course.patient_id,
            course_id=course.id,
            timepoint=facts.timepoint,
        )
        session.add(row)
    row.surgery_planned = facts.surgery_planned
    row.surgery_done = facts.surgery_done
    row.pain_medicine_use = True if facts.opioids else facts.pain_medicine_use
    row.opioid_use = opioid_use
    row.opioid_mme_per_day = mme
    row.opioids = [
        {
            "drug": d.drug,
            "daily_dose": d.daily_dose,
            "unit": CONVERSION_FACTORS[d.drug].unit,
            "factor": CONVERSION_FACTORS[d.drug].factor,
        }
        for d in facts.opioids
    ]
    session.flush()
    audit.record(
        session,
        principal.actor,
        action="U",
        event="course_follow_up.record",
        entity_type="CourseFollowUp",
        entity_id=row.id,
        patient_id=course.patient_id,
    )
    return row


def list_follow_ups(
    *, session: Session, principal: Principal, course_id: int
) -> list[CourseFollowUp]:
    """A course's follow-up facts in timepoint order. Audited."""
    if principal.role not in CLINICAL:
        raise Forbidden("only clinicians and admins read follow-up facts")
    course = _course_in_clinic(session, principal, course_id)
    rows = list(
        session.scalars(select(CourseFollowUp).where(CourseFollowUp.course_id == course.id)).all()
    )
    order = {"baseline": 0, "week_6": 1, "month_3": 2, "month_6": 3, "month_12": 4}
    rows.sort(key=lambda r: order.get(r.timepoint, 9))
    audit.record(
        session,
        principal.actor,
        action="R",
        event="course_follow_up.read",
        entity_type="TreatmentCourse",
        entity_id=course.id,
        patient_id=course.patient_id,
    )
    return rows


def selection_options(
    *, session: Session, principal: Principal
) -> dict[str, list[tuple[str, str]]]:
    """Choices for the report's filters: the clinic's conditions, practitioners, injectates."""
    from prolo.clinic.models import Practitioner
    from prolo.knowledge.loader import load_conditions

    conditions = load_conditions()
    condition_ids = session.scalars(
        select(TreatmentCourse.condition_id)
        .where(TreatmentCourse.clinic_id == principal.clinic_id)
        .distinct()
    ).all()
    practitioners = session.execute(
        select(
            Practitioner.id,
            Practitioner.given_name,
            Practitioner.family_name,
            Practitioner.credentials,
        )
        .where(Practitioner.clinic_id == principal.clinic_id)
        .order_by(Practitioner.family_name, Practitioner.given_name)
    ).all()
    injectates = session.scalars(
        select(TreatmentCourse.injectate)
        .where(TreatmentCourse.clinic_id == principal.clinic_id)
        .distinct()
        .order_by(TreatmentCourse.injectate)
    ).all()
    return {
        "conditions": sorted(
            (
                (cid, conditions[cid].lay_name if cid in conditions else cid)
                for cid in condition_ids
            ),
            key=lambda pair: pair[1],
        ),
        "practitioners": [
            (str(pid), f"{given} {family}" + (f", {cred}" if cred else ""))
            for pid, given, family, cred in practitioners
        ],
        "injectates": [(inj, inj) for inj in injectates],
    }
