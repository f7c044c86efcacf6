"""A small clinic with one record of every mapped kind, for the FHIR tests."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy.orm import Session

from prolo.clinic.models import Clinic, Practitioner, Room
from prolo.courses.models import Consent, Procedure, TreatmentCourse
from prolo.patients.models import Allergy, Diagnosis, Medication, Patient
from prolo.portal.models import QuestionnaireResponse, Score
from prolo.scheduling.models import Appointment, WorkingHours
from prolo.security.models import User
from tests.factories import (
    make_clinic,
    make_patient,
    make_practitioner,
    make_room,
    make_user,
)
from tests.fhir.helpers import fhir_token

NOW = dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.UTC)


@dataclass
class World:
    clinic: Clinic
    practitioner: Practitioner
    room: Room
    patient: Patient
    other: Patient  # another patient of the same clinic
    diagnosis: Diagnosis
    allergy: Allergy
    medication: Medication
    course: TreatmentCourse
    appointment: Appointment
    response: QuestionnaireResponse
    score: Score
    procedure: Procedure
    consent: Consent
    admin: User
    clinician: User
    headers: dict[str, str]  # clinician, fhir + write
    admin_headers: dict[str, str]


def add(session: Session, row: Any) -> Any:
    session.add(row)
    session.flush()
    return row


def build_world(session: Session) -> World:
    clinic = make_clinic(session)
    practitioner = make_practitioner(session, clinic)
    practitioner.npi = f"{1_000_000_000 + practitioner.id}"
    room = make_room(session, clinic)
    patient = make_patient(
        session,
        clinic,
        given_name="Ana",
        family_name="Lopez",
        birth_date=dt.date(1961, 4, 2),
        email="ana.lopez@example.com",
        phone="+1 555 0101",
        city="Springfield",
    )
    other = make_patient(session, clinic, given_name="Bo", family_name="Other")
    diagnosis = add(
        session,
        Diagnosis(
            patient_id=patient.id,
            code_system="icd10cm",
            code="M17.11",
            display="Unilateral primary osteoarthritis, right knee",
            body_site="right knee",
            onset_date=dt.date(2024, 5, 1),
            clinical_status="active",
            condition_id="knee-osteoarthritis",
        ),
    )
    add(
        session,
        Diagnosis(
            patient_id=other.id,
            code_system="icd10cm",
            code="M54.50",
            display="Low back pain, unspecified",
            clinical_status="active",
        ),
    )
    allergy = add(
        session,
        Allergy(patient_id=patient.id, substance="Penicillin", reaction="Rash", criticality="low"),
    )
    medication = add(
        session,
        Medication(
            patient_id=patient.id,
            name="Lisinopril",
            rxnorm="29046",
            dose="10 mg daily",
            status="active",
        ),
    )
    course = add(
        session,
        TreatmentCourse(
            clinic_id=clinic.id,
            patient_id=patient.id,
            practitioner_id=practitioner.id,
            diagnosis_id=diagnosis.id,
            condition_id="knee-osteoarthritis",
            status="active",
            planned_sessions=4,
            interval_weeks_min=4,
            interval_weeks_max=6,
            injectate="Dextrose 12.5% with lidocaine",
            started_on=dt.date(2026, 1, 5),
        ),
    )
    appointment = add(
        session,
        Appointment(
            clinic_id=clinic.id,
            patient_id=patient.id,
            practitioner_id=practitioner.id,
            room_id=room.id,
            course_id=course.id,
            kind="injection",
            status="fulfilled",
            starts_at=NOW,
            ends_at=NOW + dt.timedelta(minutes=30),
        ),
    )
    response = add(
        session,
        QuestionnaireResponse(
            clinic_id=clinic.id,
            patient_id=patient.id,
            course_id=course.id,
            instrument_id="pain-nrs",
            timepoint="baseline",
            status="completed",
            answers={"pain-nrs": 7},
            authored_at=NOW - dt.timedelta(minutes=10),
        ),
    )
    score = add(
        session,
        Score(
            response_id=response.id,
            patient_id=patient.id,
            instrument_id="pain-nrs",
            score_key="total",
            value=7.0,
            effective_at=NOW - dt.timedelta(minutes=10),
        ),
    )
    admin = make_user(session, clinic, "admin")
    clinician = make_user(session, clinic, "clinician")
    procedure = add(
        session,
        Procedure(
            clinic_id=clinic.id,
            patient_id=patient.id,
            course_id=course.id,
            appointment_id=appointment.id,
            practitioner_id=practitioner.id,
            performed_at=NOW,
            status="signed",
            note="Uneventful.",
            signed_at=NOW + dt.timedelta(minutes=40),
            signed_by_user_id=clinician.id,
            signed_by_name="Test clinician",
            body_region="knee",
            details={
                "injectate": {
                    "solution": "dextrose",
                    "concentration_percent": 12.5,
                    "anaesthetic": "lidocaine",
                    "anaesthetic_concentration_percent": 0.2,
                    "total_volume_ml": 10,
                },
                "sites": [{"site_id": "knee-medial-joint-line", "side": "right", "volume_ml": 5}],
            },
        ),
    )
    consent = add(
        session,
        Consent(
            clinic_id=clinic.id,
            course_id=course.id,
            patient_id=patient.id,
            signed_at=NOW - dt.timedelta(days=60),
            recorded_by_user_id=clinician.id,
            recorded_by_name="Test clinician",
            text_version="2026-11-v1",
            items=["not-fda-approved", "pain-flare"],
        ),
    )
    for weekday in range(7):  # the practitioner works every day, all day (clinic time)
        add(
            session,
            WorkingHours(
                practitioner_id=practitioner.id,
                weekday=weekday,
                starts_local=dt.time(0, 0),
                ends_local=dt.time(23, 45),
            ),
        )
    return World(
        clinic=clinic,
        practitioner=practitioner,
        room=room,
        patient=patient,
        other=other,
        diagnosis=diagnosis,
        allergy=allergy,
        medication=medication,
        course=course,
        appointment=appointment,
        response=response,
        score=score,
        procedure=procedure,
        consent=consent,
        admin=admin,
        clinician=clinician,
        headers=fhir_token(session, clinician, "fhir", "write"),
        admin_headers=fhir_token(session, admin, "fhir", "write", "bulk"),
    )


@pytest.fixture
def world(session: Session) -> World:
    return build_world(session)
