"""A visit with a procedure record took place: it cannot be cancelled, marked a no-show or
moved, through the API or the appointment page; a draft record is discarded first, a
signed one keeps its visit. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy.orm import Session

from prolo.clinic.models import Clinic, Practitioner, Room
from prolo.courses.models import Procedure
from prolo.patients.models import Patient
from prolo.scheduling.models import Appointment
from prolo.security import service as security
from prolo.security.models import User
from tests.factories import (
    make_clinic,
    make_patient,
    make_practitioner,
    make_room,
    make_user,
    set_working_hours,
    token_for,
)


@dataclass
class Clinic_:
    clinic: Clinic
    doctor: Practitioner
    room: Room
    patient: Patient
    desk_user: User
    clinician_user: User
    desk: dict[str, str]
    clinician: dict[str, str]


@pytest.fixture
def c(session: Session) -> Clinic_:
    clinic = make_clinic(session)
    doctor = make_practitioner(session, clinic)
    set_working_hours(session, doctor)  # every day 08:00-18:00 local
    clinician_user = make_user(session, clinic, "clinician")
    clinician_user.practitioner_id = doctor.id
    desk_user = make_user(session, clinic, "front_desk")
    return Clinic_(
        clinic=clinic,
        doctor=doctor,
        room=make_room(session, clinic),
        patient=make_patient(session, clinic),
        desk_user=desk_user,
        clinician_user=clinician_user,
        desk=token_for(session, desk_user),
        clinician=token_for(session, clinician_user),
    )


def started_visit(
    session: Session,
    c: Clinic_,
    *,
    status: str = "booked",
    hours_ago: int = 1,
    patient: Patient | None = None,
) -> Appointment:
    """An injection visit that began ``hours_ago`` hours ago (still booked, or checked in)."""
    now = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    starts = now - dt.timedelta(hours=hours_ago)
    visit = Appointment(
        clinic_id=c.clinic.id,
        patient_id=(patient or c.patient).id,
        practitioner_id=c.doctor.id,
        room_id=c.room.id,
        kind="injection",
        status=status,
        starts_at=starts,
        ends_at=starts + dt.timedelta(minutes=30),
    )
    session.add(visit)
    session.flush()
    return visit


def record_for(
    session: Session, c: Clinic_, visit: Appointment, *, signed: bool, amends: int | None = None
) -> Procedure:
    now = dt.datetime.now(dt.UTC)
    procedure = Procedure(
        clinic_id=c.clinic.id,
        patient_id=c.patient.id,
        appointment_id=visit.id,
        practitioner_id=c.doctor.id,
        performed_at=visit.starts_at,
        status="signed" if signed else "draft",
        details={},
        signed_at=now if signed else None,
        signed_by_user_id=c.clinician_user.id if signed else None,
        signed_by_name="Test clinician" if signed else None,
        amends_id=amends,
        amendment_reason="Wrong side recorded" if amends else None,
    )
    session.add(procedure)
    session.flush()
    return procedure


def status_of(session: Session, visit: Appointment) -> str:
    session.expire_all()
    return session.get_one(Appointment, visit.id).status


def refused(r: Response, visit: Appointment, procedure: Procedure) -> str:
    assert r.status_code == 409, r.text
    body = r.json()
    assert body["code"] == "appointment_status"
    assert (body["appointment_id"], body["procedure_id"]) == (visit.id, procedure.id)
    assert body["procedure_status"] == procedure.status
    detail = str(body["detail"])
    assert f"appointment {visit.id}" in detail and f"record {procedure.id}" in detail
    return detail


def test_a_visit_with_a_draft_record_is_not_cancelled_until_the_draft_is_discarded(
    client: TestClient, session: Session, c: Clinic_
) -> None:
    visit = started_visit(session, c)
    draft = record_for(session, c, visit, signed=False)
    url = f"/api/appointments/{visit.id}"
    detail = refused(client.post(f"{url}/cancel", headers=c.desk), visit, draft)
    assert "cannot be cancelled" in detail and "discards the draft first" in detail
    detail = refused(client.post(f"{url}/no-show", headers=c.desk), visit, draft)
    assert "cannot be marked a no-show" in detail
    later = (visit.starts_at + dt.timedelta(days=2)).isoformat()
    detail = refused(
        client.post(f"{url}/reschedule", json={"starts_at": later}, headers=c.desk), visit, draft
    )
    assert "cannot be moved" in detail
    assert status_of(session, visit) == "booked"
    assert session.get(Procedure, draft.id) is not None
    # the clinician says the session did not take place by discarding the draft
    r = client.delete(f"/api/procedures/{draft.id}", headers=c.clinician)
    assert r.status_code == 204, r.text
    r = client.post(f"{url}/no-show", headers=c.desk)
    assert r.status_code == 200, r.text
    assert status_of(session, visit) == "noshow"


def test_a_visit_with_a_signed_record_stands_and_names_the_current_record(
    client: TestClient, session: Session, c: Clinic_
) -> None:
    visit = started_visit(session, c, status="arrived")
    original = record_for(session, c, visit, signed=True)
    url = f"/api/appointments/{visit.id}"
    detail = refused(client.post(f"{url}/cancel", headers=c.clinician), visit, original)
    assert "is signed" in detail and "amendment" in detail
    amendment = record_for(session, c, visit, signed=True, amends=original.id)
    refused(client.post(f"{url}/cancel", headers=c.desk), visit, amendment)
    assert status_of(session, visit) == "arrived"


def test_an_undocumented_visit_is_cancelled_as_before(
    client: TestClient, session: Session, c: Clinic_
) -> None:
    documented = started_visit(session, c)
    record_for(session, c, documented, signed=False)
    other = started_visit(
        session, c, status="arrived", hours_ago=2, patient=make_patient(session, c.clinic)
    )
    r = client.post(f"/api/appointments/{other.id}/cancel", headers=c.desk)
    assert r.status_code == 200, r.text
    assert status_of(session, other) == "cancelled"
    assert status_of(session, documented) == "booked"


def test_the_appointment_page_shows_the_refusal_next_to_the_action(
    client: TestClient, session: Session, c: Clinic_
) -> None:
    visit = started_visit(session, c)
    draft = record_for(session, c, visit, signed=False)
    secret, row = security.start_web_session(session=session, user=c.desk_user, hours=1)
    client.cookies.set("prolo_session", secret)
    url = f"/calendar/appointments/{visit.id}"
    r = client.post(f"{url}/cancel", data={"csrf_token": row.csrf_token, "reason": "other"})
    assert r.status_code == 409
    assert f"draft procedure record {draft.id}" in r.text
    r = client.post(f"{url}/no-show", data={"csrf_token": row.csrf_token})
    assert r.status_code == 409 and "cannot be marked a no-show" in r.text
    assert status_of(session, visit) == "booked"
