"""FHIR create and update: mapped onto prolo's rows, validated, versioned, audited;
errors are OperationOutcomes with the right status."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from prolo.fhir import codes
from prolo.patients.models import Diagnosis, Patient
from prolo.security.models import AuditEvent
from tests.fhir.conftest import World
from tests.fhir.helpers import check_resource

PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "identifier": [{"system": "https://ehr.example.org/mrn", "value": "E-1001"}],
    "name": [{"use": "official", "family": "Okafor", "given": ["Chidi", "N"]}],
    "gender": "male",
    "birthDate": "1975-09-30",
    "telecom": [{"system": "email", "value": "chidi@example.com"}],
    "address": [{"line": ["1 Elm Street"], "city": "Riverton", "postalCode": "12345"}],
}


def outcome(r: Any, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["resourceType"] == "OperationOutcome", body
    assert body["issue"][0]["code"] == code, body
    return str(body["issue"][0]["diagnostics"])


def count(session: Session, model: Any) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def test_create_patient_maps_onto_the_row_and_reads_back(
    client: TestClient, session: Session, world: World
) -> None:
    r = client.post("/fhir/Patient", json=PATIENT, headers=world.headers)
    assert r.status_code == 201, r.text
    created = r.json()
    assert r.headers["location"].endswith(f"/fhir/Patient/{created['id']}/_history/1")
    row = session.get(Patient, int(created["id"]))
    assert row is not None and row.clinic_id == world.clinic.id
    assert (row.family_name, row.given_name, row.sex) == ("Okafor", "Chidi N", "male")
    assert (row.email, row.address_line, row.city) == (
        "chidi@example.com",
        "1 Elm Street",
        "Riverton",
    )
    assert {"system": "https://ehr.example.org/mrn", "value": "E-1001"} in created["identifier"]
    check_resource(client, world.headers, created)
    found = client.get(
        "/fhir/Patient?identifier=https://ehr.example.org/mrn|E-1001", headers=world.headers
    )
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [created["id"]]
    events = session.scalars(
        select(AuditEvent.event).where(AuditEvent.patient_id == row.id).order_by(AuditEvent.id)
    ).all()
    assert events == ["patient.create", "fhir.search"]


def test_update_bumps_the_version_and_if_match_guards_it(
    client: TestClient, session: Session, world: World
) -> None:
    url = f"/fhir/Patient/{world.patient.id}"
    current = client.get(url, headers=world.headers).json()
    assert current["meta"]["versionId"] == "1"
    changed = {**current, "name": [{"family": "Lopez-Garcia", "given": ["Ana"]}]}
    r = client.put(url, json=changed, headers={**world.headers, "If-Match": 'W/"1"'})
    assert r.status_code == 200, r.text
    assert r.json()["meta"]["versionId"] == "2"
    session.expire_all()
    assert session.get(Patient, world.patient.id).family_name == "Lopez-Garcia"  # type: ignore[union-attr]
    stale = client.put(url, json=changed, headers={**world.headers, "If-Match": 'W/"1"'})
    outcome(stale, 412, "conflict")
    wrong_id = client.put(url, json={**changed, "id": "999"}, headers=world.headers)
    outcome(wrong_id, 400, "invalid")


def test_condition_create_checks_the_code_and_fills_the_display(
    client: TestClient, session: Session, world: World
) -> None:
    condition = {
        "resourceType": "Condition",
        "subject": {"reference": f"Patient/{world.other.id}"},
        "code": {"coding": [{"system": codes.ICD10CM, "code": "m17.12"}]},
        "onsetDateTime": "2023-02-01T10:00:00Z",
    }
    r = client.post("/fhir/Condition", json=condition, headers=world.headers)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["code"]["coding"][0]["code"] == "M17.12"
    assert body["code"]["coding"][0]["display"] == "Unilateral primary osteoarthritis, left knee"
    assert body["extension"][0]["valueString"] == "knee-osteoarthritis"
    check_resource(client, world.headers, body)
    before = count(session, Diagnosis)
    not_billable = {**condition, "code": {"coding": [{"system": codes.ICD10CM, "code": "M17"}]}}
    message = outcome(
        client.post("/fhir/Condition", json=not_billable, headers=world.headers),
        422,
        "business-rule",
    )
    assert "Condition.code" in message and "billable" in message
    uncoded = {**condition, "code": {"text": "sore knee"}}
    outcome(
        client.post("/fhir/Condition", json=uncoded, headers=world.headers), 422, "business-rule"
    )
    missing = {**condition, "subject": {"reference": "Patient/99999"}}
    outcome(
        client.post("/fhir/Condition", json=missing, headers=world.headers), 422, "business-rule"
    )
    assert count(session, Diagnosis) == before


def test_chart_entries_and_courses_round_trip(client: TestClient, world: World) -> None:
    pid = world.patient.id
    allergy = {
        "resourceType": "AllergyIntolerance",
        "patient": {"reference": f"Patient/{pid}"},
        "code": {"text": "Lidocaine"},
        "criticality": "high",
        "reaction": [{"manifestation": [{"text": "Swelling"}]}],
    }
    medication = {
        "resourceType": "MedicationStatement",
        "status": "active",
        "subject": {"reference": f"Patient/{pid}"},
        "medicationCodeableConcept": {
            "coding": [{"system": codes.RXNORM, "code": "11289", "display": "Warfarin"}],
            "text": "Warfarin",
        },
        "dosage": [{"text": "5 mg daily"}],
        "note": [{"text": "INR checked monthly"}],
    }
    plan = client.get(f"/fhir/CarePlan/{world.course.id}", headers=world.headers).json()
    plan.pop("id")
    plan.pop("meta")
    plan.pop("period")  # a new course has not started
    plan["activity"][0]["detail"]["status"] = "not-started"
    for resource in (allergy, medication, plan):
        r = client.post(f"/fhir/{resource['resourceType']}", json=resource, headers=world.headers)
        assert r.status_code == 201, r.text
        created = r.json()
        check_resource(client, world.headers, created)
        for key in ("code", "medicationCodeableConcept", "dosage", "note", "status", "category"):
            if key in resource:
                assert created[key] == resource[key], key
    bad_plan = {**plan, "status": "revoked"}
    plan["activity"][0]["detail"]["status"] = "stopped"
    bad_plan["activity"] = [{"detail": {**plan["activity"][0]["detail"], "statusReason": None}}]
    del bad_plan["activity"][0]["detail"]["statusReason"]
    r = client.post("/fhir/CarePlan", json=bad_plan, headers=world.headers)
    assert outcome(r, 422, "business-rule").startswith("a revoked CarePlan")


def test_admins_write_practitioners_and_rooms(client: TestClient, world: World) -> None:
    practitioner = {
        "resourceType": "Practitioner",
        "identifier": [{"system": codes.NPI, "value": "1234567893"}],
        "name": [{"family": "Adler", "given": ["Mia"], "suffix": ["DO"]}],
    }
    room = {"resourceType": "Location", "name": "Room Z", "status": "active"}
    outcome(
        client.post("/fhir/Practitioner", json=practitioner, headers=world.headers),
        403,
        "forbidden",
    )
    for resource in (practitioner, room):
        r = client.post(
            f"/fhir/{resource['resourceType']}", json=resource, headers=world.admin_headers
        )
        assert r.status_code == 201, r.text
        check_resource(client, world.admin_headers, r.json())
    again = client.post("/fhir/Practitioner", json=practitioner, headers=world.admin_headers)
    outcome(again, 409, "conflict")
    hospital = {
        **room,
        "name": "General",
        "physicalType": codes.concept(codes.LOCATION_PHYSICAL_TYPE, "bu"),
    }
    outcome(
        client.post("/fhir/Location", json=hospital, headers=world.admin_headers),
        422,
        "business-rule",
    )


def test_conditional_create_on_identifier_is_idempotent(
    client: TestClient, session: Session, world: World
) -> None:
    headers = {**world.headers, "If-None-Exist": "identifier=https://ehr.example.org/mrn|E-1001"}
    first = client.post("/fhir/Patient", json=PATIENT, headers=headers)
    second = client.post("/fhir/Patient", json=PATIENT, headers=headers)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    both = {**world.headers, "If-None-Exist": "family=o"}  # Okafor and Other
    outcome(client.post("/fhir/Patient", json=PATIENT, headers=both), 412, "multiple-matches")
    # Tokens match whole values: the MRNs T000001... do not match "T".
    prefix = {**world.headers, "If-None-Exist": "identifier=T"}
    other = {**PATIENT, "identifier": [{"system": "https://ehr.example.org/mrn", "value": "E-2"}]}
    assert client.post("/fhir/Patient", json=other, headers=prefix).status_code == 201
    taken = client.post("/fhir/Patient", json=PATIENT, headers=world.headers)
    assert "E-1001" in outcome(taken, 409, "conflict")


def test_malformed_and_rule_breaking_bodies(
    client: TestClient, session: Session, world: World
) -> None:
    before = count(session, Patient)
    raw = {**world.headers, "Content-Type": "application/fhir+json"}
    assert "not valid JSON" in outcome(
        client.post("/fhir/Patient", content=b'{"resourceType": ', headers=raw), 400, "invalid"
    )
    message = outcome(
        client.post(
            "/fhir/Patient", json={**PATIENT, "birthDate": "30/09/1975"}, headers=world.headers
        ),
        400,
        "invalid",
    )
    assert "Patient.birthDate" in message
    outcome(
        client.post(
            "/fhir/Patient", json={**PATIENT, "favouriteColour": "red"}, headers=world.headers
        ),
        400,
        "invalid",
    )
    outcome(
        client.post(
            "/fhir/Patient", json={**PATIENT, "resourceType": "Condition"}, headers=world.headers
        ),
        400,
        "invalid",
    )
    outcome(
        client.post("/fhir/Patient", json={**PATIENT, "gender": "banana"}, headers=world.headers),
        400,
        "code-invalid",
    )
    no_birth = {k: v for k, v in PATIENT.items() if k != "birthDate"}
    outcome(
        client.post("/fhir/Patient", json=no_birth, headers=world.headers), 422, "business-rule"
    )
    # Breaking FHIR's rules is reported before missing what prolo needs.
    outcome(
        client.post("/fhir/Patient", json={**no_birth, "gender": "banana"}, headers=world.headers),
        400,
        "code-invalid",
    )
    outcome(
        client.post("/fhir/Spaceship", json={"resourceType": "Spaceship"}, headers=world.headers),
        404,
        "not-supported",
    )
    why = outcome(
        client.post(
            "/fhir/Questionnaire",
            json={"resourceType": "Questionnaire", "status": "active"},
            headers=world.headers,
        ),
        405,
        "not-supported",
    )
    assert "no scoring rule" in why  # the refusal says why, not only that
    xml = {**world.headers, "Content-Type": "application/fhir+xml"}
    outcome(client.post("/fhir/Patient", content=b"<Patient/>", headers=xml), 415, "not-supported")
    outcome(client.get("/fhir/Patient?_format=xml", headers=world.headers), 406, "not-supported")
    outcome(
        client.delete(f"/fhir/Patient/{world.patient.id}", headers=world.headers),
        405,
        "not-supported",
    )
    outcome(client.get("/fhir/Patient/1/_history/1", headers=world.headers), 404, "not-supported")
    assert count(session, Patient) == before


def test_prefer_return_minimal(client: TestClient, world: World) -> None:
    r = client.post(
        "/fhir/Patient", json=PATIENT, headers={**world.headers, "Prefer": "return=minimal"}
    )
    assert r.status_code == 201 and r.content == b"" and "/fhir/Patient/" in r.headers["location"]
