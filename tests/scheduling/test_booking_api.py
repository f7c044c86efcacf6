"""Booking through the API: the 409 for every kind of double booking, every bad input a
clear 4xx naming the problem with nothing changed, moves, cancellations, no-shows, and
who may do what. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from prolo.clinic.models import Clinic, Practitioner, Room
from prolo.patients.models import Patient
from prolo.scheduling.models import Appointment, CalendarClosure
from prolo.security.models import AuditEvent
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


def local(days_ahead: int, hour: int, minute: int = 0) -> dt.datetime:
    """A clinic-local wall time ``days_ahead`` days from today, as an aware datetime."""
    day = dt.datetime.now(NEW_YORK).date() + dt.timedelta(days=days_ahead)
    return dt.datetime.combine(day, dt.time(hour, minute), NEW_YORK)


@dataclass
class Calendar:
    clinic: Clinic
    doctor: Practitioner
    other_doctor: Practitioner
    room: Room
    other_room: Room
    patient: Patient
    other_patient: Patient
    desk: dict[str, str]
    clinician: dict[str, str]


@pytest.fixture
def cal(session: Session) -> Calendar:
    clinic = make_clinic(session)
    doctor, other_doctor = make_practitioner(session, clinic), make_practitioner(session, clinic)
    for practitioner in (doctor, other_doctor):
        set_working_hours(session, practitioner)  # every day 08:00-18:00 local
    return Calendar(
        clinic=clinic,
        doctor=doctor,
        other_doctor=other_doctor,
        room=make_room(session, clinic),
        other_room=make_room(session, clinic),
        patient=make_patient(session, clinic),
        other_patient=make_patient(session, clinic),
        desk=token_for(session, make_user(session, clinic, "front_desk")),
        clinician=token_for(session, make_user(session, clinic, "clinician")),
    )


def booking(cal: Calendar, when: dt.datetime, **overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "patient_id": cal.patient.id,
        "practitioner_id": cal.doctor.id,
        "room_id": cal.room.id,
        "kind": "injection",
        "starts_at": when.isoformat(),
    }
    body.update(overrides)
    return body


def count_appointments(session: Session) -> int:
    return session.scalar(select(func.count(Appointment.id))) or 0


def test_book_an_injection_session_holds_room_30_minutes_and_practitioner_20(
    client: TestClient, session: Session, cal: Calendar
) -> None:
    when = local(3, 10)
    r = client.post("/api/appointments", json=booking(cal, when), headers=cal.desk)
    assert r.status_code == 201, r.text
    body = r.json()
    assert dt.datetime.fromisoformat(body["starts_at"]) == when
    assert dt.datetime.fromisoformat(body["ends_at"]) == when + dt.timedelta(minutes=30)
    # preparation and treatment need the practitioner, recovery does not
    assert dt.datetime.fromisoformat(body["practitioner_starts_at"]) == when
    assert dt.datetime.fromisoformat(body["practitioner_ends_at"]) == when + dt.timedelta(
        minutes=20
    )
    assert body["status"] == "booked"
    stored = session.get_one(Appointment, body["id"])
    assert stored.starts_at.utcoffset() == dt.timedelta(0)  # stored in UTC
    events = session.scalars(
        select(AuditEvent.event).where(AuditEvent.entity_id == str(body["id"]))
    ).all()
    assert "appointment.create" in events


@pytest.mark.parametrize(
    ("resource", "second", "field"),
    [
        ("practitioner", {"room": "other_room", "patient": "other_patient"}, "practitioner_id"),
        ("room", {"practitioner": "other_doctor", "patient": "other_patient"}, "room_id"),
        ("patient", {"practitioner": "other_doctor", "room": "other_room"}, "patient_id"),
    ],
)
def test_overlap_on_any_resource_is_a_409_naming_the_appointment(
    client: TestClient,
    session: Session,
    cal: Calendar,
    resource: str,
    second: dict[str, str],
    field: str,
) -> None:
    when = local(4, 11)
    first = client.post("/api/appointments", json=booking(cal, when), headers=cal.desk).json()
    overrides: dict[str, object] = {}
    if "room" in second:
        overrides["room_id"] = getattr(cal, second["room"]).id
    if "patient" in second:
        overrides["patient_id"] = getattr(cal, second["patient"]).id
    if "practitioner" in second:
        overrides["practitioner_id"] = getattr(cal, second["practitioner"]).id
    before = count_appointments(session)
    # 10 minutes later: overlaps the practitioner's treatment phase and the room's visit
    r = client.post(
        "/api/appointments",
        json=booking(cal, when + dt.timedelta(minutes=10), **overrides),
        headers=cal.desk,
    )
    assert r.status_code == 409, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["code"] == "double_booked"
    assert problem["conflicting_appointment"]["id"] == first["id"]
    assert problem["conflicting_appointment"]["resource"] == resource
    assert problem["errors"][0]["field"] == field
    assert f"appointment {first['id']}" in problem["detail"]
    assert when.strftime("%H:%M") in problem["detail"]  # the time, in the clinic's zone
    # never the other patient's identity
    assert cal.patient.family_name not in r.text and cal.patient.mrn not in r.text
    assert count_appointments(session) == before


def test_practitioner_can_start_in_another_room_during_recovery(
    client: TestClient, session: Session, cal: Calendar
) -> None:
    when = local(5, 9)
    assert (
        client.post("/api/appointments", json=booking(cal, when), headers=cal.desk).status_code
        == 201
    )
    staggered = booking(
        cal,
        when + dt.timedelta(minutes=20),
        room_id=cal.other_room.id,
        patient_id=cal.other_patient.id,
    )
    r = client.post("/api/appointments", json=staggered, headers=cal.desk)
    assert r.status_code == 201, r.text
    # ... but the first room is still held until the visit ends
    third = make_patient(session, cal.clinic)
    same_room = booking(
        cal,
        when + dt.timedelta(minutes=25),
        practitioner_id=cal.other_doctor.id,
        patient_id=third.id,
    )
    r = client.post("/api/appointments", json=same_room, headers=cal.desk)
    assert r.status_code == 409
    assert r.json()["conflicting_appointment"]["resource"] == "room"


def test_back_to_back_visits_do_not_overlap(client: TestClient, cal: Calendar) -> None:
    when = local(5, 14)
    for offset in (0, 30, 60):
        r = client.post(
            "/api/appointments",
            json=booking(cal, when + dt.timedelta(minutes=offset)),
            headers=cal.desk,
        )
        assert r.status_code == 201, r.text


@pytest.mark.parametrize(
    ("change", "status", "code", "field", "words"),
    [
        ({"starts_at": "past"}, 422, "in_the_past", "starts_at", "in the past"),
        ({"starts_at": "early"}, 422, "outside_working_hours", "starts_at", "working hours"),
        ({"starts_at": "late"}, 422, "outside_working_hours", "starts_at", "working hours"),
        ({"ends_at": 20}, 422, "shorter_than_type", "ends_at", "30 minutes"),
        (
            {"practitioner_id": 2_000_000_000},
            422,
            "validation_failed",
            "practitioner_id",
            "no such",
        ),
        ({"room_id": 2_000_000_000}, 422, "validation_failed", "room_id", "no such room"),
        ({"starts_at": "off-grid"}, 422, "validation_failed", "starts_at", "5-minute"),
        ({"starts_at": "naive"}, 422, "validation_failed", "starts_at", "timezone"),
        ({"kind": "surgery"}, 422, "validation_failed", "kind", ""),
    ],
)
def test_bad_input_names_the_problem_and_changes_nothing(
    client: TestClient,
    session: Session,
    cal: Calendar,
    change: dict[str, object],
    status: int,
    code: str,
    field: str,
    words: str,
) -> None:
    when = local(6, 10)
    body = booking(cal, when)
    starts = change.get("starts_at")
    if starts == "past":
        body["starts_at"] = (
            (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
            .replace(minute=0, second=0, microsecond=0)
            .isoformat()
        )
    elif starts == "early":
        body["starts_at"] = local(6, 7, 45).isoformat()  # 07:45-08:15, hours start at 08:00
    elif starts == "late":
        body["starts_at"] = local(6, 17, 45).isoformat()  # runs past 18:00
    elif starts == "off-grid":
        body["starts_at"] = local(6, 10, 7).isoformat()
    elif starts == "naive":
        body["starts_at"] = "2030-01-07T10:00:00"
    if "ends_at" in change:
        minutes = change["ends_at"]
        assert isinstance(minutes, int)
        body["ends_at"] = (when + dt.timedelta(minutes=minutes)).isoformat()
    for key in ("practitioner_id", "room_id", "kind"):
        if key in change:
            body[key] = change[key]
    before = count_appointments(session)
    r = client.post("/api/appointments", json=body, headers=cal.desk)
    assert r.status_code == status, r.text
    problem = r.json()
    assert problem["code"] == code
    assert problem["errors"][0]["field"] == field
    assert words.lower() in (problem["detail"] + problem["errors"][0]["message"]).lower()
    assert count_appointments(session) == before


@pytest.mark.parametrize("scope", ["clinic", "room", "practitioner"])
def test_closed_days_refuse_bookings(
    client: TestClient, session: Session, cal: Calendar, scope: str
) -> None:
    when = local(8, 10)
    day = when.date()
    closure = CalendarClosure(
        clinic_id=cal.clinic.id,
        first_day=day,
        last_day=day,
        reason="Inventory",
        room_id=cal.room.id if scope == "room" else None,
        practitioner_id=cal.doctor.id if scope == "practitioner" else None,
    )
    session.add(closure)
    session.flush()
    r = client.post("/api/appointments", json=booking(cal, when), headers=cal.desk)
    assert r.status_code == 422
    problem = r.json()
    assert problem["code"] == "closed"
    expected_field = {"clinic": "starts_at", "room": "room_id", "practitioner": "practitioner_id"}
    assert problem["errors"][0]["field"] == expected_field[scope]
    assert day.strftime("%d %b %Y") in problem["detail"]
    if scope == "room":  # another room is open that day
        r = client.post(
            "/api/appointments",
            json=booking(cal, when, room_id=cal.other_room.id),
            headers=cal.desk,
        )
        assert r.status_code == 201


def test_a_staff_member_of_another_clinic_cannot_book_our_patient(
    client: TestClient, session: Session, cal: Calendar
) -> None:
    elsewhere = make_clinic(session)
    headers = token_for(session, make_user(session, elsewhere, "front_desk"))
    r = client.post("/api/appointments", json=booking(cal, local(3, 10)), headers=headers)
    assert r.status_code == 404
    assert count_appointments(session) == 0


def test_researchers_and_patients_cannot_book(
    client: TestClient, session: Session, cal: Calendar
) -> None:
    researcher = token_for(session, make_user(session, cal.clinic, "researcher"))
    patient = token_for(session, make_user(session, cal.clinic, "patient", patient=cal.patient))
    for headers in (researcher, patient):
        r = client.post("/api/appointments", json=booking(cal, local(3, 10)), headers=headers)
        assert r.status_code == 403


def test_reschedule_moves_the_visit_and_checks_like_a_booking(
    client: TestClient, session: Session, cal: Calendar
) -> None:
    first = client.post(
        "/api/appointments", json=booking(cal, local(9, 10)), headers=cal.desk
    ).json()
    blocker = client.post(
        "/api/appointments",
        json=booking(cal, local(9, 12), patient_id=cal.other_patient.id),
        headers=cal.desk,
    ).json()
    url = f"/api/appointments/{first['id']}/reschedule"
    # moving onto the other visit is refused, naming it
    r = client.post(url, json={"starts_at": local(9, 12, 10).isoformat()}, headers=cal.desk)
    assert r.status_code == 409
    assert r.json()["conflicting_appointment"]["id"] == blocker["id"]
    # moving by ten minutes overlaps only itself: allowed
    r = client.post(url, json={"starts_at": local(9, 10, 10).isoformat()}, headers=cal.desk)
    assert r.status_code == 200, r.text
    assert dt.datetime.fromisoformat(r.json()["starts_at"]) == local(9, 10, 10)
    # to another room and day
    r = client.post(
        url,
        json={"starts_at": local(10, 15).isoformat(), "room_id": cal.other_room.id},
        headers=cal.desk,
    )
    assert r.status_code == 200
    assert r.json()["room_id"] == cal.other_room.id
    assert r.json()["id"] == first["id"]
    # outside hours
    r = client.post(url, json={"starts_at": local(10, 19).isoformat()}, headers=cal.desk)
    assert r.status_code == 422 and r.json()["code"] == "outside_working_hours"
    stored = session.get_one(Appointment, first["id"])
    session.refresh(stored)
    assert stored.starts_at == local(10, 15)


def test_cancelling_frees_the_slot(client: TestClient, cal: Calendar) -> None:
    when = local(11, 10)
    first = client.post("/api/appointments", json=booking(cal, when), headers=cal.desk).json()
    other = booking(cal, when, patient_id=cal.other_patient.id)
    assert client.post("/api/appointments", json=other, headers=cal.desk).status_code == 409
    r = client.post(
        f"/api/appointments/{first['id']}/cancel",
        json={"reason": "clinic_request"},
        headers=cal.desk,
    )
    assert r.status_code == 200
    assert r.json()["status"] == "cancelled" and r.json()["cancel_reason"] == "clinic_request"
    assert client.post("/api/appointments", json=other, headers=cal.desk).status_code == 201
    # a cancelled visit cannot be cancelled again or moved: 409 naming its status
    again = client.post(f"/api/appointments/{first['id']}/cancel", headers=cal.desk)
    assert again.status_code == 409 and again.json()["current_status"] == "cancelled"
    moved = client.post(
        f"/api/appointments/{first['id']}/reschedule",
        json={"starts_at": local(12, 10).isoformat()},
        headers=cal.desk,
    )
    assert moved.status_code == 409 and "cancelled" in moved.json()["detail"]


def test_no_show_only_after_the_start(client: TestClient, session: Session, cal: Calendar) -> None:
    from prolo.scheduling import service
    from tests.factories import principal_for

    future = client.post(
        "/api/appointments", json=booking(cal, local(2, 10)), headers=cal.desk
    ).json()
    r = client.post(f"/api/appointments/{future['id']}/no-show", headers=cal.desk)
    assert r.status_code == 409 and "not started" in r.json()["detail"]
    desk = principal_for(make_user(session, cal.clinic, "front_desk"))
    later = local(2, 10, 5)
    appointment = service.mark_no_show(
        session=session, principal=desk, appointment_id=future["id"], now=later
    )
    assert appointment.status == "noshow"
    # a no-show frees the time for someone else
    r = client.post(
        "/api/appointments",
        json=booking(cal, local(2, 10), patient_id=cal.other_patient.id),
        headers=cal.desk,
    )
    assert r.status_code == 201, r.text


def test_patient_sees_and_cancels_only_their_own(
    client: TestClient, session: Session, cal: Calendar
) -> None:
    mine = client.post("/api/appointments", json=booking(cal, local(3, 9)), headers=cal.desk).json()
    theirs = client.post(
        "/api/appointments",
        json=booking(cal, local(3, 13), patient_id=cal.other_patient.id),
        headers=cal.desk,
    ).json()
    me = token_for(session, make_user(session, cal.clinic, "patient", patient=cal.patient))
    day = local(3, 9).date().isoformat()
    listed = client.get("/api/appointments", params={"from": day, "to": day}, headers=me)
    assert [a["id"] for a in listed.json()] == [mine["id"]]
    assert client.get(f"/api/appointments/{theirs['id']}", headers=me).status_code == 404
    assert client.post(f"/api/appointments/{theirs['id']}/cancel", headers=me).status_code == 404
    r = client.post(f"/api/appointments/{mine['id']}/cancel", headers=me)
    assert r.status_code == 200 and r.json()["cancel_reason"] == "patient_request"


def test_fulfilling_an_injection_needs_consent_and_starts_the_course(
    client: TestClient, session: Session, cal: Calendar
) -> None:
    from prolo.courses.consent import CONSENT_TEXTS, CURRENT_VERSION
    from prolo.courses.models import TreatmentCourse
    from prolo.scheduling import service
    from tests.factories import principal_for

    course = make_course(session, cal.patient)
    booked = client.post(
        "/api/appointments", json=booking(cal, local(2, 9), course_id=course.id), headers=cal.desk
    ).json()
    assert booked["session_number"] == 1
    clinician = principal_for(make_user(session, cal.clinic, "clinician"))
    with pytest.raises(service.courses_service.ConsentMissing):
        service.mark_fulfilled(
            session=session,
            principal=clinician,
            appointment_id=booked["id"],
            now=local(2, 9, 30),
        )
    r = client.post(
        f"/api/courses/{course.id}/consent",
        json={"acknowledged": list(CONSENT_TEXTS[CURRENT_VERSION].required_ids)},
        headers=cal.clinician,
    )
    assert r.status_code == 201, r.text
    done = service.mark_fulfilled(
        session=session, principal=clinician, appointment_id=booked["id"], now=local(2, 9, 30)
    )
    assert done.status == "fulfilled"
    assert session.get_one(TreatmentCourse, course.id).status == "active"
    # the front desk may not mark a visit done
    r = client.post(f"/api/appointments/{booked['id']}/fulfil", headers=cal.desk)
    assert r.status_code == 403


def test_course_sessions_are_numbered_and_capped(
    client: TestClient, session: Session, cal: Calendar
) -> None:
    course = make_course(session, cal.patient, sessions=2)
    numbers = []
    for week in (1, 3):
        r = client.post(
            "/api/appointments",
            json=booking(cal, local(7 * week, 10), course_id=course.id),
            headers=cal.desk,
        )
        assert r.status_code == 201, r.text
        numbers.append(r.json()["session_number"])
    assert numbers == [1, 2]
    r = client.post(
        "/api/appointments",
        json=booking(cal, local(35, 10), course_id=course.id),
        headers=cal.desk,
    )
    assert r.status_code == 409 and "2 planned sessions" in r.json()["detail"]
    other_course = make_course(session, cal.other_patient)
    r = client.post(
        "/api/appointments",
        json=booking(cal, local(36, 10), course_id=other_course.id),
        headers=cal.desk,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "course_id"


def test_the_list_is_filtered_by_day_practitioner_and_room(
    client: TestClient, cal: Calendar
) -> None:
    a = client.post("/api/appointments", json=booking(cal, local(4, 9)), headers=cal.desk).json()
    b = client.post(
        "/api/appointments",
        json=booking(
            cal,
            local(4, 9),
            practitioner_id=cal.other_doctor.id,
            room_id=cal.other_room.id,
            patient_id=cal.other_patient.id,
        ),
        headers=cal.desk,
    ).json()
    day = local(4, 9).date().isoformat()
    everything = client.get("/api/appointments", params={"from": day, "to": day}, headers=cal.desk)
    assert {x["id"] for x in everything.json()} == {a["id"], b["id"]}
    by_room = client.get(
        "/api/appointments",
        params={"from": day, "to": day, "room_id": cal.other_room.id},
        headers=cal.desk,
    )
    assert [x["id"] for x in by_room.json()] == [b["id"]]
    by_doctor = client.get(
        "/api/appointments",
        params={"from": day, "to": day, "practitioner_id": cal.doctor.id},
        headers=cal.desk,
    )
    assert [x["id"] for x in by_doctor.json()] == [a["id"]]
    too_long = client.get(
        "/api/appointments", params={"from": day, "to": "2100-01-01"}, headers=cal.desk
    )
    assert too_long.status_code == 422


def test_reminders_follow_the_booking_in_its_own_transaction(
    client: TestClient, session: Session, cal: Calendar
) -> None:
    from prolo.notify.models import OutboxJob

    def jobs(appointment_id: int) -> list[OutboxJob]:
        session.expire_all()
        return list(
            session.scalars(select(OutboxJob).where(OutboxJob.appointment_id == appointment_id))
        )

    booked = client.post(
        "/api/appointments", json=booking(cal, local(6, 11)), headers=cal.desk
    ).json()
    first = jobs(booked["id"])
    assert first and all(j.status == "pending" for j in first)
    assert all(j.due_at < local(6, 11) for j in first)
    r = client.post(
        f"/api/appointments/{booked['id']}/reschedule",
        json={"starts_at": local(8, 14).isoformat()},
        headers=cal.desk,
    )
    assert r.status_code == 200
    after_move = jobs(booked["id"])
    pending = [j for j in after_move if j.status == "pending"]
    assert pending and all(j.due_at < local(8, 14) for j in pending)
    assert {j.id for j in first} <= {j.id for j in after_move if j.status == "cancelled"}
    # a refused booking leaves no reminder behind
    refused = client.post(
        "/api/appointments",
        json=booking(cal, local(8, 14), patient_id=cal.other_patient.id),
        headers=cal.desk,
    )
    assert refused.status_code == 409
    session.expire_all()
    assert (
        session.scalar(
            select(func.count(OutboxJob.id)).where(OutboxJob.patient_id == cal.other_patient.id)
        )
        == 0
    )
    client.post(f"/api/appointments/{booked['id']}/cancel", headers=cal.desk)
    assert all(j.status == "cancelled" for j in jobs(booked["id"]))
