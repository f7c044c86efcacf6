"""Transaction and batch Bundles: all or nothing, urn:uuid references, idempotent re-posts."""

from __future__ import annotations

import copy
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from prolo.fhir import codes
from prolo.patients.models import Diagnosis, Medication, Patient
from tests.fhir.conftest import World
from tests.fhir.helpers import check_bundle, check_resource, parse

PATIENT_URL = "urn:uuid:7d0b6c5e-4c1f-4a53-9a5c-2d1f8c0e0a11"


def transaction(kind: str = "transaction", *, conditional: bool = False) -> dict[str, Any]:
    patient_request: dict[str, Any] = {"method": "POST", "url": "Patient"}
    if conditional:
        patient_request["ifNoneExist"] = "identifier=https://ehr.example.org/mrn|T-77"
    return {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [
            {  # listed before the patient it refers to: the server orders the writes
                "fullUrl": "urn:uuid:0c1e9d1b-1f3e-4c89-8a53-5f4fbb5f2b01",
                "resource": {
                    "resourceType": "Condition",
                    "subject": {"reference": PATIENT_URL},
                    "code": {"coding": [{"system": codes.ICD10CM, "code": "M77.11"}]},
                },
                "request": {"method": "POST", "url": "Condition"},
            },
            {
                "fullUrl": PATIENT_URL,
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": "https://ehr.example.org/mrn", "value": "T-77"}],
                    "name": [{"family": "Tanaka", "given": ["Yuki"]}],
                    "gender": "female",
                    "birthDate": "1980-06-15",
                },
                "request": patient_request,
            },
            {
                "resource": {
                    "resourceType": "MedicationStatement",
                    "status": "active",
                    "subject": {"reference": PATIENT_URL},
                    "medicationCodeableConcept": {"text": "Ibuprofen"},
                },
                "request": {"method": "POST", "url": "MedicationStatement"},
            },
        ],
    }


def rows(session: Session) -> tuple[int, int, int]:
    return tuple(  # type: ignore[return-value]
        session.scalar(select(func.count()).select_from(m)) or 0
        for m in (Patient, Diagnosis, Medication)
    )


def test_a_transaction_writes_everything_and_resolves_urn_uuids(
    client: TestClient, session: Session, world: World
) -> None:
    r = client.post("/fhir", json=transaction(), headers=world.headers)
    assert r.status_code == 200, r.text
    answer = r.json()
    parse(answer)
    assert answer["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in answer["entry"]]
    assert statuses == ["201 Created"] * 3
    condition, patient = answer["entry"][0]["resource"], answer["entry"][1]["resource"]
    assert condition["subject"] == {"reference": f"Patient/{patient['id']}"}
    assert answer["entry"][1]["response"]["location"] == f"Patient/{patient['id']}/_history/1"
    for entry in answer["entry"]:
        check_resource(client, world.headers, entry["resource"])


def test_a_missing_reference_fails_the_whole_transaction(
    client: TestClient, session: Session, world: World
) -> None:
    before = rows(session)
    bundle = transaction()
    bundle["entry"][2]["resource"]["subject"] = {"reference": "Patient/987654"}
    r = client.post("/fhir", json=bundle, headers=world.headers)
    assert r.status_code == 422, r.text
    issue = r.json()["issue"][0]
    assert issue["diagnostics"].startswith("Bundle.entry[2]")
    assert "MedicationStatement.subject" in issue["diagnostics"]
    assert rows(session) == before
    dangling = transaction()
    dangling["entry"][0]["resource"]["subject"] = {"reference": "urn:uuid:not-in-this-bundle"}
    r = client.post("/fhir", json=dangling, headers=world.headers)
    assert r.status_code == 422 and "not in this Bundle" in r.json()["issue"][0]["diagnostics"]
    assert rows(session) == before


def test_a_structurally_invalid_entry_fails_before_anything_is_written(
    client: TestClient, session: Session, world: World
) -> None:
    before = rows(session)
    bundle = transaction()
    bundle["entry"][1]["resource"]["birthDate"] = "15 June 1980"
    r = client.post("/fhir", json=bundle, headers=world.headers)
    assert r.status_code == 400
    assert r.json()["issue"][0]["expression"] == ["Bundle.entry[1].resource.Patient.birthDate"]
    assert rows(session) == before
    r = client.post(
        "/fhir", json={"resourceType": "Bundle", "type": "collection"}, headers=world.headers
    )
    assert r.status_code == 400


def test_re_posting_a_conditional_transaction_writes_nothing_twice(
    client: TestClient, session: Session, world: World
) -> None:
    bundle = transaction(conditional=True)
    bundle["entry"] = bundle["entry"][1:2]  # the patient alone is conditional
    first = client.post("/fhir", json=bundle, headers=world.headers).json()
    before = rows(session)
    second = client.post("/fhir", json=copy.deepcopy(bundle), headers=world.headers).json()
    assert second["entry"][0]["response"]["status"] == "200 OK"
    assert second["entry"][0]["resource"]["id"] == first["entry"][0]["resource"]["id"]
    assert rows(session) == before


def test_a_batch_applies_good_entries_and_reports_bad_ones(
    client: TestClient, session: Session, world: World
) -> None:
    bundle = transaction("batch")
    bundle["entry"][0]["resource"]["code"]["coding"][0]["code"] = "M77"  # not billable
    bundle["entry"].append({"request": {"method": "DELETE", "url": f"Patient/{world.patient.id}"}})
    bundle["entry"].append({"request": {"method": "GET", "url": f"Patient/{world.patient.id}"}})
    before = rows(session)
    r = client.post("/fhir", json=bundle, headers=world.headers)
    assert r.status_code == 200, r.text
    answer = r.json()
    parse(answer)
    statuses = [e["response"]["status"] for e in answer["entry"]]
    assert statuses == ["422", "201 Created", "201 Created", "400 Bad Request", "200 OK"]
    assert answer["entry"][0]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert rows(session) == (before[0] + 1, before[1], before[2] + 1)
    assert answer["entry"][4]["resource"]["id"] == str(world.patient.id)
    check_bundle(
        client,
        world.headers,
        {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [e for e in answer["entry"] if "resource" in e],
        },
    )
