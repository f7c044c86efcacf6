"""Test data built through the services, flushed (never committed) so rollback cleans up."""

from __future__ import annotations

import datetime as dt
import itertools

from sqlalchemy.orm import Session

from prolo.clinic.models import Clinic, Practitioner, Room
from prolo.courses.models import TreatmentCourse
from prolo.patients.models import Patient
from prolo.security import service as security
from prolo.security.models import User
from prolo.security.principal import Principal

PASSWORD = "correct-horse-battery-staple"
_seq = itertools.count(1)


def make_clinic(session: Session, name: str = "Test Clinic") -> Clinic:
    clinic = Clinic(name=f"{name} {next(_seq)}", timezone="America/New_York")
    session.add(clinic)
    session.flush()
    return clinic


def make_room(session: Session, clinic: Clinic, name: str = "Room") -> Room:
    room = Room(clinic_id=clinic.id, name=f"{name} {next(_seq)}")
    session.add(room)
    session.flush()
    return room


def make_practitioner(session: Session, clinic: Clinic) -> Practitioner:
    pr = Practitioner(
        clinic_id=clinic.id, given_name="Pat", family_name=f"Doc{next(_seq)}", credentials="MD"
    )
    session.add(pr)
    session.flush()
    return pr


def make_patient(session: Session, clinic: Clinic, **overrides: object) -> Patient:
    n = next(_seq)
    values: dict[str, object] = {
        "clinic_id": clinic.id,
        "mrn": f"T{n:06d}",
        "given_name": "Test",
        "family_name": f"Patient{n}",
        "birth_date": dt.date(1970, 1, 1),
        "sex": "female",
    }
    values.update(overrides)
    patient = Patient(**values)
    session.add(patient)
    session.flush()
    return patient


def make_user(
    session: Session, clinic: Clinic, role: str, *, patient: Patient | None = None
) -> User:
    return security.create_user(
        session=session,
        clinic_id=clinic.id,
        email=f"{role}{next(_seq)}@clinic.example.org",
        password=PASSWORD,
        role=role,
        display_name=f"Test {role}",
        patient_id=patient.id if patient else None,
    )


def principal_for(user: User) -> Principal:
    return Principal(
        user_id=user.id,
        role=user.role,
        clinic_id=user.clinic_id,
        display_name=user.display_name,
        patient_id=user.patient_id,
        practitioner_id=user.practitioner_id,
    )


def token_for(
    session: Session, user: User, scopes: tuple[str, ...] = ("read", "write")
) -> dict[str, str]:
    secret, _ = security.create_api_token(
        session=session, user_id=user.id, name="test", scopes=scopes
    )
    return {"Authorization": f"Bearer {secret}"}


def set_working_hours(
    session: Session,
    practitioner: Practitioner,
    *,
    weekdays: range | tuple[int, ...] = range(7),
    start: dt.time = dt.time(8, 0),
    end: dt.time = dt.time(18, 0),
) -> None:
    """Give a practitioner the same hours (clinic local time) on each of ``weekdays``."""
    from prolo.scheduling.models import WorkingHours

    for weekday in weekdays:
        session.add(
            WorkingHours(
                practitioner_id=practitioner.id, weekday=weekday, starts_local=start, ends_local=end
            )
        )
    session.flush()


def make_course(
    session: Session,
    patient: Patient,
    *,
    sessions: int = 3,
    interval_weeks: tuple[int, int] = (2, 4),
    practitioner: Practitioner | None = None,
    status: str = "planned",
) -> TreatmentCourse:
    """A treatment course for ``patient`` (condition knee-osteoarthritis), flushed."""
    course = TreatmentCourse(
        clinic_id=patient.clinic_id,
        patient_id=patient.id,
        practitioner_id=practitioner.id if practitioner else None,
        condition_id="knee-osteoarthritis",
        status=status,
        planned_sessions=sessions,
        interval_weeks_min=interval_weeks[0],
        interval_weeks_max=interval_weeks[1],
        injectate="Dextrose 15% (test)",
        started_on=dt.datetime.now(dt.UTC).date() if status == "active" else None,
    )
    session.add(course)
    session.flush()
    return course
