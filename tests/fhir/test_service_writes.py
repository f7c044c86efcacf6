"""Writes that go through the domains' services: courses, booking, questionnaire
submission; and the calendar read side (Schedule, Slot) and Consent."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from prolo.courses.models import TreatmentCourse
from prolo.fhir import codes
from prolo.portal.models import Score
from prolo.scheduling.models import Appointment
from tests.fhir.conftest import World
from tests.fhir.helpers import check_bundle, check_resource


def course(world: World, **overrides: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "CarePlan",
        "status": "active",
        "intent": "plan",
        "subject": {"reference": f"Patient/{world.other.id}"},
        "category": [codes.concept(codes.PROLO_CONDITION, "knee-osteoarthritis")],
        "author": {"reference": f"Practitioner/{world.practitioner.id}"},
        "activity": [
            {
                "detail": {
                    "status": "not-started",
                    "scheduledTiming": {
                        "repeat": {"count": 3, "period": 4, "periodMax": 6, "periodUnit": "wk"}
                    },
                    "productCodeableConcept": {"text": "Dextrose 15%"},
                }
            }
        ],
    }
    resource.update(overrides)
    return resource


def test_a_care_plan_is_planned_and_moved_on_by_the_courses_service(
    client: TestClient, session: Session, world: World
) -> None:
    r = client.post("/fhir/CarePlan", json=course(world), headers=world.headers)
    assert r.status_code == 201, r.text
    plan = r.json()
    check_resource(client, world.headers, plan)
    row = session.get(TreatmentCourse, int(plan["id"]))
    assert row is not None and row.status == "planned" and row.protocol_status is not None
    assert (row.planned_sessions, row.interval_weeks_min, row.interval_weeks_max) == (3, 4, 6)
    url = f"/fhir/CarePlan/{plan['id']}"
    start = {
        **plan,
        "activity": [{"detail": {**plan["activity"][0]["detail"], "status": "in-progress"}}],
    }
    r = client.put(url, json=start, headers=world.headers)
    assert r.status_code == 409 and "consent" in r.json()["issue"][0]["diagnostics"]
    stop = {**plan, "status": "revoked"}
    stop["activity"] = [
        {
            "detail": {
                **plan["activity"][0]["detail"],
                "status": "stopped",
                "statusReason": codes.concept(codes.PROLO_STOP_REASON, "patient_choice"),
            }
        }
    ]
    r = client.put(url, json=stop, headers=world.headers)
    assert r.status_code == 200, r.text
    assert (
        r.json()["status"] == "revoked"
        and r.json()["meta"]["versionId"] != plan["meta"]["versionId"]
    )
    session.expire_all()
    assert session.get(TreatmentCourse, int(plan["id"])).stop_reason == "patient_choice"  # type: ignore[union-attr]
    started = course(world, status="completed")
    started["activity"][0]["detail"]["status"] = "completed"
    r = client.post("/fhir/CarePlan", json=started, headers=world.headers)
    assert r.status_code == 422 and "starts planned" in r.json()["issue"][0]["diagnostics"]
    too_many = course(world)
    too_many["activity"][0]["detail"]["scheduledTiming"]["repeat"]["count"] = 40
    r = client.post("/fhir/CarePlan", json=too_many, headers=world.headers)
    assert r.status_code == 422
    assert r.json()["issue"][0]["expression"] == [
        "CarePlan.activity.detail.scheduledTiming.repeat.count"
    ]


def visit(world: World, starts_at: dt.datetime, **overrides: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Appointment",
        "status": "booked",
        "serviceType": [codes.concept(codes.PROLO_APPOINTMENT_KIND, "consultation")],
        "start": starts_at.isoformat(),
        "participant": [
            {"actor": {"reference": f"Patient/{world.other.id}"}, "status": "accepted"},
            {"actor": {"reference": f"Practitioner/{world.practitioner.id}"}, "status": "accepted"},
            {"actor": {"reference": f"Location/{world.room.id}"}, "status": "accepted"},
        ],
    }
    resource.update(overrides)
    return resource


def next_start(days: int = 2) -> dt.datetime:
    day = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=days)
    return dt.datetime.combine(day, dt.time(16, 0), dt.UTC)


def test_appointments_are_booked_moved_and_cancelled_through_the_calendar(
    client: TestClient, session: Session, world: World
) -> None:
    start = next_start()
    r = client.post("/fhir/Appointment", json=visit(world, start), headers=world.headers)
    assert r.status_code == 201, r.text
    booked = r.json()
    check_resource(client, world.headers, booked)
    assert booked["start"] == start.isoformat().replace("+00:00", "Z")
    clash = client.post("/fhir/Appointment", json=visit(world, start), headers=world.headers)
    assert clash.status_code == 409 and clash.json()["issue"][0]["code"] == "conflict"
    past = client.post(
        "/fhir/Appointment", json=visit(world, start - dt.timedelta(days=10)), headers=world.headers
    )
    assert past.status_code == 422
    later = start + dt.timedelta(hours=2)
    moved = {
        **booked,
        "start": later.isoformat(),
        "end": (later + dt.timedelta(minutes=45)).isoformat(),
    }
    r = client.put(f"/fhir/Appointment/{booked['id']}", json=moved, headers=world.headers)
    assert r.status_code == 200, r.text
    assert r.json()["start"] == later.isoformat().replace("+00:00", "Z")
    cancelled = {**r.json(), "status": "cancelled"}
    r = client.put(f"/fhir/Appointment/{booked['id']}", json=cancelled, headers=world.headers)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    assert r.json()["cancelationReason"]["coding"][0]["code"] == "patient_request"
    row = session.get(Appointment, int(booked["id"]))
    session.refresh(row)
    assert row is not None and row.status == "cancelled"


def test_slots_are_free_starts_and_disappear_when_booked(client: TestClient, world: World) -> None:
    start = next_start(3)
    params = {
        "schedule": f"Schedule/{world.practitioner.id}",
        "service-type": "consultation",
        "start": [
            f"ge{start.date().isoformat()}",
            f"lt{(start.date() + dt.timedelta(days=1)).isoformat()}",
        ],
        "_count": "500",
    }
    query = [(k, v) for k, vs in params.items() for v in (vs if isinstance(vs, list) else [vs])]
    bundle = client.get("/fhir/Slot", params=query, headers=world.headers).json()
    assert bundle["total"] > 10
    check_bundle(client, world.headers, bundle)
    starts = {e["resource"]["start"]: e["resource"]["id"] for e in bundle["entry"]}
    wanted = start.isoformat().replace("+00:00", "Z")
    assert wanted in starts
    slot = client.get(f"/fhir/Slot/{starts[wanted]}", headers=world.headers)
    assert slot.status_code == 200 and slot.json()["status"] == "free"
    assert (
        client.post(
            "/fhir/Appointment", json=visit(world, start), headers=world.headers
        ).status_code
        == 201
    )
    assert client.get(f"/fhir/Slot/{starts[wanted]}", headers=world.headers).status_code == 404
    again = client.get("/fhir/Slot", params=query, headers=world.headers).json()
    assert wanted not in {e["resource"]["start"] for e in again.get("entry", [])}
    assert client.get("/fhir/Slot", headers=world.headers).status_code == 400  # no schedule
    schedule = client.get(f"/fhir/Schedule/{world.practitioner.id}", headers=world.headers).json()
    assert schedule["actor"][0]["reference"] == f"Practitioner/{world.practitioner.id}"


def test_a_questionnaire_response_is_submitted_and_scored(
    client: TestClient, session: Session, world: World
) -> None:
    response = {
        "resourceType": "QuestionnaireResponse",
        "identifier": {"system": codes.QR_IDEMPOTENCY, "value": "ehr-submission-0001"},
        "questionnaire": "https://prolo.example.org/fhir/Questionnaire/pain-nrs",
        "status": "completed",
        "subject": {"reference": f"Patient/{world.patient.id}"},
        "basedOn": [{"reference": f"CarePlan/{world.course.id}"}],
        "authored": "2026-03-01T09:00:00Z",
        "extension": [{"url": codes.PROLO_TIMEPOINT_EXT, "valueCode": "pre_session"}],
        "item": [{"linkId": "pain-nrs", "answer": [{"valueInteger": 4}]}],
    }
    r = client.post("/fhir/QuestionnaireResponse", json=response, headers=world.headers)
    assert r.status_code == 201, r.text
    created = r.json()
    check_resource(client, world.headers, created)
    assert created["item"] == response["item"]
    scores = session.scalars(select(Score).where(Score.response_id == int(created["id"]))).all()
    assert [(s.score_key, s.value) for s in scores] == [("total", 4.0)]
    observations = client.get(
        "/fhir/Observation",
        params={"derived-from": f"QuestionnaireResponse/{created['id']}"},
        headers=world.headers,
    ).json()
    assert observations["total"] == 1
    assert observations["entry"][0]["resource"]["valueQuantity"]["value"] == 4.0
    retry = client.post("/fhir/QuestionnaireResponse", json=response, headers=world.headers)
    assert retry.json()["id"] == created["id"]  # the submission key makes a retry harmless
    wrong = {
        **response,
        "identifier": None,
        "item": [{"linkId": "pain-nrs", "answer": [{"valueInteger": 14}]}],
    }
    del wrong["identifier"]
    r = client.post("/fhir/QuestionnaireResponse", json=wrong, headers=world.headers)
    assert r.status_code == 422 and r.json()["issue"][0]["expression"] == [
        "QuestionnaireResponse.item"
    ]
    odi = {
        **wrong,
        "questionnaire": "https://prolo.example.org/fhir/Questionnaire/odi",
        "item": [
            {
                "linkId": "odi-1",
                "answer": [{"valueCoding": {"system": "urn:prolo:answers:odi", "code": "9"}}],
            }
        ],
    }
    r = client.post("/fhir/QuestionnaireResponse", json=odi, headers=world.headers)
    assert r.status_code == 422 and "not an option" in r.json()["issue"][0]["diagnostics"]


def test_consent_reads_as_a_treatment_consent_for_the_course(
    client: TestClient, world: World
) -> None:
    consent = client.get(f"/fhir/Consent/{world.consent.id}", headers=world.headers).json()
    assert consent["status"] == "active"
    assert consent["provision"]["data"][0]["reference"] == {
        "reference": f"CarePlan/{world.course.id}"
    }
    assert [e["valueCode"] for e in consent["extension"]] == ["not-fda-approved", "pain-flare"]
    found = client.get(
        "/fhir/Consent",
        params={"data": f"CarePlan/{world.course.id}", "status": "active"},
        headers=world.headers,
    ).json()
    assert found["total"] == 1
    # Written through the courses service: this consent leaves out required statements.
    r = client.post("/fhir/Consent", json={**consent, "id": None}, headers=world.headers)
    assert r.status_code == 422, r.text
    assert "has not acknowledged" in r.json()["issue"][0]["diagnostics"]
