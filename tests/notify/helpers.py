"""Builders for the reminder tests: a clinic with a patient, a practitioner, a room."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.orm import Session

from prolo.clinic.models import Clinic, Practitioner, Room
from prolo.patients.models import Patient
from prolo.scheduling.models import Appointment
from tests.factories import make_clinic, make_patient, make_practitioner, make_room

NOW = dt.datetime(2030, 3, 4, 15, 0, tzinfo=dt.UTC)


@dataclass
class Visit:
    clinic: Clinic
    patient: Patient
    practitioner: Practitioner
    room: Room
    appointment: Appointment


def book(
    session: Session,
    *,
    starts_at: dt.datetime,
    clinic: Clinic | None = None,
    patient: Patient | None = None,
    practitioner: Practitioner | None = None,
    room: Room | None = None,
    email: str | None = "ana.silva@example.com",
) -> Visit:
    """An injection visit of 30 minutes, flushed, without going through booking rules."""
    clinic = clinic or make_clinic(session)
    patient = patient or make_patient(session, clinic, email=email, given_name="Ana")
    practitioner = practitioner or make_practitioner(session, clinic)
    room = room or make_room(session, clinic)
    appointment = Appointment(
        clinic_id=clinic.id,
        patient_id=patient.id,
        practitioner_id=practitioner.id,
        room_id=room.id,
        kind="injection",
        status="booked",
        starts_at=starts_at,
        ends_at=starts_at + dt.timedelta(minutes=30),
    )
    session.add(appointment)
    session.flush()
    return Visit(clinic, patient, practitioner, room, appointment)
