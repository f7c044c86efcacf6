"""FHIR Appointment update on a visit with a procedure record: cancelling it or marking it
a no-show is a 409 OperationOutcome naming the appointment and the record, until a draft
is discarded; a signed record keeps its visit. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from prolo.scheduling.models import Appointment
from tests.factories import make_user, token_for
from tests.fhir.conftest import World
from tests.fhir.test_procedure_consent_write import (
    injection_visit,
    outcome,
    performer_headers,
    session_of,
)


def documented_visit(
    client: TestClient, session: Session, world: World, *, status: str, record: str
) -> tuple[Appointment, dict[str, Any], dict[str, Any]]:
    """A started visit with a record made through FHIR (``in-progress`` is a draft,
    ``completed`` signed at once); returns the visit, its FHIR resource and the record."""
    visit = injection_visit(session, world)
    visit.status, visit.room_id = status, world.room.id  # FHIR Appointment needs a Location
    session.flush()
    r = client.post(
        "/fhir/Procedure",
        json=session_of(world, visit, status=record),
        headers=performer_headers(session, world),
    )
    assert r.status_code == 201, r.text
    resource = client.get(f"/fhir/Appointment/{visit.id}", headers=world.headers)
    assert resource.status_code == 200, resource.text
    return visit, resource.json(), r.json()


def put_status(client: TestClient, world: World, resource: dict[str, Any], status: str) -> Any:
    return client.put(
        f"/fhir/Appointment/{resource['id']}",
        json={**resource, "status": status},
        headers=world.headers,
    )


def stored_status(session: Session, visit: Appointment) -> str:
    session.expire_all()
    return session.get_one(Appointment, visit.id).status


def test_a_drafted_visit_is_cancelled_or_missed_only_after_the_draft_is_discarded(
    client: TestClient, session: Session, world: World
) -> None:
    visit, resource, draft = documented_visit(
        client, session, world, status="booked", record="in-progress"
    )
    for status, words in (
        ("cancelled", "cannot be cancelled"),
        ("noshow", "cannot be marked a no-show"),
    ):
        diagnostics = outcome(put_status(client, world, resource, status), 409, "conflict")[
            "diagnostics"
        ]
        assert f"appointment {visit.id} {words}" in diagnostics
        assert f"draft procedure record {draft['id']}" in diagnostics
        assert "discards the draft first" in diagnostics
    assert stored_status(session, visit) == "booked"
    clinician = make_user(session, world.clinic, "clinician")
    r = client.delete(f"/api/procedures/{draft['id']}", headers=token_for(session, clinician))
    assert r.status_code == 204, r.text
    r = put_status(client, world, resource, "cancelled")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    assert stored_status(session, visit) == "cancelled"


def test_a_visit_with_a_signed_record_is_never_cancelled(
    client: TestClient, session: Session, world: World
) -> None:
    visit, resource, signed = documented_visit(
        client, session, world, status="arrived", record="completed"
    )
    diagnostics = outcome(put_status(client, world, resource, "cancelled"), 409, "conflict")[
        "diagnostics"
    ]
    assert f"appointment {visit.id} cannot be cancelled" in diagnostics
    assert f"procedure record {signed['id']} is signed" in diagnostics
    assert "amendment" in diagnostics
    assert stored_status(session, visit) == "arrived"
    # the refusal is about the record, not the move: an undocumented arrived visit cancels
    starts = visit.starts_at - dt.timedelta(hours=2)
    other = Appointment(
        clinic_id=world.clinic.id,
        patient_id=world.patient.id,
        practitioner_id=world.practitioner.id,
        room_id=world.room.id,
        kind="injection",
        status="arrived",
        starts_at=starts,
        ends_at=starts + dt.timedelta(minutes=30),
    )
    session.add(other)
    session.flush()
    plain = client.get(f"/fhir/Appointment/{other.id}", headers=world.headers).json()
    r = put_status(client, world, plain, "cancelled")
    assert r.status_code == 200, r.text
    assert stored_status(session, other) == "cancelled"
