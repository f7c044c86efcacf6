"""Observation and AuditEvent creates: an outside pain reading becomes a response to
prolo's pain instrument (scored as any response), prolo's own scores are refused; an
outside system's event is appended to the hash-chained log, which is never updated."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from prolo.fhir import codes
from prolo.portal.models import QuestionnaireResponse, Score
from prolo.security.models import AuditEvent
from tests.factories import make_clinic, make_patient, make_user
from tests.fhir.conftest import World
from tests.fhir.helpers import check_bundle, check_resource, fhir_token, parse
from tests.fhir.test_write import outcome as _outcome

PAIN = "72514-3"  # https://loinc.org/72514-3 (see prolo.fhir.resources.observation)


def outcome(r: Any, status: int, code: str) -> str:
    """The refusal's diagnostics; its OperationOutcome must parse as R4B too."""
    parse(r.json())
    return _outcome(r, status, code)


def reading(world: World, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": codes.OBSERVATION_CATEGORY, "code": "survey"}]}],
        "code": {"coding": [{"system": codes.LOINC, "code": PAIN}]},
        "subject": {"reference": f"Patient/{world.patient.id}"},
        "effectiveDateTime": "2026-03-10T14:00:00Z",
        "valueInteger": 6,
        **extra,
    }


def count(session: Session, model: Any) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


# -- Observation ------------------------------------------------------------------------------


def test_an_outside_pain_reading_is_recorded_as_a_response_and_scored(
    client: TestClient, session: Session, world: World
) -> None:
    body = reading(world, basedOn=[{"reference": f"CarePlan/{world.course.id}"}])
    r = client.post("/fhir/Observation", json=body, headers=world.headers)
    assert r.status_code == 201, r.text
    created = r.json()
    check_resource(client, world.headers, created)
    assert {"system": codes.LOINC, "code": PAIN} in created["code"]["coding"]
    assert created["valueQuantity"]["value"] == 6
    assert created["effectiveDateTime"] == "2026-03-10T14:00:00Z"
    score = session.get(Score, int(created["id"]))
    assert score is not None and (score.instrument_id, score.score_key) == ("pain-nrs", "total")
    response = session.get(QuestionnaireResponse, score.response_id)
    assert response is not None
    assert (response.answers, response.course_id, response.timepoint) == (
        {"pain-nrs": 6},
        world.course.id,
        "ad_hoc",
    )
    assert created["derivedFrom"] == [{"reference": f"QuestionnaireResponse/{response.id}"}]
    written = session.scalars(
        select(AuditEvent.event).where(
            AuditEvent.entity_type == "QuestionnaireResponse",
            AuditEvent.entity_id == str(response.id),
        )
    ).all()
    assert written  # the portal service audited the response it stored
    quantity = reading(world, valueQuantity={"value": 3.0, "unit": "score"})
    del quantity["valueInteger"]
    r = client.post("/fhir/Observation", json=quantity, headers=world.headers)
    assert r.status_code == 201, r.text
    assert r.json()["valueQuantity"]["value"] == 3


def test_observation_refusals(client: TestClient, session: Session, world: World) -> None:
    scores = count(session, Score)
    ours = {
        "coding": [
            {"system": codes.PROLO_SCORE, "code": "pain-nrs.total"},
            {"system": codes.LOINC, "code": PAIN},
        ]
    }
    assert "POST the QuestionnaireResponse" in outcome(
        client.post("/fhir/Observation", json=reading(world, code=ours), headers=world.headers),
        422,
        "business-rule",
    )
    read = client.get(f"/fhir/Observation/{world.score.id}", headers=world.headers).json()
    del read["id"], read["meta"]
    assert "POST the QuestionnaireResponse" in outcome(
        client.post("/fhir/Observation", json=read, headers=world.headers), 422, "business-rule"
    )
    heart = {"coding": [{"system": codes.LOINC, "code": "8867-4"}]}
    assert f"{codes.LOINC}|{PAIN}" in outcome(
        client.post("/fhir/Observation", json=reading(world, code=heart), headers=world.headers),
        422,
        "business-rule",
    )
    for bad, path in [
        (reading(world, valueInteger=11), "Observation.value[x]"),
        (reading(world, status="preliminary"), "Observation.status"),
        (reading(world, effectiveDateTime="2099-01-01T00:00:00Z"), "Observation.effective"),
        ({**reading(world), "effectiveDateTime": None}, "Observation.effective[x]"),
    ]:
        body = {k: v for k, v in bad.items() if v is not None}
        r = client.post("/fhir/Observation", json=body, headers=world.headers)
        assert r.status_code == 422, r.text
        assert parse(r.json()).issue[0].expression[0].startswith(path), r.text
    elsewhere = make_patient(session, make_clinic(session))
    foreign = reading(world, subject={"reference": f"Patient/{elsewhere.id}"})
    outcome(
        client.post("/fhir/Observation", json=foreign, headers=world.headers), 422, "business-rule"
    )
    front_desk = fhir_token(session, make_user(session, world.clinic, "front_desk"))
    outcome(
        client.post("/fhir/Observation", json=reading(world), headers=front_desk), 403, "forbidden"
    )
    put = client.put(
        f"/fhir/Observation/{world.score.id}",
        json={**reading(world), "id": str(world.score.id)},
        headers=world.headers,
    )
    outcome(put, 405, "not-supported")
    assert count(session, Score) == scores


def test_a_patient_reports_their_own_pain_only(
    client: TestClient, session: Session, world: World
) -> None:
    me = fhir_token(session, make_user(session, world.clinic, "patient", patient=world.patient))
    r = client.post("/fhir/Observation", json=reading(world), headers=me)
    assert r.status_code == 201, r.text
    check_resource(client, me, r.json(), resolve=False)
    theirs = reading(world, subject={"reference": f"Patient/{world.other.id}"})
    outcome(client.post("/fhir/Observation", json=theirs, headers=me), 404, "not-found")
    found = client.get("/fhir/Observation", params={"patient": world.other.id}, headers=me).json()
    assert found["total"] == 0


def test_a_reading_for_a_new_patient_in_one_transaction(
    client: TestClient, session: Session, world: World
) -> None:
    patient_url = "urn:uuid:9e0b3f3a-7a57-4c34-8f0e-1b2f3c4d5e6f"
    entries: list[dict[str, Any]] = [
        {
            "resource": reading(world, subject={"reference": patient_url}),
            "request": {"method": "POST", "url": "Observation"},
        },
        {
            "fullUrl": patient_url,
            "resource": {
                "resourceType": "Patient",
                "name": [{"family": "Novak", "given": ["Iva"]}],
                "gender": "female",
                "birthDate": "1970-02-03",
            },
            "request": {"method": "POST", "url": "Patient"},
        },
    ]
    bad = {**reading(world, subject={"reference": patient_url}), "valueInteger": 12}
    failing = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [*entries, {"resource": bad, "request": {"method": "POST", "url": "Observation"}}],
    }
    responses = count(session, QuestionnaireResponse)
    r = client.post("/fhir", json=failing, headers=world.headers)
    assert "Bundle.entry[2]" in outcome(r, 422, "invalid")
    assert count(session, QuestionnaireResponse) == responses
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    r = client.post("/fhir", json=bundle, headers=world.headers)
    assert r.status_code == 200, r.text
    check_bundle(client, world.headers, r.json())
    observation, patient = (e["resource"] for e in r.json()["entry"])
    assert observation["subject"] == {"reference": f"Patient/{patient['id']}"}


# -- AuditEvent ---------------------------------------------------------------------------------


def reported(world: World, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "AuditEvent",
        "id": "999",  # ignored: the log numbers its entries
        "type": {
            "system": "http://dicom.nema.org/resources/ontology/DCM",
            "code": "110110",
            "display": "Patient Record",
        },
        "subtype": [{"system": "https://ehr.example.org/events", "code": "chart-export"}],
        "action": "R",
        "recorded": "2026-03-10T14:00:00Z",
        "outcome": "0",
        "outcomeDesc": "exported the whole chart",
        "agent": [
            {
                "who": {"identifier": {"system": "https://ehr.example.org/users", "value": "u7"}},
                "requestor": True,
            }
        ],
        "source": {"observer": {"display": "Clinic EHR"}},
        "entity": [
            {"what": {"reference": f"Patient/{world.patient.id}"}},
            {"what": {"reference": f"Condition/{world.diagnosis.id}"}},
        ],
        **extra,
    }


def test_an_outside_event_is_appended_to_the_log(
    client: TestClient, session: Session, world: World
) -> None:
    r = client.post("/fhir/AuditEvent", json=reported(world), headers=world.admin_headers)
    assert r.status_code == 201, r.text
    created = r.json()
    check_resource(client, world.admin_headers, created)
    assert created["id"] != "999"
    assert (
        created
        == client.get(f"/fhir/AuditEvent/{created['id']}", headers=world.admin_headers).json()
    )
    row = session.get(AuditEvent, int(created["id"]))
    assert row is not None
    assert (row.event, row.action, row.outcome, row.patient_id) == (
        "external.chart-export",
        "R",
        "0",
        world.patient.id,
    )
    assert (row.entity_type, row.entity_id) == ("Condition", str(world.diagnosis.id))
    assert (row.user_id, row.user_role, row.clinic_id) == (world.admin.id, "admin", world.clinic.id)
    assert row.detail is not None
    assert "recorded 2026-03-10T14:00:00Z" in row.detail
    assert "https://ehr.example.org/users|u7" in row.detail and "Clinic EHR" in row.detail
    assert "whole chart" not in row.detail  # outcomeDesc is free text: never kept
    assert created["agent"][0]["who"]["identifier"] == {
        "system": codes.PROLO_USER,
        "value": str(world.admin.id),
    }
    found = client.get(
        "/fhir/AuditEvent",
        params={"subtype": "external.chart-export"},
        headers=world.admin_headers,
    ).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [created["id"]]


def test_audit_event_refusals(client: TestClient, session: Session, world: World) -> None:
    before = count(session, AuditEvent)
    body = reported(world)
    outcome(client.post("/fhir/AuditEvent", json=body, headers=world.headers), 403, "forbidden")
    read_only = fhir_token(session, world.admin, "fhir")
    outcome(client.post("/fhir/AuditEvent", json=body, headers=read_only), 403, "forbidden")
    no_action = {k: v for k, v in body.items() if k != "action"}
    assert "action" in outcome(
        client.post("/fhir/AuditEvent", json=no_action, headers=world.admin_headers),
        422,
        "business-rule",
    )
    elsewhere = make_patient(session, make_clinic(session))
    foreign = reported(world, entity=[{"what": {"reference": f"Patient/{elsewhere.id}"}}])
    outcome(
        client.post("/fhir/AuditEvent", json=foreign, headers=world.admin_headers),
        422,
        "business-rule",
    )
    hash_field = {**body, "hash": "0" * 64}
    outcome(
        client.post("/fhir/AuditEvent", json=hash_field, headers=world.admin_headers),
        400,
        "invalid",
    )  # not a FHIR element: a client cannot reach the chain's fields
    entry = session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(1)).one()
    put = client.put(
        f"/fhir/AuditEvent/{entry.id}",
        json={**body, "id": str(entry.id)},
        headers=world.admin_headers,
    )
    assert "append-only" in outcome(put, 405, "not-supported")
    # Each refused request was rolled back whole: none of the client's events is in the
    # log (the server's own entries for the requests may be).
    assert not session.scalar(select(func.count()).where(AuditEvent.event.like("external.%")))
    assert count(session, AuditEvent) >= before  # the log only grows


def test_an_audit_event_in_a_transaction_rolls_back_with_the_bundle(
    client: TestClient, session: Session, world: World
) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": reported(world), "request": {"method": "POST", "url": "AuditEvent"}},
            {
                "resource": {k: v for k, v in reported(world).items() if k != "action"},
                "request": {"method": "POST", "url": "AuditEvent"},
            },
        ],
    }
    r = client.post("/fhir", json=bundle, headers=world.admin_headers)
    assert "Bundle.entry[1]" in outcome(r, 422, "business-rule")
    assert not session.scalar(select(func.count()).where(AuditEvent.event.like("external.%")))
    bundle["entry"] = bundle["entry"][:1]
    r = client.post("/fhir", json=bundle, headers=world.admin_headers)
    assert r.status_code == 200, r.text
    check_bundle(client, world.admin_headers, r.json())
    assert session.scalar(select(func.count()).where(AuditEvent.event.like("external.%"))) == 1


def test_the_capability_statement_lists_these_writes(client: TestClient) -> None:
    statement = client.get("/fhir/metadata").json()
    by_type = {r["type"]: r for r in statement["rest"][0]["resource"]}
    claimed = {
        name: {i["code"] for i in by_type[name]["interaction"]}
        for name in ("Schedule", "Slot", "Observation", "AuditEvent")
    }
    assert claimed == {
        "Schedule": {"read", "search-type", "create", "update"},
        "Slot": {"read", "search-type", "create", "update"},
        "Observation": {"read", "search-type", "create"},
        "AuditEvent": {"read", "search-type", "create"},
    }
    assert by_type["Schedule"]["conditionalCreate"] is True
    assert by_type["Slot"]["conditionalCreate"] is False  # refused: Slots are not rows
    assert by_type["Slot"]["versioning"] == "versioned"  # closures carry versions
