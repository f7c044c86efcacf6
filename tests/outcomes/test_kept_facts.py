"""Kept course facts in the running application: after every kind of write the report
from kept facts equals the report from raw rows and the pandas baseline.

These tests commit, so they use a database of their own (a SQLite file, and a
PostgreSQL database named after the test worker) instead of the rolled-back test
transaction: the refresh reads committed data only, on its own connection.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, delete, func, select, text, update
from sqlalchemy.orm import Session

from prolo.courses.models import TreatmentCourse
from prolo.db import create_db_engine
from prolo.migrate import upgrade
from prolo.outcomes import baseline_pandas, engine, facts, service
from prolo.outcomes.models import CourseFollowUp, OutcomeChange
from prolo.outcomes.report import (
    Aggregates,
    Selection,
    build_report,
    compare_aggregates,
    instrument_rules,
)
from prolo.portal.models import FlareDiaryEntry, QuestionnaireResponse, Score
from prolo.scheduling.models import Appointment
from prolo.settings import Settings
from prolo.synth import SynthConfig, generate
from tests.conftest import fresh_postgres_url

TODAY = dt.date(2026, 6, 1)
RULES = instrument_rules()


def _postgres_url() -> str:
    return fresh_postgres_url("kept")


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Engine]:
    """A migrated database of this test's own, holding a committed synthetic registry."""
    url = f"sqlite:///{tmp_path / 'kept.db'}" if request.param == "sqlite" else _postgres_url()
    bind = create_db_engine(Settings(env="test", database_url=url))
    upgrade(bind)
    with Session(bind) as session, session.begin():
        generate(session, SynthConfig(patients=40, seed=4, today=TODAY, clinics=2))
    facts.reset()
    yield bind
    facts.reset()
    bind.dispose()


def _truth(bind: Engine, selection: Selection) -> tuple[Aggregates, Aggregates]:
    """The raw-row engine's and pandas' aggregates on the committed data."""
    with Session(bind) as session:
        tables = service.load_registry(session=session, clinic_id=selection.clinic_id)
    raw = engine.compute(tables, selection, as_of=TODAY, rules=RULES)
    slow = baseline_pandas.compute(
        baseline_pandas.frames(tables), selection, as_of=TODAY, rules=RULES
    )
    return raw, slow


def _kept(bind: Engine, selection: Selection) -> tuple[Aggregates, facts.Refresh]:
    kept = facts.kept_registry(bind, selection.clinic_id, RULES)
    with kept.lock:
        refresh = kept.refresh(bind)
        local = Selection(**{**selection.__dict__, "clinic_id": None})
        return engine.compute(facts.tables_of(kept), local, as_of=TODAY, rules=RULES), refresh


def _same(bind: Engine, selection: Selection) -> facts.Refresh:
    """Assert kept facts == raw rows == pandas, aggregates and final reports alike."""
    kept, refresh = _kept(bind, selection)
    raw, slow = _truth(bind, selection)
    assert compare_aggregates(kept, raw) == []
    assert compare_aggregates(kept, slow) == []
    reports = [build_report(a, selection=selection, as_of=TODAY, rules=RULES) for a in (kept, slow)]
    assert reports[0] == reports[1]
    return refresh


def _write(bind: Engine, change: Callable[[Session], Any]) -> None:
    with Session(bind) as session, session.begin():
        change(session)


def _a_course(session: Session, status: str = "completed") -> TreatmentCourse:
    course = session.scalars(
        select(TreatmentCourse)
        .where(TreatmentCourse.status == status, TreatmentCourse.started_on.is_not(None))
        .order_by(TreatmentCourse.id)
    ).first()
    assert course is not None
    return course


def test_kept_facts_follow_every_kind_of_write(db: Engine) -> None:
    everyone, one_clinic = Selection(), Selection(clinic_id=1)
    first = _same(db, everyone)
    assert first.full and first.courses > 0
    assert _same(db, one_clinic).full

    with Session(db) as session:
        course = _a_course(session)
        course_id, patient_id, clinic_id = course.id, course.patient_id, course.clinic_id
        started = course.started_on
    assert started is not None

    def new_score(session: Session) -> None:
        when = dt.datetime.combine(started + dt.timedelta(days=200), dt.time(12), dt.UTC)
        response = QuestionnaireResponse(
            clinic_id=clinic_id,
            patient_id=patient_id,
            course_id=course_id,
            instrument_id="pain-nrs",
            timepoint="month_6",
            status="completed",
            answers={"pain-nrs": 0},
            authored_at=when,
        )
        session.add(response)
        session.flush()
        session.add(
            Score(
                response_id=response.id,
                patient_id=patient_id,
                instrument_id="pain-nrs",
                score_key="total",
                value=0.0,
                effective_at=when,
            )
        )

    _write(db, new_score)
    refresh = _same(db, everyone)
    assert (refresh.full, refresh.courses) == (False, 1)  # only the touched course

    # An edited score, a deleted response (its scores go with it), a course stopped, a
    # course's start moved, a follow-up record, diary days added and removed.
    _write(
        db,
        lambda s: s.execute(
            update(Score)
            .values(value=Score.value + 1)
            .where(Score.id == s.scalar(select(func.min(Score.id))))
        ),
    )
    _write(
        db,
        lambda s: s.execute(
            delete(QuestionnaireResponse).where(
                QuestionnaireResponse.id == s.scalar(select(func.max(QuestionnaireResponse.id)))
            )
        ),
    )
    _write(
        db,
        lambda s: s.execute(
            update(TreatmentCourse)
            .where(TreatmentCourse.id == _a_course(s, "active").id)
            .values(status="stopped", stop_reason="no_response", ended_on=TODAY)
        ),
    )
    _write(
        db,
        lambda s: s.execute(
            update(TreatmentCourse)
            .where(TreatmentCourse.id == course_id)
            .values(started_on=started - dt.timedelta(days=30))
        ),
    )
    _write(
        db,
        lambda s: (
            s.add(
                CourseFollowUp(
                    clinic_id=clinic_id,
                    patient_id=patient_id,
                    course_id=course_id,
                    timepoint="month_12",
                    surgery_done=True,
                    pain_medicine_use=False,
                    opioid_use=False,
                    opioid_mme_per_day=0.0,
                )
            )
            if s.scalar(
                select(CourseFollowUp.id).where(
                    CourseFollowUp.course_id == course_id, CourseFollowUp.timepoint == "month_12"
                )
            )
            is None
            else s.execute(
                update(CourseFollowUp)
                .where(CourseFollowUp.course_id == course_id)
                .values(surgery_done=True)
            )
        ),
    )
    _write(
        db,
        lambda s: s.execute(
            delete(FlareDiaryEntry).where(
                FlareDiaryEntry.id == s.scalar(select(func.min(FlareDiaryEntry.id)))
            )
        ),
    )
    _write(
        db,
        lambda s: s.execute(
            update(Appointment)
            .where(
                Appointment.id
                == s.scalar(
                    select(func.max(Appointment.id)).where(Appointment.status == "fulfilled")
                )
            )
            .values(status="noshow")
        ),
    )
    refresh = _same(db, everyone)
    assert not refresh.full and 1 <= refresh.courses <= 7
    _same(db, one_clinic)

    # New courses (another synthetic clinic), then a deleted course.
    _write(
        db,
        lambda s: generate(
            s, SynthConfig(patients=6, seed=9, today=TODAY, clinic_name="Later Clinic")
        ),
    )
    assert _same(db, everyone).courses >= 6
    with Session(db) as session:
        marked = session.scalar(select(func.count()).select_from(OutcomeChange))
        courses = session.scalar(select(func.count()).select_from(TreatmentCourse))
    assert marked == courses  # every course was marked by the triggers


def test_a_report_in_a_transaction_with_its_own_writes_reads_raw_rows(db: Engine) -> None:
    """Uncommitted writes are never kept: the report falls back to the raw rows the
    transaction sees, and after the rollback the kept facts hold no trace of them."""
    everyone = Selection()
    with Session(db) as session:
        before = service.report_for(session=session, selection=everyone, as_of=TODAY)
    assert before["facts"]["source"].startswith("kept")
    with Session(db) as session:
        session.execute(update(Score).values(value=0.0))  # every score 0, not committed
        during = service.report_for(session=session, selection=everyone, as_of=TODAY)
        session.rollback()
    assert during["facts"]["source"].startswith("raw rows")
    pain = next(i for i in during["instruments"] if i["id"] == "pain-nrs")
    assert pain["baseline"]["mean"] == 0
    with Session(db) as session:
        after = service.report_for(session=session, selection=everyone, as_of=TODAY)
    assert after["facts"]["source"].startswith("kept")
    for report in (before, after):
        report.pop("facts")
    assert after == before


def test_replacing_many_courses_rewrites_the_tables_and_keeps_the_numbers() -> None:
    """Replaced rows (edited scores, removed diary days, deleted courses) across a third
    of the registry: the tables are rewritten once deletions pile up, and the kept-fact
    report still equals pandas on the final data."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from prolo.outcomes.report import RegistryTables
    from prolo.synth import registry_tables

    tables = registry_tables(3000, seed=2, as_of=TODAY)
    loaded = engine.load(tables)
    loaded.keep_facts(RULES)
    rng = np.random.default_rng(3)
    ids = np.sort(rng.choice(tables.courses.column("course_id").to_numpy(), 1000, replace=False))
    gone = ids[:50]  # deleted courses: no rows at all any more

    def part(table: pa.Table, keep: np.ndarray) -> pa.Table:
        return table.filter(pc.is_in(table.column("course_id"), value_set=pa.array(keep)))

    def rest(table: pa.Table) -> pa.Table:
        return table.filter(pc.invert(pc.is_in(table.column("course_id"), pa.array(ids))))

    scores = part(tables.scores, ids[50:])
    scores = scores.set_column(
        scores.schema.get_field_index("value"),
        "value",
        pc.min_element_wise(pc.add(scores.column("value"), 1.0), 10.0),
    )
    assert tables.flares is not None
    flares = part(tables.flares, ids[50:])
    flares = flares.filter(pa.array(rng.random(flares.num_rows) < 0.7))
    new = RegistryTables(
        courses=part(tables.courses, ids[50:]),
        scores=scores,
        follow_ups=part(tables.follow_ups, ids[50:]),
        flares=flares,
    )
    for chunk in np.array_split(ids, 4):
        sub = RegistryTables(
            **{
                name: None if getattr(new, name) is None else part(getattr(new, name), chunk)
                for name in ("courses", "scores", "follow_ups", "flares", "adverse_events")
            }
        )
        loaded.replace(sub, chunk.tolist())
    assert loaded.compactions > 0
    final = RegistryTables(
        courses=pa.concat_tables([rest(tables.courses), new.courses]),
        scores=pa.concat_tables([rest(tables.scores), new.scores]),
        follow_ups=pa.concat_tables([rest(tables.follow_ups), new.follow_ups]),
        flares=pa.concat_tables([rest(tables.flares), new.flares]),
    )
    assert not set(gone.tolist()) & set(final.courses.column("course_id").to_pylist())
    kept = engine.compute(loaded, Selection(), as_of=TODAY, rules=RULES)
    loaded.close()
    slow = baseline_pandas.compute(
        baseline_pandas.frames(final), Selection(), as_of=TODAY, rules=RULES
    )
    assert compare_aggregates(kept, slow) == []
    assert kept.n_courses == 3000 - 50


SOURCE_TABLES = (
    "treatment_course",
    "questionnaire_response",
    "score",
    "course_follow_up",
    "appointment",
    "procedure",
    "flare_diary_entry",
)


def test_every_registry_table_marks_its_courses(session: Session) -> None:
    """The change-log triggers exist on every table the report reads. On SQLite a later
    migration that rebuilds one of these tables (batch_alter_table) drops its triggers:
    this test then fails until the migration recreates them."""
    if session.get_bind().dialect.name == "postgresql":
        rows = session.execute(
            text(
                "SELECT c.relname, t.tgname FROM pg_trigger t "
                "JOIN pg_class c ON c.oid = t.tgrelid WHERE NOT t.tgisinternal"
            )
        ).all()
        have = {table for table, name in rows if name == "outcome_change"}
        assert have >= set(SOURCE_TABLES)
    else:
        rows = session.execute(
            text("SELECT tbl_name, name FROM sqlite_master WHERE type = 'trigger'")
        ).all()
        for table in SOURCE_TABLES:
            for event in ("insert", "update", "delete"):
                assert (table, f"outcome_change_{table}_{event}") in rows
