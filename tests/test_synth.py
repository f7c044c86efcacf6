"""The synthetic clinic is deterministic and never double-books."""

from __future__ import annotations

import datetime as dt
import itertools

from sqlalchemy import select
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
