"""An outside pain reading keeps the identifiers it arrives with, so a conditional create
on identifier (REST ``If-None-Exist`` or a Bundle entry's ``request.ifNoneExist``)
records it once: a match is returned with 200 and nothing new is written."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from prolo.fhir.models import ExternalIdentifier
from prolo.portal.models import QuestionnaireResponse, Score
from prolo.security.models import AuditEvent
from tests.factories import make_user
from tests.fhir.conftest import World
from tests.fhir.helpers import check_resource, fhir_token, parse
from tests.fhir.test_observation_audit_writes import count, outcome, reading

EHR = "https://ehr.example.org/pain-readings"


def tagged(world: World, value: str, **extra: Any) -> dict[str, Any]:
    """A pain reading carrying the EHR's identifier ``value``."""
    return reading(world, identifier=[{"system": EHR, "value": value}], **extra)


def written(session: Session) -> tuple[int, int]:
    """How many responses and scores are stored: a reading adds one of each."""
    return count(session, QuestionnaireResponse), count(session, Score)


def audited(session: Session, action: str) -> int:
    return session.scalar(select(func.count()).where(AuditEvent.action == action)) or 0


def conditional(world: World, criteria: str) -> dict[str, str]:
    return {**world.headers, "If-None-Exist": criteria}


def search_ids(client: TestClient, headers: dict[str, str], identifier: str) -> list[str]:
    r = client.get("/fhir/Observation", params={"identifier": identifier}, headers=headers)
    assert r.status_code == 200, r.text
    parse(r.json())
    return [e["resource"]["id"] for e in r.json().get("entry", [])]


def test_a_reading_keeps_its_identifier_and_a_conditional_create_records_it_once(
    client: TestClient, session: Session, world: World
) -> None:
    before = written(session)
    headers = conditional(world, f"identifier={EHR}|R-1")
    first = client.post("/fhir/Observation", json=tagged(world, "R-1"), headers=headers)
    assert first.status_code == 201, first.text
    created = first.json()
    check_resource(client, world.headers, created)
    assert created["identifier"] == [{"system": EHR, "value": "R-1"}]
    assert written(session) == (before[0] + 1, before[1] + 1)
    read = client.get(f"/fhir/Observation/{created['id']}", headers=world.headers)
    assert read.status_code == 200 and read.json() == created
    check_resource(client, world.headers, read.json())
    found = client.get(
        "/fhir/Observation", params={"identifier": f"{EHR}|R-1"}, headers=world.headers
    ).json()
    parse(found)
    assert found["total"] == 1 and found["entry"][0]["resource"] == created
    assert search_ids(client, world.headers, "R-1") == [created["id"]]  # any system
    assert search_ids(client, world.headers, f"{EHR}|R-2") == []
    assert search_ids(client, world.headers, f"{EHR}|") == [created["id"]]  # not world.score

    # The same reading sent again on the same condition: the one recorded, nothing new,
    # and the match is audited as a read of it.
    writes = audited(session, "C")
    again = client.post("/fhir/Observation", json=tagged(world, "R-1"), headers=headers)
    assert again.status_code == 200, again.text
    assert again.json() == created and again.headers["ETag"] == 'W/"1"'
    parse(again.json())
    assert written(session) == (before[0] + 1, before[1] + 1)
    assert audited(session, "C") == writes
    last = session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(1)).one()
    assert (last.action, last.entity_type, last.entity_id, last.patient_id) == (
        "R",
        "Observation",
        created["id"],
        world.patient.id,
    )

    # Without the condition, the same identifier is a clash named by the identifier.
    plain = client.post("/fhir/Observation", json=tagged(world, "R-1"), headers=world.headers)
    diagnostics = outcome(plain, 409, "conflict")
    assert f"{EHR}|R-1" in diagnostics and f"Observation/{created['id']}" in diagnostics
    assert written(session) == (before[0] + 1, before[1] + 1)  # rolled back whole


def test_several_matches_are_a_412_and_write_nothing(
    client: TestClient, session: Session, world: World
) -> None:
    for value in ("R-1", "R-2"):
        r = client.post("/fhir/Observation", json=tagged(world, value), headers=world.headers)
        assert r.status_code == 201, r.text
    before = written(session)
    r = client.post(
        "/fhir/Observation",
        json=tagged(world, "R-3"),
        headers=conditional(world, f"identifier={EHR}|"),  # any value of the system
    )
    assert "more than one Observation" in outcome(r, 412, "multiple-matches")
    assert written(session) == before
    r = client.post(
        "/fhir/Observation",
        json=tagged(world, "R-3"),
        headers=conditional(world, "identifier=nope|"),
    )
    assert r.status_code == 201, r.text  # no match: created


def test_a_transaction_bundle_with_if_none_exist_is_applied_once(
    client: TestClient, session: Session, world: World
) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": tagged(world, f"T-{n}", valueInteger=n),
                "request": {
                    "method": "POST",
                    "url": "Observation",
                    "ifNoneExist": f"identifier={EHR}|T-{n}",
                },
            }
            for n in (2, 7)
        ],
    }
    before = written(session)
    r = client.post("/fhir", json=bundle, headers=world.headers)
    assert r.status_code == 200, r.text
    parse(r.json())
    first = r.json()["entry"]
    assert [e["response"]["status"] for e in first] == ["201 Created", "201 Created"]
    for entry in first:
        check_resource(client, world.headers, entry["resource"])
    assert [e["resource"]["identifier"][0]["value"] for e in first] == ["T-2", "T-7"]
    assert written(session) == (before[0] + 2, before[1] + 2)

    r = client.post("/fhir", json=bundle, headers=world.headers)  # the EHR sends it again
    assert r.status_code == 200, r.text
    parse(r.json())
    second = r.json()["entry"]
    assert [e["response"]["status"] for e in second] == ["200 OK", "200 OK"]
    assert [e["resource"] for e in second] == [e["resource"] for e in first]
    assert written(session) == (before[0] + 2, before[1] + 2)

    # A transaction that fails after a conditional match keeps nothing either.
    failing = {
        **bundle,
        "entry": [
            *bundle["entry"],
            {
                "resource": tagged(world, "T-9", valueInteger=11),  # out of the 0-10 range
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    assert "Bundle.entry[2]" in outcome(
        client.post("/fhir", json=failing, headers=world.headers), 422, "invalid"
    )
    assert written(session) == (before[0] + 2, before[1] + 2)
    assert search_ids(client, world.headers, f"{EHR}|T-9") == []


def test_a_batch_applies_each_entry_on_its_own(
    client: TestClient, session: Session, world: World
) -> None:
    r = client.post("/fhir/Observation", json=tagged(world, "B-1"), headers=world.headers)
    assert r.status_code == 201, r.text
    existing = r.json()
    before = written(session)
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {  # matches the reading recorded above
                "resource": tagged(world, "B-1"),
                "request": {
                    "method": "POST",
                    "url": "Observation",
                    "ifNoneExist": f"identifier={EHR}|B-1",
                },
            },
            {  # the same identifier without the condition: a clash, this entry only
                "resource": tagged(world, "B-1"),
                "request": {"method": "POST", "url": "Observation"},
            },
            {  # new
                "resource": tagged(world, "B-2"),
                "request": {
                    "method": "POST",
                    "url": "Observation",
                    "ifNoneExist": f"identifier={EHR}|B-2",
                },
            },
        ],
    }
    r = client.post("/fhir", json=bundle, headers=world.headers)
    assert r.status_code == 200, r.text
    parse(r.json())
    matched, clash, new = r.json()["entry"]
    assert matched["response"]["status"] == "200 OK" and matched["resource"] == existing
    assert clash["response"]["status"] == "409" and "resource" not in clash
    assert f"{EHR}|B-1" in clash["response"]["outcome"]["issue"][0]["diagnostics"]
    assert new["response"]["status"] == "201 Created"
    check_resource(client, world.headers, new["resource"])
    assert new["resource"]["identifier"] == [{"system": EHR, "value": "B-2"}]
    assert written(session) == (before[0] + 1, before[1] + 1)  # only the new reading
    kept = session.scalars(
        select(ExternalIdentifier.value).where(
            ExternalIdentifier.resource_type == "Observation", ExternalIdentifier.system == EHR
        )
    ).all()
    assert sorted(kept) == ["B-1", "B-2"]

    r = client.post("/fhir", json=bundle, headers=world.headers)  # sent again
    statuses = [e["response"]["status"] for e in r.json()["entry"]]
    assert statuses == ["200 OK", "409", "200 OK"]
    assert written(session) == (before[0] + 1, before[1] + 1)


def test_a_patient_conditionally_records_their_own_readings_only(
    client: TestClient, session: Session, world: World
) -> None:
    ehr = client.post("/fhir/Observation", json=tagged(world, "P-1"), headers=world.headers)
    assert ehr.status_code == 201, ehr.text
    other = fhir_token(session, make_user(session, world.clinic, "patient", patient=world.other))
    theirs = tagged(world, "P-1", subject={"reference": f"Patient/{world.other.id}"})
    before = written(session)
    # The other patient's compartment holds no P-1: no match, and the identifier is
    # taken in the clinic, which is a clash that does not name the owner's record.
    r = client.post(
        "/fhir/Observation",
        json=theirs,
        headers={**other, "If-None-Exist": f"identifier={EHR}|P-1"},
    )
    diagnostics = outcome(r, 409, "conflict")
    assert f"{EHR}|P-1" in diagnostics and ehr.json()["id"] not in diagnostics
    assert written(session) == before
    mine = tagged(world, "P-2", subject={"reference": f"Patient/{world.other.id}"})
    headers = {**other, "If-None-Exist": f"identifier={EHR}|P-2"}
    first = client.post("/fhir/Observation", json=mine, headers=headers)
    second = client.post("/fhir/Observation", json=mine, headers=headers)
    assert (first.status_code, second.status_code) == (201, 200), second.text
    assert first.json() == second.json()
    check_resource(client, other, second.json(), resolve=False)
    assert search_ids(client, other, f"{EHR}|P-1") == []  # not theirs
    assert search_ids(client, other, f"{EHR}|P-2") == [first.json()["id"]]


def test_the_capability_statement_says_observation_takes_conditional_creates(
    client: TestClient,
) -> None:
    statement = client.get("/fhir/metadata").json()
    parse(statement)
    observation = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Observation")
    assert observation["conditionalCreate"] is True
    params = {p["name"]: p for p in observation["searchParam"]}
    assert params["identifier"]["type"] == "token"
