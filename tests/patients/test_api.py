"""The patient chart API: validation, authorization and audit, on both databases."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from prolo.security.models import AuditEvent
from tests.factories import make_clinic, make_patient, make_user, token_for

NEW_PATIENT = {
    "given_name": "Maria",
    "family_name": "Lopez",
    "birth_date": "1961-04-02",
    "sex": "female",
    "email": "maria.lopez@example.com",
}


def test_register_search_and_read_a_patient(client: TestClient, session: Session) -> None:
    clinic = make_clinic(session)
    headers = token_for(session, make_user(session, clinic, "clinician"))
    r = client.post("/api/patients", json=NEW_PATIENT, headers=headers)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["mrn"].startswith("MRN")
    r = client.get("/api/patients", params={"q": "lope"}, headers=headers)
    assert r.status_code == 200
    assert [p["id"] for p in r.json()["items"]] == [created["id"]]
    r = client.get(f"/api/patients/{created['id']}", headers=headers)
    assert r.status_code == 200
    assert r.json()["diagnoses"] == [] and r.json()["family_name"] == "Lopez"


def test_bad_input_names_the_field_and_stores_nothing(client: TestClient, session: Session) -> None:
    clinic = make_clinic(session)
    headers = token_for(session, make_user(session, clinic, "clinician"))
    r = client.post(
        "/api/patients", json={**NEW_PATIENT, "birth_date": "2999-01-01"}, headers=headers
    )
    assert r.status_code == 422
    body = r.json()
    assert r.headers["content-type"].startswith("application/problem+json")
    assert body["errors"][0]["field"] == "birth_date"
    assert "future" in body["errors"][0]["message"]
    r = client.get("/api/patients", headers=headers)
    assert r.json()["total"] == 0


def test_duplicate_mrn_is_a_conflict(client: TestClient, session: Session) -> None:
    clinic = make_clinic(session)
    make_patient(session, clinic, mrn="A100")
    headers = token_for(session, make_user(session, clinic, "clinician"))
    r = client.post("/api/patients", json={**NEW_PATIENT, "mrn": "A100"}, headers=headers)
    assert r.status_code == 409
    assert r.json()["errors"] == [{"field": "mrn", "message": r.json()["detail"]}]


def test_diagnosis_needs_a_billable_icd10_code(client: TestClient, session: Session) -> None:
    clinic = make_clinic(session)
    patient = make_patient(session, clinic)
    headers = token_for(session, make_user(session, clinic, "clinician"))
    url = f"/api/patients/{patient.id}/diagnoses"
    r = client.post(url, json={"code": "M17"}, headers=headers)
    assert r.status_code == 422
    assert "billable" in r.json()["detail"]
    r = client.post(url, json={"code": "XYZ.1"}, headers=headers)
    assert r.status_code == 422
    r = client.post(url, json={"code": "m17.11", "body_site": "right knee"}, headers=headers)
    assert r.status_code == 201, r.text
    assert r.json()["code"] == "M17.11"
    assert r.json()["display"] == "Unilateral primary osteoarthritis, right knee"


def test_allergy_and_medication_round_trip(client: TestClient, session: Session) -> None:
    clinic = make_clinic(session)
    patient = make_patient(session, clinic)
    headers = token_for(session, make_user(session, clinic, "clinician"))
    r = client.post(
        f"/api/patients/{patient.id}/allergies",
        json={"substance": "Lidocaine", "criticality": "high"},
        headers=headers,
    )
    assert r.status_code == 201
    r = client.post(
        f"/api/patients/{patient.id}/medications",
        json={"name": "Warfarin", "dose": "5 mg daily"},
        headers=headers,
    )
    assert r.status_code == 201
    med_id = r.json()["id"]
    chart = client.get(f"/api/patients/{patient.id}", headers=headers).json()
    assert [a["substance"] for a in chart["allergies"]] == ["Lidocaine"]
    assert [m["name"] for m in chart["medications"]] == ["Warfarin"]
    r = client.delete(f"/api/patients/{patient.id}/medications/{med_id}", headers=headers)
    assert r.status_code == 204
    assert client.get(f"/api/patients/{patient.id}", headers=headers).json()["medications"] == []


def test_without_a_token_the_api_answers_401(client: TestClient) -> None:
    r = client.get("/api/patients")
    assert r.status_code == 401
    r = client.get("/api/patients", headers={"Authorization": "Bearer prolo_not-a-token"})
    assert r.status_code == 401


def test_a_patient_sees_only_their_own_record(client: TestClient, session: Session) -> None:
    clinic = make_clinic(session)
    me, other = make_patient(session, clinic), make_patient(session, clinic)
    headers = token_for(session, make_user(session, clinic, "patient", patient=me))
    assert client.get(f"/api/patients/{me.id}", headers=headers).status_code == 200
    r = client.get(f"/api/patients/{other.id}", headers=headers)
    assert r.status_code == 404
    assert other.family_name not in r.text
    listed = client.get("/api/patients", headers=headers).json()
    assert [p["id"] for p in listed["items"]] == [me.id]
    denied = session.scalars(select(AuditEvent).where(AuditEvent.event == "access.denied")).all()
    assert [(e.entity_id, e.outcome) for e in denied] == [(str(other.id), "4")]


def test_staff_see_only_their_clinic(client: TestClient, session: Session) -> None:
    mine, theirs = make_clinic(session), make_clinic(session)
    foreign = make_patient(session, theirs)
    headers = token_for(session, make_user(session, mine, "clinician"))
    assert client.get(f"/api/patients/{foreign.id}", headers=headers).status_code == 404
    assert client.get("/api/patients", headers=headers).json()["total"] == 0


def test_front_desk_gets_demographics_without_the_clinical_chart(
    client: TestClient, session: Session
) -> None:
    clinic = make_clinic(session)
    patient = make_patient(session, clinic)
    headers = token_for(session, make_user(session, clinic, "front_desk"))
    body = client.get(f"/api/patients/{patient.id}", headers=headers).json()
    assert "diagnoses" not in body and body["id"] == patient.id
    r = client.post(f"/api/patients/{patient.id}/medications", json={"name": "X"}, headers=headers)
    assert r.status_code == 403


def test_researchers_cannot_read_charts(client: TestClient, session: Session) -> None:
    clinic = make_clinic(session)
    patient = make_patient(session, clinic)
    headers = token_for(session, make_user(session, clinic, "researcher"))
    assert client.get(f"/api/patients/{patient.id}", headers=headers).status_code == 403


def test_a_read_only_token_cannot_write(client: TestClient, session: Session) -> None:
    clinic = make_clinic(session)
    headers = token_for(session, make_user(session, clinic, "clinician"), scopes=("read",))
    r = client.post("/api/patients", json=NEW_PATIENT, headers=headers)
    assert r.status_code == 403
    assert "write" in r.json()["detail"]


def test_reads_and_writes_are_audited(client: TestClient, session: Session) -> None:
    clinic = make_clinic(session)
    headers = token_for(session, make_user(session, clinic, "clinician"))
    pid = client.post("/api/patients", json=NEW_PATIENT, headers=headers).json()["id"]
    client.get(f"/api/patients/{pid}", headers=headers)
    events = session.scalars(
        select(AuditEvent.event).where(AuditEvent.patient_id == pid).order_by(AuditEvent.id)
    ).all()
    assert events == ["patient.create", "patient.read"]
