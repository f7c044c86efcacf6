"""Booking, moving and cancelling through the scheduling API keep the reminders in step."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from prolo.notify.models import OutboxJob
from tests.factories import (
    make_clinic,
    make_patient,
    make_practitioner,
    make_room,
    make_user,
    set_working_hours,
    token_for,
)

NEW_YORK = ZoneInfo("America/New_York")


def _jobs(session: Session, appointment_id: int) -> list[tuple[str, dt.datetime, str]]:
    session.expire_all()
    rows = session.scalars(
        select(OutboxJob).where(OutboxJob.appointment_id == appointment_id).order_by(OutboxJob.id)
    ).all()
    return [(j.status, j.due_at, j.payload["starts_at"]) for j in rows]


def test_reminders_follow_the_booking_through_move_and_cancel(
    client: TestClient, session: Session
) -> None:
    clinic = make_clinic(session)
    practitioner = make_practitioner(session, clinic)
    set_working_hours(session, practitioner)
    room = make_room(session, clinic)
    patient = make_patient(session, clinic, email="ana@example.com")
    headers = token_for(session, make_user(session, clinic, "front_desk"))
    day = dt.datetime.now(NEW_YORK).date() + dt.timedelta(days=5)
    starts = dt.datetime.combine(day, dt.time(10, 0), tzinfo=NEW_YORK)
    r = client.post(
        "/api/appointments",
        json={
            "patient_id": patient.id,
            "practitioner_id": practitioner.id,
            "room_id": room.id,
            "kind": "consultation",
            "starts_at": starts.isoformat(),
        },
        headers=headers,
    )
    assert r.status_code == 201, r.text
    appointment_id = r.json()["id"]
    booked = _jobs(session, appointment_id)
    assert sorted(due for _, due, _ in booked) == [
        starts - dt.timedelta(hours=48),
        starts - dt.timedelta(hours=3),
    ]
    assert {status for status, _, _ in booked} == {"pending"}

    moved_to = starts + dt.timedelta(days=1, hours=2)
    r = client.post(
        f"/api/appointments/{appointment_id}/reschedule",
        json={"starts_at": moved_to.isoformat()},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    after_move = _jobs(session, appointment_id)
    pending = sorted(due for status, due, _ in after_move if status == "pending")
    assert pending == [moved_to - dt.timedelta(hours=48), moved_to - dt.timedelta(hours=3)]
    assert [s for s, _, _ in after_move].count("cancelled") == 2

    r = client.post(f"/api/appointments/{appointment_id}/cancel", json={}, headers=headers)
    assert r.status_code == 200, r.text
    assert {status for status, _, _ in _jobs(session, appointment_id)} == {"cancelled"}
