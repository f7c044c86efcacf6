"""The synthetic clinic is deterministic and never double-books."""

from __future__ import annotations

import datetime as dt
import itertools

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from prolo.patients.models import Patient
from prolo.portal.models import Score
from prolo.scheduling.models import Appointment
from prolo.synth import SynthConfig, generate

TODAY = dt.date(2026, 6, 1)


def _names(session: Session, clinic_id: int) -> list[tuple[str, str]]:
    return list(
        session.execute(
            select(Patient.given_name, Patient.family_name)
            .where(Patient.clinic_id == clinic_id)
            .order_by(Patient.id)
        ).tuples()
    )


def test_same_seed_same_clinic(session: Session) -> None:
    a = generate(session, SynthConfig(patients=15, seed=3, today=TODAY, batch=4))
    b = generate(session, SynthConfig(patients=15, seed=3, today=TODAY, batch=4))
    assert _names(session, a.clinic_id) == _names(session, b.clinic_id)
    assert a.counts == b.counts
    assert a.counts["patient"] == 15


def test_no_practitioner_room_or_patient_is_double_booked(session: Session) -> None:
    summary = generate(session, SynthConfig(patients=40, seed=5, today=TODAY))
    appts = session.scalars(
        select(Appointment).where(Appointment.clinic_id == summary.clinic_id)
    ).all()
    assert appts
    for key in ("practitioner_id", "room_id", "patient_id"):
        by_key = sorted(appts, key=lambda a: (getattr(a, key), a.starts_at))
        for _, group in itertools.groupby(by_key, key=lambda a: getattr(a, key)):
            items = list(group)
            for first, second in itertools.pairwise(items):
                assert first.ends_at <= second.starts_at, f"{key} double-booked"


def test_scores_stay_in_the_instrument_range(session: Session) -> None:
    summary = generate(session, SynthConfig(patients=20, seed=9, today=TODAY))
    values = session.scalars(
        select(Score.value)
        .join(Patient, Patient.id == Score.patient_id)
        .where(Patient.clinic_id == summary.clinic_id)
    ).all()
    assert values and all(0 <= v <= 10 for v in values)


def test_registry_mode_spreads_patients_over_clinics_and_records_follow_ups(
    session: Session,
) -> None:
    from prolo.outcomes.models import CourseFollowUp
    from prolo.portal.models import QuestionnaireResponse

    summary = generate(
        session, SynthConfig(patients=60, seed=4, today=TODAY, clinics=3, calendar=False, batch=7)
    )
    assert len(summary.clinic_ids) == 3 and summary.counts["patient"] == 60
    per_clinic = {
        cid: session.scalar(select(func.count()).where(Patient.clinic_id == cid))
        for cid in summary.clinic_ids
    }
    assert sorted(per_clinic.values()) == [20, 20, 20]
    facts = session.scalars(
        select(CourseFollowUp).where(CourseFollowUp.clinic_id.in_(summary.clinic_ids))
    ).all()
    assert facts and all(f.timepoint != "baseline" or f.surgery_done is None for f in facts)
    assert all((f.opioid_mme_per_day or 0) == 0 or f.opioid_use for f in facts)
    # Drop-out is monotone: a course that missed a follow-up has no later one.
    order = ["week_6", "month_3", "month_6", "month_12"]
    answered: dict[int, set[str]] = {}
    for course_id, timepoint in session.execute(
        select(QuestionnaireResponse.course_id, QuestionnaireResponse.timepoint).where(
            QuestionnaireResponse.clinic_id.in_(summary.clinic_ids),
            QuestionnaireResponse.timepoint.in_(order),
        )
    ):
        answered.setdefault(course_id, set()).add(timepoint)
    for points in answered.values():
        kept = [tp in points for tp in order]
        assert kept == sorted(kept, reverse=True)


def test_the_vectorised_registry_is_deterministic_and_in_range() -> None:
    from prolo.synth import registry_tables

    a = registry_tables(500, seed=2, as_of=TODAY)
    b = registry_tables(500, seed=2, as_of=TODAY)
    assert a.scores.equals(b.scores) and a.courses.equals(b.courses)
    values = a.scores.column("value").to_pylist()
    instruments = a.scores.column("instrument_id").to_pylist()
    assert all(0 <= v <= 10 for v, i in zip(values, instruments, strict=True) if i == "pain-nrs")
    assert 6 < a.scores.num_rows / a.courses.num_rows < 14  # about ten scores per patient
