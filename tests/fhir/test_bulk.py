"""Bulk Data $export: kick-off, polling, the manifest and NDJSON files, _type/_since,
the three levels, and who may see a job."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from prolo.security.models import AuditEvent
from tests.factories import make_clinic, make_patient, make_user
from tests.fhir.conftest import World
from tests.fhir.helpers import check_codes, fhir_token, parse

ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}


def export(
    client: TestClient, headers: dict[str, str], url: str
) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """Kick off, poll to completion, download; returns (manifest, resources by type)."""
    r = client.get(url, headers={**headers, **ASYNC})
    assert r.status_code == 202, r.text
    status_url = r.headers["content-location"].replace("http://testserver", "")
    assert "/fhir/bulk-status/" in status_url
    r = client.get(status_url, headers=headers)
    assert r.status_code == 200, r.text  # the test client runs the job before answering
    manifest = r.json()
    found: dict[str, list[dict[str, Any]]] = {}
    for output in manifest["output"]:
        f = client.get(output["url"].replace("http://testserver", ""), headers=headers)
        assert f.status_code == 200 and f.headers["content-type"].startswith(
            "application/fhir+ndjson"
        )
        lines = [orjson.loads(line) for line in f.content.splitlines() if line.strip()]
        assert len(lines) == output["count"]
        found.setdefault(output["type"], []).extend(lines)
    return manifest, found


def test_system_export_writes_valid_ndjson_of_every_type(
    client: TestClient, session: Session, world: World
) -> None:
    manifest, found = export(client, world.admin_headers, "/fhir/$export")
    assert manifest["requiresAccessToken"] is True and manifest["error"] == []
    assert manifest["request"].endswith("/fhir/$export")
    dt.datetime.fromisoformat(manifest["transactionTime"].replace("Z", "+00:00"))
    assert {"Patient", "Condition", "CarePlan", "Observation", "Practitioner"} <= set(found)
    assert "AuditEvent" not in found  # only when _type asks for it
    assert sorted(int(p["id"]) for p in found["Patient"]) == sorted(
        [world.patient.id, world.other.id]
    )
    for resources in found.values():
        for resource in resources:
            parse(resource)
            check_codes(resource)
    exported = session.scalars(
        select(AuditEvent.patient_id).where(AuditEvent.event == "fhir.export")
    ).all()
    assert sorted(exported) == sorted([world.patient.id, world.other.id])


def test_type_and_since_narrow_the_export(
    client: TestClient, session: Session, world: World
) -> None:
    _manifest, found = export(client, world.admin_headers, "/fhir/$export?_type=Patient,Condition")
    assert set(found) == {"Patient", "Condition"}
    cut = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
    world.other.city = "Lakeside"
    session.flush()
    _manifest, found = export(
        client, world.admin_headers, f"/fhir/$export?_type=Patient&_since={cut}"
    )
    assert [p["id"] for p in found["Patient"]] == [str(world.other.id)]
    r = client.get("/fhir/$export?_type=Spaceship", headers={**world.admin_headers, **ASYNC})
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"


def test_patient_and_group_levels(client: TestClient, session: Session, world: World) -> None:
    _m, found = export(client, world.admin_headers, "/fhir/Group/knee-osteoarthritis/$export")
    assert [p["id"] for p in found["Patient"]] == [str(world.patient.id)]
    assert {c["subject"]["reference"] for c in found["Condition"]} == {
        f"Patient/{world.patient.id}"
    }
    assert "Practitioner" not in found  # not in a patient's compartment
    r = client.get(
        "/fhir/Group/no-such-condition/$export", headers={**world.admin_headers, **ASYNC}
    )
    assert r.status_code == 404
    me = fhir_token(
        session, make_user(session, world.clinic, "patient", patient=world.other), "bulk"
    )
    _m, found = export(client, me, "/fhir/Patient/$export")
    assert [p["id"] for p in found["Patient"]] == [str(world.other.id)]
    assert all(c["subject"]["reference"] == f"Patient/{world.other.id}" for c in found["Condition"])
    r = client.get("/fhir/$export", headers={**me, **ASYNC})
    assert r.status_code == 403


def test_kick_off_rules_and_job_privacy(client: TestClient, session: Session, world: World) -> None:
    r = client.get("/fhir/$export", headers=world.admin_headers)
    assert r.status_code == 400 and "respond-async" in r.json()["issue"][0]["diagnostics"]
    r = client.get("/fhir/$export?_outputFormat=text/csv", headers={**world.admin_headers, **ASYNC})
    assert r.status_code == 400
    r = client.get("/fhir/$export?_typeFilter=x", headers={**world.admin_headers, **ASYNC})
    assert r.status_code == 400
    lenient = {**world.admin_headers, "Prefer": "respond-async, handling=lenient"}
    assert client.get("/fhir/$export?_typeFilter=x", headers=lenient).status_code == 202
    no_bulk = client.get("/fhir/$export", headers={**world.headers, **ASYNC})
    assert no_bulk.status_code == 403  # the clinician's token has no bulk scope
    r = client.get("/fhir/$export?_type=Patient", headers={**world.admin_headers, **ASYNC})
    status_url = r.headers["content-location"].replace("http://testserver", "")
    manifest = client.get(status_url, headers=world.admin_headers).json()
    file_url = manifest["output"][0]["url"].replace("http://testserver", "")
    someone = fhir_token(session, make_user(session, world.clinic, "admin"), "bulk")
    assert client.get(status_url, headers=someone).status_code == 404
    assert client.get(file_url, headers=someone).status_code == 404
    assert client.delete(status_url, headers=world.admin_headers).status_code == 202
    assert client.get(status_url, headers=world.admin_headers).status_code == 404
    assert client.get(file_url, headers=world.admin_headers).status_code == 404


def test_other_clinics_are_never_exported(
    client: TestClient, session: Session, world: World
) -> None:
    elsewhere = make_clinic(session)
    make_patient(session, elsewhere)
    _m, found = export(client, world.admin_headers, "/fhir/$export?_type=Patient")
    assert len(found["Patient"]) == 2
