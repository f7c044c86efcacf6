"""The calendar's data and free slots: working hours, closures, appointment types, time
zones across a daylight-saving change, and free slots agreeing with what booking accepts.
Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from prolo.errors import AppError
from prolo.scheduling import service
from prolo.scheduling.schemas import AppointmentIn
from tests.factories import (
    make_clinic,
    make_patient,
    make_practitioner,
    make_room,
    make_user,
    principal_for,
    set_working_hours,
    token_for,
)

NEW_YORK = ZoneInfo("America/New_York")


def _today() -> dt.date:
    return dt.datetime.now(NEW_YORK).date()


def local(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), NEW_YORK)


def next_dst_change(after: dt.date) -> dt.date:
    """The first local day after ``after`` whose noon has a different UTC offset."""
    day = after
    for _ in range(400):
        following = day + dt.timedelta(days=1)
        if local(following, 12).utcoffset() != local(day, 12).utcoffset():
            return following
        day = following
    raise AssertionError("no DST change within 400 days")  # pragma: no cover


@pytest.fixture
def setup(session: Session):
    clinic = make_clinic(session)
    doctor = make_practitioner(session, clinic)
    set_working_hours(session, doctor, weekdays=range(5), start=dt.time(9), end=dt.time(12))
    return {
        "clinic": clinic,
        "doctor": doctor,
        "room": make_room(session, clinic),
        "patient": make_patient(session, clinic),
        "admin": token_for(session, make_user(session, clinic, "admin")),
        "desk": token_for(session, make_user(session, clinic, "front_desk")),
        "clinician": token_for(session, make_user(session, clinic, "clinician")),
    }


def test_free_slots_and_bookings_keep_local_hours_across_a_dst_change(
    client: TestClient, setup
) -> None:
    change = next_dst_change(_today() + dt.timedelta(days=3))  # a Sunday in America/New_York
    friday, monday = change - dt.timedelta(days=2), change + dt.timedelta(days=1)
    r = client.get(
        "/api/slots",
        params={
            "kind": "injection",
            "from": friday.isoformat(),
            "to": monday.isoformat(),
            "practitioner_id": setup["doctor"].id,
        },
        headers=setup["desk"],
    )
    assert r.status_code == 200, r.text
    starts = [dt.datetime.fromisoformat(s["starts_at"]) for s in r.json()["items"]]
    by_day: dict[dt.date, list[dt.datetime]] = {}
    for start in starts:
        by_day.setdefault(start.astimezone(NEW_YORK).date(), []).append(start)
    assert sorted(by_day) == [friday, monday]  # closed at the weekend
    for day in (friday, monday):
        local_starts = [s.astimezone(NEW_YORK).strftime("%H:%M") for s in by_day[day]]
        # 09:00 to 11:30 (the last 30-minute visit ends at 12:00), every quarter hour
        assert (
            local_starts == [f"{h:02d}:{m:02d}" for h in (9, 10, 11) for m in (0, 15, 30, 45)][:-1]
        )
    # the same local 09:00 is a different UTC hour on either side of the change
    utc_hours = {by_day[d][0].astimezone(dt.UTC).hour for d in (friday, monday)}
    assert len(utc_hours) == 2
    # booking: stored and returned in UTC; the check uses the local clock of that day
    nine_monday_utc = local(monday, 9).astimezone(dt.UTC)
    body = {
        "patient_id": setup["patient"].id,
        "practitioner_id": setup["doctor"].id,
        "room_id": setup["room"].id,
        "kind": "injection",
    }
    early = nine_monday_utc - dt.timedelta(minutes=30)  # 08:30 local on Monday
    r = client.post(
        "/api/appointments", json={**body, "starts_at": early.isoformat()}, headers=setup["desk"]
    )
    assert r.status_code == 422 and r.json()["code"] == "outside_working_hours"
    assert "08:30" in r.json()["detail"]  # shown in the clinic's zone
    r = client.post(
        "/api/appointments",
        json={**body, "starts_at": nine_monday_utc.isoformat().replace("+00:00", "Z")},
        headers=setup["desk"],
    )
    assert r.status_code == 201, r.text
    assert r.json()["starts_at"].endswith(("+00:00", "Z"))
    assert dt.datetime.fromisoformat(r.json()["starts_at"]).astimezone(NEW_YORK) == local(monday, 9)


def test_free_slots_skip_busy_times_closures_and_the_past(
    client: TestClient, session: Session, setup
) -> None:
    day = _today() + dt.timedelta(days=7)
    while day.weekday() >= 5:
        day += dt.timedelta(days=1)
    desk = setup["desk"]
    params = {"kind": "injection", "from": day.isoformat(), "to": day.isoformat()}
    before = client.get("/api/slots", params=params, headers=desk).json()["items"]
    assert len(before) == 11
    booked = client.post(
        "/api/appointments",
        json={
            "patient_id": setup["patient"].id,
            "practitioner_id": setup["doctor"].id,
            "room_id": setup["room"].id,
            "kind": "injection",
            "starts_at": local(day, 10).isoformat(),
        },
        headers=desk,
    )
    assert booked.status_code == 201
    after = client.get("/api/slots", params=params, headers=desk).json()["items"]
    local_after = [
        dt.datetime.fromisoformat(s["starts_at"]).astimezone(NEW_YORK).strftime("%H:%M")
        for s in after
    ]
    # the room (one room only) is held 10:00-10:30; starts 09:45 .. 10:15 overlap it
    assert "09:30" in local_after and "10:30" in local_after
    assert not {"09:45", "10:00", "10:15"} & set(local_after)
    # a closure empties the day
    r = client.post(
        "/api/closures",
        json={
            "first_day": (day + dt.timedelta(days=1)).isoformat(),
            "last_day": (day + dt.timedelta(days=1)).isoformat(),
            "reason": "Training",
        },
        headers=desk,
    )
    assert r.status_code == 201
    nxt = {**params, "from": r.json()["first_day"], "to": r.json()["first_day"]}
    assert client.get("/api/slots", params=nxt, headers=desk).json()["items"] == []
    # a range that is too long is refused, naming the field
    far = {**params, "to": (day + dt.timedelta(days=40)).isoformat()}
    r = client.get("/api/slots", params=far, headers=desk)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "to"
    # nothing in the past
    past = {
        **params,
        "from": (_today() - dt.timedelta(days=3)).isoformat(),
        "to": (_today() - dt.timedelta(days=1)).isoformat(),
    }
    assert client.get("/api/slots", params=past, headers=desk).json()["items"] == []
    # patients may not search the clinic's calendar
    patient = token_for(
        session, make_user(session, setup["clinic"], "patient", patient=setup["patient"])
    )
    assert client.get("/api/slots", params=params, headers=patient).status_code == 403


def test_working_hours_are_set_by_admins_in_local_time(client: TestClient, setup) -> None:
    url = f"/api/practitioners/{setup['doctor'].id}/working-hours"
    week = {
        "windows": [
            {"weekday": 1, "starts": "08:00", "ends": "12:30"},
            {"weekday": 1, "starts": "13:30", "ends": "17:00"},
        ]
    }
    assert client.put(url, json=week, headers=setup["desk"]).status_code == 403
    r = client.put(url, json=week, headers=setup["admin"])
    assert r.status_code == 200, r.text
    assert r.json()["timezone"] == "America/New_York"
    assert [(w["weekday"], w["starts"], w["ends"]) for w in r.json()["windows"]] == [
        (1, "08:00:00", "12:30:00"),
        (1, "13:30:00", "17:00:00"),
    ]
    assert client.get(url, headers=setup["desk"]).json() == r.json()
    overlapping = {
        "windows": [
            {"weekday": 2, "starts": "08:00", "ends": "12:00"},
            {"weekday": 2, "starts": "11:00", "ends": "13:00"},
        ]
    }
    r = client.put(url, json=overlapping, headers=setup["admin"])
    assert r.status_code == 422 and "overlap" in r.json()["detail"]
    overnight = {"windows": [{"weekday": 4, "starts": "22:00", "ends": "02:00"}]}
    assert client.put(url, json=overnight, headers=setup["admin"]).status_code == 422
    # unchanged after the refusals
    assert len(client.get(url, headers=setup["desk"]).json()["windows"]) == 2


def test_a_closure_over_booked_visits_is_refused_until_they_move(client: TestClient, setup) -> None:
    day = _today() + dt.timedelta(days=10)
    while day.weekday() >= 5:
        day += dt.timedelta(days=1)
    booked = client.post(
        "/api/appointments",
        json={
            "patient_id": setup["patient"].id,
            "practitioner_id": setup["doctor"].id,
            "room_id": setup["room"].id,
            "kind": "injection",
            "starts_at": local(day, 9).isoformat(),
        },
        headers=setup["desk"],
    ).json()
    closure = {
        "first_day": day.isoformat(),
        "last_day": day.isoformat(),
        "room_id": setup["room"].id,
        "reason": "Repairs",
    }
    r = client.post("/api/closures", json=closure, headers=setup["desk"])
    assert r.status_code == 409 and r.json()["appointment_ids"] == [booked["id"]]
    client.post(f"/api/appointments/{booked['id']}/cancel", headers=setup["desk"])
    r = client.post("/api/closures", json=closure, headers=setup["desk"])
    assert r.status_code == 201
    listed = client.get(
        "/api/closures",
        params={"from": day.isoformat(), "to": day.isoformat()},
        headers=setup["desk"],
    ).json()
    assert [(c["id"], c["room_id"]) for c in listed] == [(r.json()["id"], setup["room"].id)]
    assert (
        client.delete(f"/api/closures/{r.json()['id']}", headers=setup["clinician"]).status_code
        == 403
    )
    assert (
        client.delete(f"/api/closures/{r.json()['id']}", headers=setup["desk"]).status_code == 204
    )
    bad = {"first_day": day.isoformat(), "last_day": (day - dt.timedelta(days=1)).isoformat()}
    assert client.post("/api/closures", json=bad, headers=setup["desk"]).status_code == 422


def test_a_clinic_sets_its_own_visit_lengths_and_phases(client: TestClient, setup) -> None:
    types = {
        t["code"]: t for t in client.get("/api/appointment-types", headers=setup["desk"]).json()
    }
    assert types["injection"]["minutes"] == 30
    assert [p["name"] for p in types["injection"]["phases"]] == [
        "preparation",
        "treatment",
        "recovery",
    ]
    longer = {
        "name": "Injection session",
        "phases": [
            {"name": "preparation", "minutes": 10, "practitioner": True},
            {"name": "treatment", "minutes": 15, "practitioner": True},
            {"name": "recovery", "minutes": 20, "practitioner": False},
        ],
    }
    assert (
        client.put(
            "/api/appointment-types/injection", json=longer, headers=setup["desk"]
        ).status_code
        == 403
    )
    r = client.put("/api/appointment-types/injection", json=longer, headers=setup["admin"])
    assert r.status_code == 200 and r.json()["minutes"] == 45
    split = {
        "name": "x",
        "phases": [
            {"name": "a", "minutes": 10, "practitioner": True},
            {"name": "b", "minutes": 10, "practitioner": False},
            {"name": "c", "minutes": 10, "practitioner": True},
        ],
    }
    r = client.put("/api/appointment-types/injection", json=split, headers=setup["admin"])
    assert r.status_code == 422 and "follow each other" in r.json()["detail"]
    day = _today() + dt.timedelta(days=8)
    while day.weekday() >= 5:
        day += dt.timedelta(days=1)
    r = client.post(
        "/api/appointments",
        json={
            "patient_id": setup["patient"].id,
            "practitioner_id": setup["doctor"].id,
            "room_id": setup["room"].id,
            "kind": "injection",
            "starts_at": local(day, 9).isoformat(),
        },
        headers=setup["desk"],
    )
    assert r.status_code == 201
    starts, ends = (dt.datetime.fromisoformat(r.json()[k]) for k in ("starts_at", "ends_at"))
    assert ends - starts == dt.timedelta(minutes=45)
    held = dt.datetime.fromisoformat(r.json()["practitioner_ends_at"]) - starts
    assert held == dt.timedelta(minutes=25)


@settings(
    max_examples=5,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    busy=st.lists(
        st.tuples(st.integers(0, 11), st.integers(0, 1), st.integers(0, 2)),
        max_size=5,
    )
)
def test_free_slots_agree_with_what_booking_accepts(session: Session, busy) -> None:
    """Every start the slot search offers can be booked; every other quarter hour cannot."""
    clinic = make_clinic(session)
    doctors = [make_practitioner(session, clinic), make_practitioner(session, clinic)]
    for doctor in doctors:
        set_working_hours(session, doctor, start=dt.time(9), end=dt.time(12))
    rooms = [make_room(session, clinic), make_room(session, clinic)]
    patients = [make_patient(session, clinic) for _ in range(3)]
    desk = principal_for(make_user(session, clinic, "front_desk"))
    day = _today() + dt.timedelta(days=2)

    def attempt(start: dt.datetime, doctor: int, patient: int, room: int | None = None) -> bool:
        try:
            with session.begin_nested() as savepoint:
                service.book_appointment(
                    session=session,
                    principal=desk,
                    data=AppointmentIn(
                        patient_id=patients[patient].id,
                        practitioner_id=doctors[doctor].id,
                        room_id=(room or rooms[0].id),
                        kind="injection",
                        starts_at=start,
                    ),
                )
                savepoint.rollback()
            return True
        except AppError:
            return False

    for quarter, doctor, patient in busy:  # some existing visits, kept if bookable
        start = local(day, 9) + dt.timedelta(minutes=15 * quarter)
        for room in rooms:
            try:
                with session.begin_nested():
                    service.book_appointment(
                        session=session,
                        principal=desk,
                        data=AppointmentIn(
                            patient_id=patients[patient].id,
                            practitioner_id=doctors[doctor].id,
                            room_id=room.id,
                            kind="injection",
                            starts_at=start,
                        ),
                    )
                break
            except AppError:
                continue
    _, slots, _ = service.find_free_slots(
        session=session,
        principal=desk,
        kind="injection",
        first_day=day,
        last_day=day,
        practitioner_id=doctors[0].id,
        patient_id=patients[0].id,
    )
    offered = {s.starts_at: s.room_ids for s in slots}
    for quarter in range(12):
        start = local(day, 9) + dt.timedelta(minutes=15 * quarter)
        if start in offered:
            for room_id in offered[start]:
                assert attempt(start, 0, 0, room_id), start
        else:
            assert not any(attempt(start, 0, 0, room.id) for room in rooms), start
