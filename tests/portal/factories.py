"""Courses, sessions and answers for the portal tests (flushed, never committed)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from prolo.clinic.models import Clinic
from prolo.courses.models import TreatmentCourse
from prolo.patients.models import Patient
from prolo.scheduling.models import Appointment
from tests.factories import make_practitioner


def make_course(
    session: Session,
    clinic: Clinic,
    patient: Patient,
    *,
    condition_id: str = "knee-osteoarthritis",
    status: str = "active",
    created_at: dt.datetime | None = None,
    ended_on: dt.date | None = None,
) -> TreatmentCourse:
    course = TreatmentCourse(
        clinic_id=clinic.id,
        patient_id=patient.id,
        condition_id=condition_id,
        status=status,
        stop_reason="patient_choice" if status == "stopped" else None,
        planned_sessions=4,
        interval_weeks_min=4,
        interval_weeks_max=6,
        injectate="Dextrose 12.5% (test)",
        ended_on=ended_on,
    )
    if created_at is not None:
        course.created_at = created_at
    session.add(course)
    session.flush()
    return course


def make_session(
    session: Session,
    clinic: Clinic,
    patient: Patient,
    starts_at: dt.datetime,
    *,
    course: TreatmentCourse | None = None,
    status: str = "fulfilled",
    kind: str = "injection",
) -> Appointment:
    practitioner = make_practitioner(session, clinic)
    appointment = Appointment(
        clinic_id=clinic.id,
        patient_id=patient.id,
        practitioner_id=practitioner.id,
        course_id=course.id if course else None,
        kind=kind,
        status=status,
        starts_at=starts_at,
        ends_at=starts_at + dt.timedelta(minutes=30),
    )
    session.add(appointment)
    session.flush()
    return appointment
