"""The REST write path's shortcuts keep their promises: a request is one unit of work
(no savepoint, yet a refusal after a row was written leaves nothing behind), versions
and ETags move by one per update, and the SQLite writer lock is always given back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from prolo.app import create_app
from prolo.db import create_db_engine, make_sessionmaker, unit_of_work
from prolo.fhir import codes
from prolo.fhir.models import ExternalIdentifier
from prolo.migrate import upgrade
from prolo.patients.models import Patient
from prolo.settings import Settings
from tests.factories import make_clinic, make_patient, make_user
from tests.fhir.conftest import World
from tests.fhir.helpers import fhir_token
from tests.fhir.test_write import PATIENT


def patients_named(session: Session, family: str) -> int:
    return session.scalar(select(func.count()).where(Patient.family_name == family)) or 0


def test_a_refusal_after_the_row_was_written_keeps_nothing(
    client: TestClient, session: Session, world: World
) -> None:
    first = client.post("/fhir/Patient", json=PATIENT, headers=world.headers)
    assert first.status_code == 201, first.text
    # Same external identifier, another person: the patient row is inserted before the
    # identifier clash is found, and the whole request must roll back.
    clash: dict[str, Any] = {**PATIENT, "name": [{"family": "Mbeki", "given": ["Thabo"]}]}
    r = client.post("/fhir/Patient", json=clash, headers=world.headers)
    assert r.status_code == 409 and r.json()["issue"][0]["code"] == "conflict", r.text
    session.expire_all()
    assert patients_named(session, "Mbeki") == 0
    kept = session.scalars(
        select(ExternalIdentifier.resource_id).where(ExternalIdentifier.value == "E-1001")
    ).all()
    assert kept == [int(first.json()["id"])]
    # The server is still usable afterwards (session and writer lock were released).
    again = client.get(f"/fhir/Patient/{first.json()['id']}", headers=world.headers)
    assert again.status_code == 200


def test_update_moves_version_etag_and_location_by_one(client: TestClient, world: World) -> None:
    url = f"/fhir/Patient/{world.patient.id}"
    current = client.get(url, headers=world.headers)
    version = int(current.json()["meta"]["versionId"])
    body = {k: v for k, v in current.json().items() if k != "meta"}
    body["telecom"] = [{"system": "phone", "value": "+1 555 0100"}]
    headers = {**world.headers, "If-Match": current.headers["etag"]}
    r = client.put(url, json=body, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["meta"]["versionId"] == str(version + 1)
    assert r.headers["etag"] == f'W/"{version + 1}"'
    assert r.headers["location"].endswith(f"{url}/_history/{version + 1}")
    assert r.json()["telecom"] == [{"system": "phone", "value": "+1 555 0100"}]
    reread = client.get(url, headers=world.headers)
    assert reread.content == r.content  # the write's answer is the read's bytes
    stale = client.put(url, json=body, headers=headers)  # the old ETag again
    assert stale.status_code == 412


def test_errors_and_writes_leave_the_file_database_writable(tmp_path: Path) -> None:
    """On a real SQLite file, requests queue on the engine's writer lock; every outcome
    (success, 404, malformed JSON, rule broken) must give it back, or the next request
    would wait and get a 429."""
    settings = Settings(env="test", database_url=f"sqlite:///{tmp_path / 'fhir.db'}")
    engine = create_db_engine(settings)
    upgrade(engine)
    with unit_of_work(make_sessionmaker(engine)) as session:
        clinic = make_clinic(session)
        patient_id = make_patient(session, clinic).id
        headers = fhir_token(session, make_user(session, clinic, "clinician"))
    engine.dispose()
    condition = {
        "resourceType": "Condition",
        "subject": {"reference": f"Patient/{patient_id}"},
        "code": {"coding": [{"system": codes.ICD10CM, "code": "M54.50"}]},
    }
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        outcomes = [
            client.get(f"/fhir/Patient/{patient_id}", headers=headers).status_code,
            client.get("/fhir/Patient/999999", headers=headers).status_code,
            client.post("/fhir/Condition", content=b"{nope", headers=headers).status_code,
            client.post(
                "/fhir/Condition", json={**condition, "subject": {}}, headers=headers
            ).status_code,
            client.post("/fhir/Condition", json=condition, headers=headers).status_code,
            client.get(f"/fhir/Condition?patient={patient_id}", headers=headers).status_code,
        ]
    assert outcomes == [200, 404, 400, 422, 201, 200]


def test_core_reads_see_changes_not_yet_flushed(session: Session, world: World) -> None:
    """The read path runs Core statements on the session's connection; like the ORM's
    own execute, it must not read around changes still pending in the session."""
    from prolo.fhir.resources.base import core_rows

    table = Patient.__table__
    world.patient.family_name = "Renamed"  # pending: not flushed yet
    rows = core_rows(session, select(table.c.family_name).where(table.c.id == world.patient.id))
    assert [r.family_name for r in rows] == ["Renamed"]
