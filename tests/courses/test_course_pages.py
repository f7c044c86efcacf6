"""The clinician's course pages through the app: planning from the protocol (or without
one), consent with every required statement, auto-scheduling with a preview, and status
moves. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from prolo.courses.consent import CONSENT_TEXTS, CURRENT_VERSION
from prolo.courses.models import Consent, TreatmentCourse
from prolo.scheduling.models import Appointment
from prolo.security import service as security
from prolo.security.models import User
from tests.factories import (
    make_clinic,
    make_patient,
    make_practitioner,
    make_room,
    make_user,
    set_working_hours,
)

REQUIRED = list(CONSENT_TEXTS[CURRENT_VERSION].required_ids)


def log_in(client: TestClient, session: Session, user: User) -> str:
    secret, row = security.start_web_session(session=session, user=user, hours=1)
    client.cookies.set("prolo_session", secret)
    return row.csrf_token


@pytest.fixture
def clinic(session: Session):
    clinic = make_clinic(session)
    doctor = make_practitioner(session, clinic)
    set_working_hours(session, doctor, weekdays=range(5), start=dt.time(9), end=dt.time(17))
    make_room(session, clinic)
    return {
        "clinic": clinic,
        "patient": make_patient(session, clinic),
        "clinician": make_user(session, clinic, "clinician"),
    }


def test_planning_shows_the_protocol_and_requires_figures_without_one(
    client: TestClient, session: Session, clinic
) -> None:
    csrf = log_in(client, session, clinic["clinician"])
    page = client.get(
        "/courses/new",
        params={"patient_id": clinic["patient"].id, "condition_id": "knee-osteoarthritis"},
    )
    assert page.status_code == 200
    assert "Published protocol" in page.text and "Rabago" in page.text
    assert re.search(r'id="f-planned_sessions"[^>]*value="5"', page.text)  # prefilled
    without = client.get(
        "/courses/new", params={"patient_id": clinic["patient"].id, "condition_id": "fibromyalgia"}
    )
    assert "no published protocol" in without.text
    form = {
        "csrf_token": csrf,
        "patient_id": str(clinic["patient"].id),
        "condition_id": "fibromyalgia",
    }
    r = client.post("/courses/new", data=form)
    assert r.status_code == 422
    for name in ("planned_sessions", "interval_weeks_min", "interval_weeks_max", "injectate"):
        assert re.search(rf'id="f-{name}"[^>]*aria-invalid="true"', r.text), name
    assert session.scalar(select(func.count(TreatmentCourse.id))) == 0
    r = client.post(
        "/courses/new",
        data={
            **form,
            "planned_sessions": "3",
            "interval_weeks_min": "2",
            "interval_weeks_max": "4",
            "injectate": "Dextrose 12.5%",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303
    page = client.get(r.headers["location"])
    assert "No published protocol: figures entered by the clinician" in page.text
    assert "No consent on file" in page.text


def test_consent_then_schedule_then_start_from_the_course_page(
    client: TestClient, session: Session, clinic
) -> None:
    csrf = log_in(client, session, clinic["clinician"])
    r = client.post(
        "/courses/new",
        data={
            "csrf_token": csrf,
            "patient_id": str(clinic["patient"].id),
            "condition_id": "knee-osteoarthritis",
            "planned_sessions": "3",
            "interval_weeks_min": "4",
            "interval_weeks_max": "4",
            "injectate": "Dextrose 25%",
        },
        follow_redirects=False,
    )
    url = r.headers["location"]
    course_id = int(url.split("/")[-1])
    page = client.get(url)
    for statement in CONSENT_TEXTS[CURRENT_VERSION].statements:
        assert statement.text in page.text
    # one statement left out: refused, and the box list says why
    partial = client.post(f"{url}/consent", data={"csrf_token": csrf, "acknowledged": REQUIRED[1:]})
    assert partial.status_code == 422
    assert "Every statement marked required must be acknowledged." in partial.text
    assert session.scalar(select(func.count(Consent.id))) == 0
    r = client.post(
        f"{url}/consent",
        data={"csrf_token": csrf, "acknowledged": REQUIRED},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert "On file" in client.get(url).text
    # preview books nothing; booking places the three sessions four weeks apart
    preview = client.post(
        f"{url}/schedule",
        data={
            "csrf_token": csrf,
            "weekdays": ["1", "3"],
            "starts": "09:00",
            "ends": "12:00",
            "action": "preview",
        },
    )
    assert preview.status_code == 200 and "Preview" in preview.text
    assert session.scalar(select(func.count(Appointment.id))) == 0
    r = client.post(
        f"{url}/schedule",
        data={
            "csrf_token": csrf,
            "weekdays": ["1", "3"],
            "starts": "09:00",
            "ends": "12:00",
            "action": "book",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303
    rows = session.scalars(
        select(Appointment)
        .where(Appointment.course_id == course_id)
        .order_by(Appointment.session_number)
    ).all()
    assert [a.session_number for a in rows] == [1, 2, 3]
    assert "3 session(s) booked" in client.get(r.headers["location"]).text
    assert "Every planned session is booked." in client.get(url).text
    # start, then stop with a reason: the future sessions are cancelled
    r = client.post(
        f"{url}/status", data={"csrf_token": csrf, "status": "active"}, follow_redirects=False
    )
    assert r.status_code == 303
    r = client.post(
        f"{url}/status",
        data={"csrf_token": csrf, "status": "stopped", "stop_reason": "no_response"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    page = client.get(url).text
    assert "Stopped" in page and "No response" in page
    for appointment in rows:
        session.refresh(appointment)
        assert appointment.status == "cancelled"


def test_a_status_move_that_is_not_allowed_is_explained(
    client: TestClient, session: Session, clinic
) -> None:
    csrf = log_in(client, session, clinic["clinician"])
    course = TreatmentCourse(
        clinic_id=clinic["clinic"].id,
        patient_id=clinic["patient"].id,
        condition_id="knee-osteoarthritis",
        status="planned",
        planned_sessions=3,
        interval_weeks_min=4,
        interval_weeks_max=4,
        injectate="x",
    )
    session.add(course)
    session.flush()
    r = client.post(f"/courses/{course.id}/status", data={"csrf_token": csrf, "status": "active"})
    assert r.status_code == 409 and "informed consent" in r.text
    r = client.post(
        f"/courses/{course.id}/status", data={"csrf_token": csrf, "status": "completed"}
    )
    assert r.status_code == 409 and "the course is planned" in r.text


def test_course_pages_are_for_clinicians(client: TestClient, session: Session, clinic) -> None:
    desk = make_user(session, clinic["clinic"], "front_desk")
    log_in(client, session, desk)
    assert client.get("/courses").status_code == 403
    assert client.get("/courses/new").status_code == 403
