"""Schedule and Slot writes: a Schedule's working hours and a practitioner's closures
(busy-unavailable Slots) go through the scheduling service, with its rules, roles and
audit; free Slots stay computed."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from prolo.clinic.models import Practitioner
from prolo.scheduling.models import Appointment, CalendarClosure, WorkingHours
from prolo.security.models import AuditEvent
from tests.factories import make_patient, make_practitioner, make_user
from tests.fhir.conftest import World
from tests.fhir.helpers import check_bundle, check_resource, fhir_token, parse
from tests.fhir.test_write import outcome as _outcome

HOURS = "https://prolo.example.org/fhir/StructureDefinition/working-hours"
ZONE = ZoneInfo("America/New_York")  # the test clinic's zone (tests.factories.make_clinic)


def outcome(r: Any, status: int, code: str) -> str:
    """The refusal's diagnostics; its OperationOutcome must parse as R4B too."""
    parse(r.json())
    return _outcome(r, status, code)


def window(day: str, starts: str, ends: str) -> dict[str, Any]:
    return {
        "url": HOURS,
        "extension": [
            {"url": "daysOfWeek", "valueCode": day},
            {"url": "availableStartTime", "valueTime": starts},
            {"url": "availableEndTime", "valueTime": ends},
        ],
    }


def midnight(day: dt.date) -> str:
    """Local midnight of ``day`` in the clinic's zone, as a FHIR instant in UTC."""
    moment = dt.datetime.combine(day, dt.time(0, 0), ZONE).astimezone(dt.UTC)
    return moment.isoformat().replace("+00:00", "Z")


def future_day(days: int) -> dt.date:
    return dt.datetime.now(ZONE).date() + dt.timedelta(days=days)


def closure_slot(world: World, first: dt.date, days: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Slot",
        "schedule": {"reference": f"Schedule/{world.practitioner.id}"},
        "status": "busy-unavailable",
        "start": midnight(first),
        "end": midnight(first + dt.timedelta(days=days)),
        "comment": "Conference",
        **extra,
    }


def events(session: Session, name: str) -> int:
    return session.scalar(select(func.count()).where(AuditEvent.event == name)) or 0


def hours_of(session: Session, practitioner_id: int) -> list[tuple[int, dt.time, dt.time]]:
    session.expire_all()
    rows = session.scalars(
        select(WorkingHours)
        .where(WorkingHours.practitioner_id == practitioner_id)
        .order_by(WorkingHours.weekday, WorkingHours.starts_local)
    ).all()
    return [(r.weekday, r.starts_local, r.ends_local) for r in rows]


# -- Schedule ---------------------------------------------------------------------------------


def test_schedule_shows_its_working_hours_and_round_trips(
    client: TestClient, session: Session, world: World
) -> None:
    url = f"/fhir/Schedule/{world.practitioner.id}"
    read = client.get(url, headers=world.admin_headers).json()
    check_resource(client, world.admin_headers, read)
    windows = [e for e in read["extension"] if e["url"] == HOURS]
    assert len(windows) == 7 and windows[0] == window("mon", "00:00:00", "23:45:00")
    assert "America/New_York" in read["comment"]
    before = hours_of(session, world.practitioner.id)
    updates, reads = events(session, "working_hours.update"), events(session, "working_hours.read")
    version = int(read["meta"]["versionId"])
    match = {**world.admin_headers, "If-Match": f'W/"{version}"'}
    r = client.put(url, json=read, headers=match)
    assert r.status_code == 200, r.text
    assert r.json() == read  # the same hours: nothing written, the version stays
    assert hours_of(session, world.practitioner.id) == before
    assert events(session, "working_hours.update") == updates
    assert events(session, "working_hours.read") == reads + 1
    shorter = {**read, "extension": [window("mon", "00:00:00", "12:00:00"), *windows[1:]]}
    r = client.put(url, json=shorter, headers=match)
    assert r.status_code == 200, r.text
    assert r.json()["meta"]["versionId"] == str(version + 1)
    assert r.json()["extension"] == shorter["extension"]
    assert hours_of(session, world.practitioner.id)[0] == (0, dt.time(0), dt.time(12))
    assert events(session, "working_hours.update") == updates + 1
    outcome(client.put(url, json=read, headers=match), 412, "conflict")


def test_schedule_update_replaces_the_working_hours_and_the_free_slots_follow(
    client: TestClient, session: Session, world: World
) -> None:
    url = f"/fhir/Schedule/{world.practitioner.id}"
    read = client.get(url, headers=world.admin_headers).json()
    changed = {
        **read,
        "extension": [window("mon", "08:00:00", "12:00:00"), window("wed", "13:30:00", "17:00:00")],
    }
    r = client.put(url, json=changed, headers=world.admin_headers)
    assert r.status_code == 200, r.text
    parse(r.json())
    assert r.json()["extension"] == changed["extension"]
    assert hours_of(session, world.practitioner.id) == [
        (0, dt.time(8), dt.time(12)),
        (2, dt.time(13, 30), dt.time(17)),
    ]
    saturday = future_day(7 + (5 - future_day(7).weekday()) % 7)
    assert saturday.weekday() == 5
    slots = client.get(
        "/fhir/Slot",
        params={"schedule": f"Schedule/{world.practitioner.id}", "start": f"ge{saturday}"},
        headers=world.admin_headers,
    )
    assert slots.status_code == 200, slots.text
    starts = [
        dt.datetime.fromisoformat(e["resource"]["start"].replace("Z", "+00:00")).astimezone(ZONE)
        for e in slots.json().get("entry", [])
        if e["resource"]["status"] == "free"
    ]
    assert starts and all(s.weekday() in (0, 2) for s in starts)  # Mondays and Wednesdays only


def test_schedule_update_refusals(client: TestClient, session: Session, world: World) -> None:
    url = f"/fhir/Schedule/{world.practitioner.id}"
    read = client.get(url, headers=world.admin_headers).json()
    before = hours_of(session, world.practitioner.id)
    other = make_practitioner(session, world.clinic)
    front_desk = fhir_token(session, make_user(session, world.clinic, "front_desk"))
    read_only = fhir_token(session, world.admin, "fhir")
    outcome(client.put(url, json=read, headers=world.headers), 403, "forbidden")  # clinician
    outcome(client.put(url, json=read, headers=front_desk), 403, "forbidden")
    outcome(client.put(url, json=read, headers=read_only), 403, "forbidden")
    cases = [
        ({**read, "active": False}, "Practitioner.active"),
        ({**read, "planningHorizon": {"start": "2027-01-01"}}, "planning horizon"),
        ({**read, "actor": [{"reference": f"Practitioner/{other.id}"}]}, "calendar of"),
        ({**read, "extension": [window("mon", "12:00:00", "08:00:00")]}, "after starts"),
        ({**read, "extension": [window("mon", "08:07:00", "12:00:00")]}, "5-minute"),
        ({**read, "extension": [window("someday", "08:00:00", "12:00:00")]}, "daysOfWeek"),
        (
            {**read, "extension": [window("mon", "08:00:00", "12:00:00")] * 2},
            "overlap",
        ),
    ]
    for body, words in cases:
        assert words in outcome(
            client.put(url, json=body, headers=world.admin_headers), 422, "business-rule"
        )
    outcome(
        client.put(f"/fhir/Schedule/{other.id}", json=read, headers=world.admin_headers),
        400,
        "invalid",
    )  # the body's id is not the URL's
    assert hours_of(session, world.practitioner.id) == before


def test_schedule_create_sets_up_a_calendar_once(
    client: TestClient, session: Session, world: World
) -> None:
    newcomer = make_practitioner(session, world.clinic)
    body = {
        "resourceType": "Schedule",
        "actor": [{"reference": f"Practitioner/{newcomer.id}"}],
        "extension": [window("tue", "09:00:00", "17:00:00")],
    }
    outcome(client.post("/fhir/Schedule", json=body, headers=world.headers), 403, "forbidden")
    empty = {**body, "extension": []}
    assert "working hours" in outcome(
        client.post("/fhir/Schedule", json=empty, headers=world.admin_headers), 422, "business-rule"
    )
    r = client.post("/fhir/Schedule", json=body, headers=world.admin_headers)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["id"] == str(newcomer.id)
    check_resource(client, world.admin_headers, created)
    assert hours_of(session, newcomer.id) == [(1, dt.time(9), dt.time(17))]
    again = client.post("/fhir/Schedule", json=body, headers=world.admin_headers)
    assert f"Schedule/{newcomer.id}" in outcome(again, 409, "conflict")
    conditional = client.post(
        "/fhir/Schedule",
        json=body,
        headers={**world.admin_headers, "If-None-Exist": f"actor=Practitioner/{newcomer.id}"},
    )
    assert conditional.status_code == 200 and conditional.json()["id"] == str(newcomer.id)
    missing = {**body, "actor": [{"reference": "Practitioner/999999"}]}
    outcome(
        client.post("/fhir/Schedule", json=missing, headers=world.admin_headers),
        422,
        "business-rule",
    )


def test_a_practitioner_and_their_schedule_in_one_transaction(
    client: TestClient, session: Session, world: World
) -> None:
    practitioner_url = "urn:uuid:5b3f8f0e-0d7c-4a7e-9d3c-3f6f0c1b2a10"
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {
                    "resourceType": "Schedule",
                    "actor": [{"reference": practitioner_url}],
                    "extension": [window("thu", "08:00:00", "16:00:00")],
                },
                "request": {"method": "POST", "url": "Schedule"},
            },
            {
                "fullUrl": practitioner_url,
                "resource": {
                    "resourceType": "Practitioner",
                    "name": [{"family": "Moreau", "given": ["Lea"]}],
                },
                "request": {"method": "POST", "url": "Practitioner"},
            },
        ],
    }
    before = session.scalar(select(func.count()).select_from(Practitioner))
    failing = {
        **bundle,
        "entry": [
            *bundle["entry"],
            {  # a closure that is not whole days: the whole Bundle is refused
                "resource": {
                    **closure_slot(world, future_day(20)),
                    "start": "2030-01-01T10:00:00Z",
                },
                "request": {"method": "POST", "url": "Slot"},
            },
        ],
    }
    r = client.post("/fhir", json=failing, headers=world.admin_headers)
    assert "Bundle.entry[2]" in outcome(r, 422, "business-rule")
    assert session.scalar(select(func.count()).select_from(Practitioner)) == before
    r = client.post("/fhir", json=bundle, headers=world.admin_headers)
    assert r.status_code == 200, r.text
    check_bundle(client, world.admin_headers, r.json())
    schedule = r.json()["entry"][0]["resource"]
    practitioner = r.json()["entry"][1]["resource"]
    assert schedule["id"] == practitioner["id"]
    assert hours_of(session, int(practitioner["id"])) == [(3, dt.time(8), dt.time(16))]


# -- Slot ------------------------------------------------------------------------------------


def test_a_busy_unavailable_slot_is_a_closure(
    client: TestClient, session: Session, world: World
) -> None:
    front_desk = fhir_token(session, make_user(session, world.clinic, "front_desk"))
    day = future_day(12)
    created_before = events(session, "closure.create")
    r = client.post("/fhir/Slot", json=closure_slot(world, day, 2), headers=front_desk)
    assert r.status_code == 201, r.text
    slot = r.json()
    assert slot["id"].startswith("closure-") and slot["meta"]["versionId"] == "1"
    assert r.headers["location"].endswith(f"/fhir/Slot/{slot['id']}/_history/1")
    check_resource(client, front_desk, slot)
    assert (slot["start"], slot["end"]) == (midnight(day), midnight(day + dt.timedelta(days=2)))
    row = session.get(CalendarClosure, int(slot["id"].removeprefix("closure-")))
    assert row is not None
    assert (row.practitioner_id, row.first_day, row.last_day, row.reason) == (
        world.practitioner.id,
        day,
        day + dt.timedelta(days=1),
        "Conference",
    )
    assert events(session, "closure.create") == created_before + 1
    read = client.get(f"/fhir/Slot/{slot['id']}", headers=front_desk).json()
    assert read == slot
    schedule = {"schedule": f"Schedule/{world.practitioner.id}", "start": f"ge{day}"}
    found = client.get("/fhir/Slot", params=schedule, headers=front_desk).json()
    check_bundle(client, front_desk, found)
    entries = [e["resource"] for e in found["entry"]]
    assert entries[0] == slot  # it starts first: the free slots of its days are gone
    free_days = {
        dt.datetime.fromisoformat(e["start"].replace("Z", "+00:00")).astimezone(ZONE).date()
        for e in entries
        if e["status"] == "free"
    }
    assert free_days and not free_days & {day, day + dt.timedelta(days=1)}
    only = client.get(
        "/fhir/Slot", params={**schedule, "status": "busy-unavailable"}, headers=front_desk
    ).json()
    assert [e["resource"]["id"] for e in only["entry"]] == [slot["id"]]
    free = client.get(
        "/fhir/Slot", params={**schedule, "service-type": "injection"}, headers=front_desk
    ).json()
    assert all(e["resource"]["status"] == "free" for e in free["entry"])


def test_a_closure_slot_moves_shortens_and_round_trips(
    client: TestClient, session: Session, world: World
) -> None:
    day = future_day(15)
    slot = client.post(
        "/fhir/Slot", json=closure_slot(world, day, 3), headers=world.admin_headers
    ).json()
    url = f"/fhir/Slot/{slot['id']}"
    same = client.put(url, json=slot, headers={**world.admin_headers, "If-Match": 'W/"1"'})
    assert same.status_code == 200, same.text
    assert same.json() == slot  # nothing changed, so no new version
    shorter = {**slot, "end": midnight(day + dt.timedelta(days=1)), "comment": "Half"}
    r = client.put(url, json=shorter, headers={**world.admin_headers, "If-Match": 'W/"1"'})
    assert r.status_code == 200, r.text
    parse(r.json())
    assert r.json()["meta"]["versionId"] == "2" and r.json()["end"] == shorter["end"]
    session.expire_all()
    row = session.get(CalendarClosure, int(slot["id"].removeprefix("closure-")))
    assert row is not None and (row.first_day, row.last_day, row.reason) == (day, day, "Half")
    assert events(session, "closure.update") == 2
    stale = client.put(url, json=shorter, headers={**world.admin_headers, "If-Match": 'W/"1"'})
    outcome(stale, 412, "conflict")


def test_slot_write_refusals(client: TestClient, session: Session, world: World) -> None:
    day = future_day(9)
    body = closure_slot(world, day)
    patient = fhir_token(
        session, make_user(session, world.clinic, "patient", patient=world.patient)
    )
    outcome(client.post("/fhir/Slot", json=body, headers=world.headers), 403, "forbidden")
    outcome(client.post("/fhir/Slot", json=body, headers=patient), 403, "forbidden")
    outcome(
        client.get("/fhir/Slot", params={"schedule": "Schedule/1"}, headers=patient),
        403,
        "forbidden",
    )
    cases = [
        ({**body, "status": "free"}, "working hours"),
        ({**body, "status": "busy"}, "Appointment"),
        ({**body, "status": "entered-in-error"}, "busy-unavailable"),
        ({**body, "start": midnight(day).replace("T05", "T09")}, "local midnight"),
        ({**body, "end": body["start"]}, "after Slot.start"),
        (
            {**body, "serviceType": [{"coding": [{"system": "https://x.example", "code": "y"}]}]},
            "every kind",
        ),
    ]
    for bad, words in cases:
        message = outcome(
            client.post("/fhir/Slot", json=bad, headers=world.admin_headers), 422, "business-rule"
        )
        assert words in message, message
    nobody = {**body, "schedule": {"reference": "Schedule/999999"}}
    r = client.post("/fhir/Slot", json=nobody, headers=world.admin_headers)
    assert "no such practitioner" in outcome(r, 422, "invalid")
    assert r.json()["issue"][0]["expression"] == ["Slot.schedule"]
    conditional = {**world.admin_headers, "If-None-Exist": "schedule=Schedule/1"}
    refused = outcome(
        client.post("/fhir/Slot", json=body, headers=conditional), 400, "not-supported"
    )
    assert "conditional create" in refused and "keeps no identifiers" in refused
    # An active appointment on the day: the closure is refused, naming it.
    patient_row = make_patient(session, world.clinic)
    starts = dt.datetime.combine(day, dt.time(10, 0), ZONE).astimezone(dt.UTC)
    session.add(
        Appointment(
            clinic_id=world.clinic.id,
            patient_id=patient_row.id,
            practitioner_id=world.practitioner.id,
            room_id=world.room.id,
            kind="consultation",
            starts_at=starts,
            ends_at=starts + dt.timedelta(minutes=30),
        )
    )
    session.flush()
    assert "appointment" in outcome(
        client.post("/fhir/Slot", json=body, headers=world.admin_headers), 409, "conflict"
    )
    # Updates: a free Slot is computed, an unknown closure is absent, a closure stays put.
    free = client.get(
        "/fhir/Slot",
        params={"schedule": f"Schedule/{world.practitioner.id}", "status": "free", "_count": "1"},
        headers=world.admin_headers,
    ).json()["entry"][0]["resource"]
    assert "computed free start" in outcome(
        client.put(f"/fhir/Slot/{free['id']}", json=free, headers=world.admin_headers),
        422,
        "business-rule",
    )
    ghost = {**body, "id": "closure-999999"}
    outcome(
        client.put("/fhir/Slot/closure-999999", json=ghost, headers=world.admin_headers),
        404,
        "not-found",
    )
    later = closure_slot(world, future_day(40))
    made = client.post("/fhir/Slot", json=later, headers=world.admin_headers).json()
    other = make_practitioner(session, world.clinic)
    moved = {**made, "schedule": {"reference": f"Schedule/{other.id}"}}
    assert "stays on its Schedule" in outcome(
        client.put(f"/fhir/Slot/{made['id']}", json=moved, headers=world.admin_headers),
        422,
        "business-rule",
    )
    outcome(
        client.put(f"/fhir/Slot/{made['id']}", json=made, headers=world.headers), 403, "forbidden"
    )
    closures = session.scalar(select(func.count()).select_from(CalendarClosure))
    assert closures == 1  # only the one made above


def test_slot_in_a_transaction_rolls_back_with_a_failing_entry(
    client: TestClient, session: Session, world: World
) -> None:
    slot = closure_slot(world, future_day(25))
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": slot, "request": {"method": "POST", "url": "Slot"}},
            {
                "resource": {**slot, "status": "free"},
                "request": {"method": "POST", "url": "Slot"},
            },
        ],
    }
    r = client.post("/fhir", json=bundle, headers=world.admin_headers)
    assert "Bundle.entry[1]" in outcome(r, 422, "business-rule")
    assert session.scalar(select(func.count()).select_from(CalendarClosure)) == 0
    bundle["entry"] = bundle["entry"][:1]
    r = client.post("/fhir", json=bundle, headers=world.admin_headers)
    assert r.status_code == 200, r.text
    check_bundle(client, world.admin_headers, r.json())
    assert r.json()["entry"][0]["response"]["status"] == "201 Created"
