"""Who may use the FHIR API: bearer tokens only, scopes, roles, clinics, and a patient's
own compartment; refused reads are audited."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from prolo.security import service as security
from prolo.security.models import AuditEvent
from prolo.web import SESSION_COOKIE
from tests.factories import make_clinic, make_patient, make_user, token_for
from tests.fhir.conftest import World
from tests.fhir.helpers import fhir_token


def test_no_token_is_401_and_a_session_cookie_is_not_enough(
    client: TestClient, session: Session, world: World
) -> None:
    r = client.get("/fhir/Patient")
    assert r.status_code == 401 and r.json()["issue"][0]["code"] == "login"
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = client.get("/fhir/Patient", headers={"Authorization": "Bearer prolo_nonsense"})
    assert r.status_code == 401
    secret, _ = security.start_web_session(session=session, user=world.clinician, hours=1)
    client.cookies.set(SESSION_COOKIE, secret)
    assert client.get("/api/patients").status_code == 200  # the cookie is a valid login
    r = client.get("/fhir/Patient")
    assert r.status_code == 401 and "bearer token" in r.json()["issue"][0]["diagnostics"]


def test_scopes(client: TestClient, session: Session, world: World) -> None:
    plain = token_for(session, world.clinician, scopes=("read", "write"))
    r = client.get("/fhir/Patient", headers=plain)
    assert r.status_code == 403 and "fhir" in r.json()["issue"][0]["diagnostics"]
    read_only = fhir_token(session, world.clinician, "fhir")
    assert client.get("/fhir/Patient", headers=read_only).status_code == 200
    r = client.post(
        "/fhir/Patient",
        json={
            "resourceType": "Patient",
            "name": [{"family": "X", "given": ["Y"]}],
            "birthDate": "1990-01-01",
        },
        headers=read_only,
    )
    assert r.status_code == 403 and "write" in r.json()["issue"][0]["diagnostics"]


def test_a_patient_token_sees_only_its_own_compartment(
    client: TestClient, session: Session, world: World
) -> None:
    me = fhir_token(
        session, make_user(session, world.clinic, "patient", patient=world.patient), "fhir"
    )
    patients = client.get("/fhir/Patient", headers=me).json()
    assert [e["resource"]["id"] for e in patients["entry"]] == [str(world.patient.id)]
    conditions = client.get("/fhir/Condition", headers=me).json()
    assert {e["resource"]["subject"]["reference"] for e in conditions["entry"]} == {
        f"Patient/{world.patient.id}"
    }
    other = client.get(f"/fhir/Patient/{world.other.id}", headers=me)
    assert other.status_code == 404 and world.other.family_name not in other.text
    assert (
        client.get("/fhir/Condition", params={"patient": world.other.id}, headers=me).json()[
            "total"
        ]
        == 0
    )
    assert client.get(f"/fhir/Practitioner/{world.practitioner.id}", headers=me).status_code == 200
    assert client.get("/fhir/AuditEvent", headers=me).status_code == 403
    denied = session.scalars(select(AuditEvent).where(AuditEvent.event == "access.denied")).all()
    assert [(e.entity_type, e.entity_id, e.outcome) for e in denied] == [
        ("Patient", str(world.other.id), "4")
    ]


def test_staff_see_only_their_clinic(client: TestClient, session: Session, world: World) -> None:
    elsewhere = make_clinic(session)
    foreign = make_patient(session, elsewhere)
    r = client.get(f"/fhir/Patient/{foreign.id}", headers=world.headers)
    assert r.status_code == 404 and r.json()["issue"][0]["code"] == "not-found"
    ids = [
        e["resource"]["id"]
        for e in client.get("/fhir/Patient", headers=world.headers).json()["entry"]
    ]
    assert str(foreign.id) not in ids
    theirs = fhir_token(session, make_user(session, elsewhere, "admin"), "fhir")
    assert (
        client.get(f"/fhir/AuditEvent?patient={world.patient.id}", headers=theirs).json()["total"]
        == 0
    )


def test_front_desk_gets_the_calendar_not_the_chart(
    client: TestClient, session: Session, world: World
) -> None:
    desk = fhir_token(session, make_user(session, world.clinic, "front_desk"), "fhir")
    assert client.get("/fhir/Patient", headers=desk).status_code == 200
    assert client.get("/fhir/Appointment", headers=desk).status_code == 200
    r = client.get("/fhir/Condition", headers=desk)
    assert r.status_code == 403 and r.json()["issue"][0]["code"] == "forbidden"
    r = client.get("/fhir/Appointment?_include=Appointment:patient", headers=desk)
    assert r.status_code == 200


def test_researchers_get_no_fhir_access(client: TestClient, session: Session, world: World) -> None:
    researcher = fhir_token(session, make_user(session, world.clinic, "researcher"), "fhir")
    assert client.get("/fhir/Patient", headers=researcher).status_code == 403
    assert client.get("/fhir/metadata").status_code == 200  # the statement is open to all
