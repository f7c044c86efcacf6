"""Treatment courses through the API: planned from the knowledge base's protocol (or from
the clinician's figures when none is published), edited, moved through their statuses,
and informed consent before the first session. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from prolo.courses.consent import CONSENT_TEXTS, CURRENT_VERSION
from prolo.courses.models import Consent, TreatmentCourse
from prolo.knowledge.loader import get_condition
from prolo.scheduling.models import Appointment
from tests.factories import (
    make_clinic,
    make_patient,
    make_practitioner,
    make_room,
    make_user,
    set_working_hours,
    token_for,
)

REQUIRED = list(CONSENT_TEXTS[CURRENT_VERSION].required_ids)
NEW_YORK = ZoneInfo("America/New_York")


@pytest.fixture
def clinic_setup(session: Session):
    clinic = make_clinic(session)
    return {
        "clinic": clinic,
        "patient": make_patient(session, clinic),
        "clinician": token_for(session, make_user(session, clinic, "clinician")),
        "desk": token_for(session, make_user(session, clinic, "front_desk")),
    }


def plan(client: TestClient, setup, **body: object):
    return client.post(
        "/api/courses",
        json={"patient_id": setup["patient"].id, **body},
        headers=setup["clinician"],
    )


def test_a_course_from_a_published_protocol_takes_its_figures_and_sources(
    client: TestClient, clinic_setup
) -> None:
    protocol = get_condition("knee-osteoarthritis").protocol
    assert protocol.status == "published" and protocol.sessions and protocol.interval_weeks
    r = plan(client, clinic_setup, condition_id="knee-osteoarthritis")
    assert r.status_code == 201, r.text
    course = r.json()
    assert course["status"] == "planned"
    assert course["protocol_status"] == "published"
    assert course["planned_sessions"] == protocol.sessions.high
    assert course["interval_weeks_min"] == round(protocol.interval_weeks.low)
    assert course["interval_weeks_max"] == round(protocol.interval_weeks.high)
    assert course["injectate"] == protocol.injectate
    snapshot = course["protocol"]
    assert snapshot["condition_version"] == get_condition("knee-osteoarthritis").version
    assert [s["study_id"] for s in snapshot["sources"]] == [s.study_id for s in protocol.sources]
    assert all(s["url"].startswith("http") and s["locator"] for s in snapshot["sources"])
    assert [s["number"] for s in course["sessions"]] == list(range(1, protocol.sessions.high + 1))
    assert all(s["status"] == "not_booked" for s in course["sessions"])
    assert course["consent"] is None


def test_without_a_published_protocol_the_clinician_enters_every_figure(
    client: TestClient, session: Session, clinic_setup
) -> None:
    assert get_condition("fibromyalgia").protocol.status == "insufficient_evidence"
    r = plan(client, clinic_setup, condition_id="fibromyalgia", planned_sessions=3)
    assert r.status_code == 422
    problem = r.json()
    assert "no published protocol" in problem["detail"]
    assert {e["field"] for e in problem["errors"]} == {
        "interval_weeks_min",
        "interval_weeks_max",
        "injectate",
    }
    assert session.scalar(select(func.count(TreatmentCourse.id))) == 0
    r = plan(
        client,
        clinic_setup,
        condition_id="fibromyalgia",
        planned_sessions=3,
        interval_weeks_min=3,
        interval_weeks_max=5,
        injectate="Dextrose 12.5% with lidocaine 0.5%",
    )
    assert r.status_code == 201, r.text
    assert r.json()["protocol_status"] == "not_published"
    assert r.json()["protocol"]["status"] == "insufficient_evidence"
    assert r.json()["protocol"]["sources"] == []


def test_a_published_protocol_missing_a_figure_is_completed_by_the_clinician(
    client: TestClient, clinic_setup
) -> None:
    protocol = get_condition("achilles-tendinopathy").protocol
    assert protocol.status == "published" and protocol.sessions is None
    r = plan(client, clinic_setup, condition_id="achilles-tendinopathy")
    assert r.status_code == 422
    assert "does not give it" in r.json()["detail"]
    r = plan(
        client,
        clinic_setup,
        condition_id="achilles-tendinopathy",
        planned_sessions=4,
        interval_weeks_min=2,
        interval_weeks_max=3,
    )
    assert r.status_code == 201
    assert r.json()["protocol_status"] == "incomplete"
    assert r.json()["injectate"] == protocol.injectate


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"condition_id": "no-such-condition"}, "condition_id"),
        (
            {
                "condition_id": "knee-osteoarthritis",
                "interval_weeks_min": 6,
                "interval_weeks_max": 2,
            },
            "body",
        ),
        ({"condition_id": "knee-osteoarthritis", "planned_sessions": 0}, "planned_sessions"),
        (
            {"condition_id": "knee-osteoarthritis", "practitioner_id": 2_000_000_000},
            "practitioner_id",
        ),
        ({"condition_id": "knee-osteoarthritis", "diagnosis_id": 2_000_000_000}, "diagnosis_id"),
    ],
)
def test_bad_plans_name_the_field(client: TestClient, clinic_setup, body, field) -> None:
    r = plan(client, clinic_setup, **body)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == field


def test_only_clinicians_plan_and_staff_of_other_clinics_see_nothing(
    client: TestClient, session: Session, clinic_setup
) -> None:
    r = client.post(
        "/api/courses",
        json={"patient_id": clinic_setup["patient"].id, "condition_id": "knee-osteoarthritis"},
        headers=clinic_setup["desk"],
    )
    assert r.status_code == 403
    course = plan(client, clinic_setup, condition_id="knee-osteoarthritis").json()
    elsewhere = token_for(session, make_user(session, make_clinic(session), "clinician"))
    assert client.get(f"/api/courses/{course['id']}", headers=elsewhere).status_code == 404
    me = token_for(
        session,
        make_user(session, clinic_setup["clinic"], "patient", patient=clinic_setup["patient"]),
    )
    assert client.get(f"/api/courses/{course['id']}", headers=me).status_code == 200
    other = make_patient(session, clinic_setup["clinic"])
    them = token_for(session, make_user(session, clinic_setup["clinic"], "patient", patient=other))
    assert client.get(f"/api/courses/{course['id']}", headers=them).status_code == 404
    assert client.get("/api/courses", headers=them).json()["total"] == 0


def test_status_moves_are_validated_and_409_names_the_current_status(
    client: TestClient, clinic_setup
) -> None:
    course = plan(client, clinic_setup, condition_id="knee-osteoarthritis").json()
    url = f"/api/courses/{course['id']}/status"
    headers = clinic_setup["clinician"]
    r = client.post(url, json={"status": "completed"}, headers=headers)
    assert r.status_code == 409
    assert r.json()["current_status"] == "planned" and "planned" in r.json()["detail"]
    # starting needs consent on file
    r = client.post(url, json={"status": "active"}, headers=headers)
    assert r.status_code == 409 and r.json()["code"] == "consent_missing"
    client.post(
        f"/api/courses/{course['id']}/consent", json={"acknowledged": REQUIRED}, headers=headers
    )
    r = client.post(url, json={"status": "active"}, headers=headers)
    assert r.status_code == 200 and r.json()["status"] == "active"
    assert r.json()["started_on"] is not None
    # stopping needs a reason from the list
    assert client.post(url, json={"status": "stopped"}, headers=headers).status_code == 422
    r = client.post(url, json={"status": "stopped", "stop_reason": "bored"}, headers=headers)
    assert r.status_code == 422
    r = client.post(
        url, json={"status": "stopped", "stop_reason": "adverse_event"}, headers=headers
    )
    assert r.status_code == 200
    assert (r.json()["status"], r.json()["stop_reason"]) == ("stopped", "adverse_event")
    r = client.post(url, json={"status": "active"}, headers=headers)
    assert r.status_code == 409 and r.json()["current_status"] == "stopped"
    r = client.patch(f"/api/courses/{course['id']}", json={"planned_sessions": 2}, headers=headers)
    assert r.status_code == 409 and "stopped" in r.json()["detail"]


def test_stopping_a_course_cancels_its_future_sessions(
    client: TestClient, session: Session, clinic_setup
) -> None:
    clinic = clinic_setup["clinic"]
    doctor, room = make_practitioner(session, clinic), make_room(session, clinic)
    set_working_hours(session, doctor)
    course = plan(client, clinic_setup, condition_id="knee-osteoarthritis").json()
    day = dt.datetime.now(NEW_YORK).date() + dt.timedelta(days=5)
    booked = client.post(
        "/api/appointments",
        json={
            "patient_id": clinic_setup["patient"].id,
            "practitioner_id": doctor.id,
            "room_id": room.id,
            "kind": "injection",
            "starts_at": dt.datetime.combine(day, dt.time(10), NEW_YORK).isoformat(),
            "course_id": course["id"],
        },
        headers=clinic_setup["desk"],
    )
    assert booked.status_code == 201, booked.text
    detail = client.get(f"/api/courses/{course['id']}", headers=clinic_setup["clinician"]).json()
    assert detail["sessions"][0]["status"] == "booked"
    assert detail["sessions"][0]["appointment"]["id"] == booked.json()["id"]
    assert (
        detail["sessions"][1]["window_opens"]
        == (day + dt.timedelta(weeks=course["interval_weeks_min"])).isoformat()
    )
    r = client.post(
        f"/api/courses/{course['id']}/status",
        json={"status": "stopped", "stop_reason": "patient_choice"},
        headers=clinic_setup["clinician"],
    )
    assert r.status_code == 200
    appointment = session.get_one(Appointment, booked.json()["id"])
    session.refresh(appointment)
    assert (appointment.status, appointment.cancel_reason) == ("cancelled", "course_stopped")


def test_editing_the_plan(client: TestClient, clinic_setup) -> None:
    course = plan(client, clinic_setup, condition_id="knee-osteoarthritis").json()
    url = f"/api/courses/{course['id']}"
    r = client.patch(
        url,
        json={"planned_sessions": 4, "interval_weeks_max": 6, "preferences": {"weekdays": [1, 3]}},
        headers=clinic_setup["clinician"],
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["planned_sessions"], body["interval_weeks_max"]) == (4, 6)
    assert body["preferences"] == {"weekdays": [1, 3], "times": []}
    assert body["protocol"] == course["protocol"]  # the protocol as read stays for comparison
    r = client.patch(url, json={"interval_weeks_min": 9}, headers=clinic_setup["clinician"])
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "interval_weeks_max"


def test_consent_needs_every_required_statement(
    client: TestClient, session: Session, clinic_setup
) -> None:
    course = plan(client, clinic_setup, condition_id="knee-osteoarthritis").json()
    url = f"/api/courses/{course['id']}/consent"
    headers = clinic_setup["clinician"]
    partial = [s for s in REQUIRED if s != "not-fda-approved"]
    r = client.post(url, json={"acknowledged": partial}, headers=headers)
    assert r.status_code == 422
    assert r.json()["missing"] == ["not-fda-approved"]
    r = client.post(url, json={"acknowledged": [*REQUIRED, "made-up"]}, headers=headers)
    assert r.status_code == 422 and "made-up" in r.json()["detail"]
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
    r = client.post(url, json={"acknowledged": REQUIRED, "signed_at": future}, headers=headers)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "signed_at"
    assert session.scalar(select(func.count(Consent.id))) == 0
    r = client.post(url, json={"acknowledged": REQUIRED}, headers=headers)
    assert r.status_code == 201
    consent = r.json()
    assert consent["text_version"] == CURRENT_VERSION
    assert consent["recorded_by_name"] == "Test clinician"
    assert set(consent["items"]) == set(REQUIRED)
    detail = client.get(f"/api/courses/{course['id']}", headers=headers).json()
    assert detail["consent"]["id"] == consent["id"]
    r = client.post(f"{url}/withdraw", headers=headers)
    assert r.status_code == 200 and r.json()["withdrawn_at"] is not None
    assert client.get(f"/api/courses/{course['id']}", headers=headers).json()["consent"] is None
    assert (
        client.post(url, json={"acknowledged": REQUIRED}, headers=clinic_setup["desk"]).status_code
        == 403
    )


def test_the_consent_text_names_the_required_risks_with_sources(
    client: TestClient, clinic_setup
) -> None:
    r = client.get("/api/consent-texts/current", headers=clinic_setup["desk"])
    assert r.status_code == 200
    text = r.json()
    statements = {s["id"]: s for s in text["statements"]}
    for required in ("not-fda-approved", "pain-flare", "bleeding", "infection", "nerve-irritation"):
        assert statements[required]["required"]
        assert statements[required]["sources"], required
        for source in statements[required]["sources"]:
            assert source["source"] and source["url"].startswith("http") and source["locator"]
            assert source["grade"] in ("primary", "secondary")
    assert "FDA" in statements["not-fda-approved"]["text"]
    assert client.get("/api/consent-texts/1999-v0", headers=clinic_setup["desk"]).status_code == 404
