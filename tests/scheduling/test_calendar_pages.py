"""The calendar's pages through the app: the day and week grids, booking with errors next
to the field, moving and cancelling from an appointment, and the patient's own list.
Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from prolo.scheduling import service
from prolo.scheduling.models import Appointment
from prolo.scheduling.schemas import AppointmentIn
from prolo.security import service as security
from prolo.security.models import User
from tests.factories import (
    make_clinic,
    make_patient,
    make_practitioner,
    make_room,
    make_user,
    principal_for,
    set_working_hours,
)

NEW_YORK = ZoneInfo("America/New_York")


def log_in(client: TestClient, session: Session, user: User) -> str:
    """Start a browser session for ``user``; returns its CSRF token."""
    secret, row = security.start_web_session(session=session, user=user, hours=1)
    client.cookies.set("prolo_session", secret)
    return row.csrf_token


def future_weekday(days: int = 5) -> dt.date:
    day = dt.datetime.now(NEW_YORK).date() + dt.timedelta(days=days)
    while day.weekday() >= 5:
        day += dt.timedelta(days=1)
    return day


@pytest.fixture
def clinic(session: Session):
    clinic = make_clinic(session)
    doctor = make_practitioner(session, clinic)
    set_working_hours(session, doctor, weekdays=range(5), start=dt.time(9), end=dt.time(17))
    desk_user = make_user(session, clinic, "front_desk")
    return {
        "clinic": clinic,
        "doctor": doctor,
        "room": make_room(session, clinic, "Blue room"),
        "patient": make_patient(session, clinic, family_name="Okafor", given_name="Ada"),
        "other": make_patient(session, clinic, family_name="Berg", given_name="Lena"),
        "desk_user": desk_user,
        "desk": principal_for(desk_user),
    }


def book(session: Session, clinic, day: dt.date, hour: int, patient=None) -> Appointment:
    return service.book_appointment(
        session=session,
        principal=clinic["desk"],
        data=AppointmentIn(
            patient_id=(patient or clinic["patient"]).id,
            practitioner_id=clinic["doctor"].id,
            room_id=clinic["room"].id,
            kind="injection",
            starts_at=dt.datetime.combine(day, dt.time(hour), NEW_YORK),
        ),
    )


def test_the_day_and_week_grids_show_visits_in_local_time(
    client: TestClient, session: Session, clinic
) -> None:
    day = future_weekday()
    booked = book(session, clinic, day, 10)
    log_in(client, session, clinic["desk_user"])
    page = client.get("/calendar", params={"date": day.isoformat()})
    assert page.status_code == 200
    html = page.text
    assert 'aria-current="page">Calendar<' in html
    assert f'href="/calendar/appointments/{booked.id}"' in html
    assert "Okafor, Ada" in html
    assert "10:00–10:20" in html  # the practitioner's phases in the practitioner view
    # one cell spans the four five-minute rows of preparation and treatment
    assert re.search(r'<td rowspan="4" class="cal-appt kind-injection status-booked">', html)
    by_room = client.get("/calendar", params={"date": day.isoformat(), "by": "room"}).text
    assert "10:00–10:30" in by_room and "Blue room" in by_room
    week = client.get(
        "/calendar", params={"date": day.isoformat(), "view": "week", "by": "room"}
    ).text
    assert week.count('<th scope="col"><a href="/calendar?date=') == 7
    assert "Okafor, Ada" in week
    # free rows inside working hours offer a booking link for that time
    assert f"/calendar/book?date={day.isoformat()}&amp;time=09:00&amp;practitioner_id=" in html
    # ... but not at the booked time, nor outside working hours
    assert f"date={day.isoformat()}&amp;time=10:00&amp;" not in html
    assert f"date={day.isoformat()}&amp;time=08:00&amp;" not in html


def test_the_calendar_is_for_staff(client: TestClient, session: Session, clinic) -> None:
    patient_user = make_user(session, clinic["clinic"], "patient", patient=clinic["patient"])
    log_in(client, session, patient_user)
    assert client.get("/calendar").status_code == 403
    assert client.get("/calendar/book").status_code == 403


def test_booking_from_the_form_and_errors_next_to_the_field(
    client: TestClient, session: Session, clinic
) -> None:
    day = future_weekday(6)
    csrf = log_in(client, session, clinic["desk_user"])
    form = {
        "csrf_token": csrf,
        "patient_id": str(clinic["patient"].id),
        "kind": "injection",
        "practitioner_id": str(clinic["doctor"].id),
        "room_id": str(clinic["room"].id),
        "date": day.isoformat(),
        "time": "11:00",
    }
    r = client.post("/calendar/book", data=form, follow_redirects=False)
    assert r.status_code == 303, r.text
    appointment_id = int(r.headers["location"].split("/")[-1].split("?")[0])
    stored = session.get_one(Appointment, appointment_id)
    assert stored.starts_at == dt.datetime.combine(day, dt.time(11), NEW_YORK)
    page = client.get(r.headers["location"])
    assert "The appointment is booked." in page.text
    # the same time for another patient: the practitioner select carries the 409
    clash = client.post(
        "/calendar/book", data={**form, "patient_id": str(clinic["other"].id), "time": "11:10"}
    )
    assert clash.status_code == 409
    assert re.search(r'id="f-practitioner_id"[^>]*aria-invalid="true"', clash.text)
    assert f"appointment {appointment_id}" in clash.text
    # outside working hours: the time field carries the message
    late = client.post(
        "/calendar/book", data={**form, "patient_id": str(clinic["other"].id), "time": "18:00"}
    )
    assert late.status_code == 422
    assert re.search(r'id="f-time"[^>]*aria-invalid="true"', late.text)
    assert "working hours" in late.text
    # a form that did not come from the site
    forged = client.post("/calendar/book", data={**form, "csrf_token": "nope", "time": "14:00"})
    assert forged.status_code == 403
    count = session.scalar(
        select(func.count(Appointment.id)).where(Appointment.clinic_id == clinic["clinic"].id)
    )
    assert count == 1


def test_moving_and_cancelling_from_the_appointment_page(
    client: TestClient, session: Session, clinic
) -> None:
    day = future_weekday(7)
    booked = book(session, clinic, day, 9)
    csrf = log_in(client, session, clinic["desk_user"])
    url = f"/calendar/appointments/{booked.id}"
    page = client.get(url)
    assert page.status_code == 200 and "Move appointment" in page.text
    r = client.post(
        f"{url}/reschedule",
        data={"csrf_token": csrf, "date": day.isoformat(), "time": "13:30"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    session.refresh(booked)
    assert booked.starts_at == dt.datetime.combine(day, dt.time(13, 30), NEW_YORK)
    bad = client.post(
        f"{url}/reschedule", data={"csrf_token": csrf, "date": day.isoformat(), "time": "07:00"}
    )
    assert bad.status_code == 422 and "working hours" in bad.text
    # the front desk cannot mark a visit done; arriving works, then cancelling
    assert (
        client.post(f"{url}/arrive", data={"csrf_token": csrf}, follow_redirects=False).status_code
        == 303
    )
    done = client.post(f"{url}/fulfil", data={"csrf_token": csrf})
    assert done.status_code == 403
    r = client.post(
        f"{url}/cancel",
        data={"csrf_token": csrf, "reason": "clinic_request"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    session.refresh(booked)
    assert (booked.status, booked.cancel_reason) == ("cancelled", "clinic_request")
    assert "cancelled" in client.get(r.headers["location"]).text.lower()


def test_a_patient_sees_and_cancels_their_own_appointments(
    client: TestClient, session: Session, clinic
) -> None:
    day = future_weekday(8)
    mine = book(session, clinic, day, 9)
    theirs = book(session, clinic, day, 10, patient=clinic["other"])
    user = make_user(session, clinic["clinic"], "patient", patient=clinic["patient"])
    csrf = log_in(client, session, user)
    page = client.get("/my/appointments")
    assert page.status_code == 200
    assert re.search(r'href="/my/appointments" aria-current="page"', page.text)
    assert day.strftime("%A %d %B %Y") in page.text and "09:00–09:30" in page.text
    assert "10:00" not in page.text  # the other patient's visit
    assert (
        client.post(f"/my/appointments/{theirs.id}/cancel", data={"csrf_token": csrf}).status_code
        == 404
    )
    r = client.post(
        f"/my/appointments/{mine.id}/cancel", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert r.status_code == 303
    session.refresh(mine)
    assert mine.status == "cancelled" and mine.cancel_reason == "patient_request"
    assert "Your appointment was cancelled." in client.get(r.headers["location"]).text
    # staff pages stay closed to patients
    assert client.get(f"/calendar/appointments/{mine.id}").status_code == 403
