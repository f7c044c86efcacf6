"""The course auto-scheduler: every session inside its protocol window, at the patient's
preferred local days and times, with a practitioner and a room free, booked through the
same checks as a manual booking. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from prolo.scheduling.models import Appointment
from tests.factories import (
    make_clinic,
    make_course,
    make_patient,
    make_practitioner,
    make_room,
    make_user,
    set_working_hours,
    token_for,
)

NEW_YORK = ZoneInfo("America/New_York")
TUESDAY, THURSDAY = 1, 3


@pytest.fixture
def clinic(session: Session):
    clinic = make_clinic(session)
    doctors = [make_practitioner(session, clinic) for _ in range(2)]
    for doctor in doctors:
        set_working_hours(session, doctor, weekdays=range(5), start=dt.time(9), end=dt.time(17))
    return {
        "clinic": clinic,
        "doctors": doctors,
        "rooms": [make_room(session, clinic) for _ in range(2)],
        "patient": make_patient(session, clinic),
        "desk": token_for(session, make_user(session, clinic, "front_desk")),
    }


def _course_appointments(session: Session, course_id: int) -> list[Appointment]:
    return list(
        session.scalars(
            select(Appointment)
            .where(Appointment.course_id == course_id, Appointment.status == "booked")
            .order_by(Appointment.session_number)
        )
    )


def test_all_sessions_land_in_their_windows_at_preferred_times(
    client: TestClient, session: Session, clinic
) -> None:
    course = make_course(session, clinic["patient"], sessions=4, interval_weeks=(2, 4))
    r = client.post(
        f"/api/courses/{course.id}/schedule",
        json={
            "preferences": {
                "weekdays": [TUESDAY, THURSDAY],
                "times": [{"starts": "09:00", "ends": "12:00"}],
            }
        },
        headers=clinic["desk"],
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["unplaced"] == []
    assert [p["session_number"] for p in body["placed"]] == [1, 2, 3, 4]
    assert all(p["in_window"] and p["preference_met"] for p in body["placed"])
    appointments = _course_appointments(session, course.id)
    assert [a.id for a in appointments] == [p["appointment_id"] for p in body["placed"]]
    days = []
    for appointment in appointments:
        start = appointment.starts_at.astimezone(NEW_YORK)
        end = appointment.ends_at.astimezone(NEW_YORK)
        assert start.weekday() in (TUESDAY, THURSDAY)
        assert dt.time(9) <= start.time() and end.time() <= dt.time(12)
        assert end - start == dt.timedelta(minutes=30)
        days.append(start.date())
    today = dt.datetime.now(NEW_YORK).date()
    assert today < days[0] <= today + dt.timedelta(days=15)  # first window: two weeks
    for before, after in zip(days, days[1:], strict=False):
        assert 14 <= (after - before).days <= 28  # interval 2 to 4 weeks
    session.refresh(course)
    assert course.preferences == {"weekdays": [TUESDAY, THURSDAY], "times": [["09:00", "12:00"]]}


def test_a_dry_run_plans_without_booking(client: TestClient, session: Session, clinic) -> None:
    course = make_course(session, clinic["patient"], sessions=3)
    r = client.post(
        f"/api/courses/{course.id}/schedule", json={"dry_run": True}, headers=clinic["desk"]
    )
    assert r.status_code == 200
    assert len(r.json()["placed"]) == 3
    assert all(p["appointment_id"] is None for p in r.json()["placed"])
    assert session.scalar(select(func.count(Appointment.id))) == 0


def test_the_plan_works_around_busy_practitioners_rooms_and_the_patient(
    client: TestClient, session: Session, clinic
) -> None:
    """Fill the first preferred mornings with other visits; the plan must avoid them all."""
    others = [make_patient(session, clinic["clinic"]) for _ in range(8)]
    today = dt.datetime.now(NEW_YORK).date()
    day = today + dt.timedelta(days=1)
    booked = 0
    while booked < 8:
        if day.weekday() == TUESDAY:
            for hour in (9, 10):
                for i, doctor in enumerate(clinic["doctors"]):
                    r = client.post(
                        "/api/appointments",
                        json={
                            "patient_id": others[booked].id,
                            "practitioner_id": doctor.id,
                            "room_id": clinic["rooms"][i].id,
                            "kind": "injection",
                            "starts_at": dt.datetime.combine(
                                day, dt.time(hour), NEW_YORK
                            ).isoformat(),
                        },
                        headers=clinic["desk"],
                    )
                    assert r.status_code == 201, r.text
                    booked += 1
        day += dt.timedelta(days=1)
    course = make_course(session, clinic["patient"], sessions=3, interval_weeks=(1, 2))
    r = client.post(
        f"/api/courses/{course.id}/schedule",
        json={
            "preferences": {"weekdays": [TUESDAY], "times": [{"starts": "09:00", "ends": "11:00"}]}
        },
        headers=clinic["desk"],
    )
    assert r.status_code == 200, r.text
    assert len(r.json()["placed"]) == 3 and r.json()["unplaced"] == []
    rows = session.scalars(select(Appointment).where(Appointment.status == "booked")).all()
    for a in rows:  # an independent pairwise check of everything in the calendar
        for b in rows:
            if a.id >= b.id:
                continue
            overlap = a.starts_at < b.ends_at and b.starts_at < a.ends_at
            assert not (overlap and a.room_id == b.room_id), (a.id, b.id)
            assert not (overlap and a.patient_id == b.patient_id), (a.id, b.id)
            (pa0, pa1), (pb0, pb1) = a.practitioner_span, b.practitioner_span
            held = pa0 < pb1 and pb0 < pa1
            assert not (held and a.practitioner_id == b.practitioner_id), (a.id, b.id)


def test_scheduling_continues_from_the_last_booked_session(
    client: TestClient, session: Session, clinic
) -> None:
    course = make_course(session, clinic["patient"], sessions=3, interval_weeks=(3, 3))
    today = dt.datetime.now(NEW_YORK).date()
    first_day = today + dt.timedelta(days=2)
    while first_day.weekday() >= 5:
        first_day += dt.timedelta(days=1)
    r = client.post(
        "/api/appointments",
        json={
            "patient_id": clinic["patient"].id,
            "practitioner_id": clinic["doctors"][0].id,
            "room_id": clinic["rooms"][0].id,
            "kind": "injection",
            "starts_at": dt.datetime.combine(first_day, dt.time(14), NEW_YORK).isoformat(),
            "course_id": course.id,
        },
        headers=clinic["desk"],
    )
    assert r.status_code == 201 and r.json()["session_number"] == 1
    r = client.post(f"/api/courses/{course.id}/schedule", json={}, headers=clinic["desk"])
    assert r.status_code == 200, r.text
    placed = r.json()["placed"]
    assert [p["session_number"] for p in placed] == [2, 3]
    second = dt.datetime.fromisoformat(placed[0]["starts_at"]).astimezone(NEW_YORK).date()
    third = dt.datetime.fromisoformat(placed[1]["starts_at"]).astimezone(NEW_YORK).date()
    assert (second - first_day).days == 21 and (third - second).days == 21
    # every session is booked now
    r = client.post(f"/api/courses/{course.id}/schedule", json={}, headers=clinic["desk"])
    assert r.status_code == 409 and "all 3 sessions" in r.json()["detail"]


def test_nothing_is_booked_when_nobody_works(client: TestClient, session: Session) -> None:
    clinic = make_clinic(session)
    make_practitioner(session, clinic)  # no working hours
    make_room(session, clinic)
    course = make_course(session, make_patient(session, clinic), sessions=2)
    desk = token_for(session, make_user(session, clinic, "front_desk"))
    r = client.post(f"/api/courses/{course.id}/schedule", json={}, headers=desk)
    assert r.status_code == 200
    assert r.json()["placed"] == []
    assert [u["session_number"] for u in r.json()["unplaced"]] == [1, 2]
    assert "working hours" in r.json()["unplaced"][0]["reason"]
    assert session.scalar(select(func.count(Appointment.id))) == 0


def test_closed_courses_and_patients_cannot_be_scheduled(
    client: TestClient, session: Session, clinic
) -> None:
    done = make_course(session, clinic["patient"], status="completed")
    r = client.post(f"/api/courses/{done.id}/schedule", json={}, headers=clinic["desk"])
    assert r.status_code == 409 and r.json()["current_status"] == "completed"
    course = make_course(session, clinic["patient"])
    patient = token_for(
        session, make_user(session, clinic["clinic"], "patient", patient=clinic["patient"])
    )
    r = client.post(f"/api/courses/{course.id}/schedule", json={}, headers=patient)
    assert r.status_code == 403


def test_visits_written_without_a_session_number_count_as_sessions(
    client: TestClient, session: Session, clinic
) -> None:
    """Older rows and synthetic data link visits to a course without numbering them."""
    course = make_course(session, clinic["patient"], sessions=3, interval_weeks=(2, 3))
    day = dt.datetime.now(NEW_YORK).date() + dt.timedelta(days=3)
    while day.weekday() >= 5:
        day += dt.timedelta(days=1)
    start = dt.datetime.combine(day, dt.time(10), NEW_YORK)
    legacy = Appointment(
        clinic_id=clinic["clinic"].id,
        patient_id=clinic["patient"].id,
        practitioner_id=clinic["doctors"][0].id,
        room_id=clinic["rooms"][0].id,
        course_id=course.id,
        kind="injection",
        status="booked",
        starts_at=start,
        ends_at=start + dt.timedelta(minutes=30),
    )
    session.add(legacy)
    session.flush()
    clinician = token_for(session, make_user(session, clinic["clinic"], "clinician"))
    detail = client.get(f"/api/courses/{course.id}", headers=clinician).json()
    assert detail["sessions"][0]["appointment"]["id"] == legacy.id
    assert detail["sessions"][1]["window_opens"] == (day + dt.timedelta(weeks=2)).isoformat()
    r = client.post(f"/api/courses/{course.id}/schedule", json={}, headers=clinic["desk"])
    assert r.status_code == 200, r.text
    assert [p["session_number"] for p in r.json()["placed"]] == [2, 3]
    second = dt.datetime.fromisoformat(r.json()["placed"][0]["starts_at"]).astimezone(NEW_YORK)
    assert 14 <= (second.date() - day).days <= 21
