"""A Schedule's version follows its working hours whichever path changes them: the
calendar API (``/api/practitioners/{id}/working-hours``), the scheduling service called
directly, or seeding a practitioner's first hours. One change raises it once; the same
hours again leave it, so an EHR's ``If-Match`` goes stale exactly when the hours moved."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from prolo.scheduling import service as scheduling
from prolo.scheduling.schemas import WorkingHoursIn
from prolo.security.models import AuditEvent
from tests.factories import make_practitioner, principal_for, token_for
from tests.fhir.conftest import World
from tests.fhir.helpers import check_resource
from tests.fhir.test_calendar_writes import HOURS, hours_of, outcome, window


def schedule(client: TestClient, world: World, practitioner_id: int) -> tuple[dict[str, Any], int]:
    """The Schedule as read, and its version (the ETag must say the same)."""
    r = client.get(f"/fhir/Schedule/{practitioner_id}", headers=world.admin_headers)
    assert r.status_code == 200, r.text
    check_resource(client, world.admin_headers, r.json())
    version = int(r.json()["meta"]["versionId"])
    assert r.headers["ETag"] == f'W/"{version}"'
    return r.json(), version


def events(session: Session, name: str) -> int:
    return session.scalar(select(func.count()).where(AuditEvent.event == name)) or 0


# Monday keeps its start and ends earlier (a row changed), Tuesday starts later (a row
# replaced), Wednesday gains a second window (a row added), the rest of the week goes.
NEW_WEEK = {
    "windows": [
        {"weekday": 0, "starts": "00:00", "ends": "12:00"},
        {"weekday": 1, "starts": "08:00", "ends": "12:00"},
        {"weekday": 2, "starts": "00:00", "ends": "11:00"},
        {"weekday": 2, "starts": "13:00", "ends": "17:00"},
    ]
}


def test_hours_changed_through_the_calendar_api_raise_the_schedule_version_once(
    client: TestClient, session: Session, world: World
) -> None:
    doctor = world.practitioner.id
    before, version = schedule(client, world, doctor)
    api = token_for(session, world.admin)
    url = f"/api/practitioners/{doctor}/working-hours"
    r = client.put(url, json=NEW_WEEK, headers=api)
    assert r.status_code == 200, r.text
    after, changed = schedule(client, world, doctor)
    assert changed == version + 1  # several rows written, one change
    assert [e for e in after["extension"] if e["url"] == HOURS] == [
        window("mon", "00:00:00", "12:00:00"),
        window("tue", "08:00:00", "12:00:00"),
        window("wed", "00:00:00", "11:00:00"),
        window("wed", "13:00:00", "17:00:00"),
    ]
    assert after["meta"]["lastUpdated"] >= before["meta"]["lastUpdated"]
    practitioner = client.get(f"/fhir/Practitioner/{doctor}", headers=world.admin_headers)
    assert practitioner.json()["meta"]["versionId"] == str(changed)  # one row, one version

    # The EHR still holds the version it read before: its update is refused.
    stale = {**world.admin_headers, "If-Match": f'W/"{version}"'}
    r = client.put(f"/fhir/Schedule/{doctor}", json=before, headers=stale)
    assert f"at version {changed}" in outcome(r, 412, "conflict")
    assert schedule(client, world, doctor)[0] == after

    # The same hours again: nothing written, the version stays, audited as a read.
    updates, reads = events(session, "working_hours.update"), events(session, "working_hours.read")
    assert client.put(url, json=NEW_WEEK, headers=api).status_code == 200
    assert schedule(client, world, doctor)[1] == changed
    assert events(session, "working_hours.update") == updates
    assert events(session, "working_hours.read") == reads + 1

    # With the version it now reads, the EHR's update goes through.
    fresh = {**world.admin_headers, "If-Match": f'W/"{changed}"'}
    r = client.put(f"/fhir/Schedule/{doctor}", json=before, headers=fresh)
    assert r.status_code == 200, r.text
    assert r.json()["meta"]["versionId"] == str(changed + 1)
    assert r.headers["ETag"] == f'W/"{changed + 1}"'


def test_the_service_raises_the_version_once_per_change_and_not_for_the_same_hours(
    client: TestClient, session: Session, world: World
) -> None:
    doctor = world.practitioner.id
    admin = principal_for(world.admin)
    _, version = schedule(client, world, doctor)
    week = WorkingHoursIn.model_validate(NEW_WEEK)
    for expected in (version + 1, version + 1):  # a change, then the same hours again
        scheduling.set_working_hours(
            session=session, principal=admin, practitioner_id=doctor, data=week
        )
        assert schedule(client, world, doctor)[1] == expected
    assert hours_of(session, doctor)[0] == (0, dt.time(0), dt.time(12))
    none = WorkingHoursIn.model_validate({"windows": []})
    scheduling.set_working_hours(
        session=session, principal=admin, practitioner_id=doctor, data=none
    )
    read, now = schedule(client, world, doctor)
    assert now == version + 2 and "extension" not in read
    outcome(
        client.put(
            f"/fhir/Schedule/{doctor}",
            json={**read, "extension": [window("fri", "09:00:00", "10:00:00")]},
            headers={**world.admin_headers, "If-Match": f'W/"{version + 1}"'},
        ),
        412,
        "conflict",
    )


def test_a_practitioners_first_hours_raise_their_version_too(
    client: TestClient, session: Session, world: World
) -> None:
    newcomer = make_practitioner(session, world.clinic)
    _, version = schedule(client, world, newcomer.id)
    given = scheduling.give_default_hours(session=session, clinic_id=world.clinic.id)
    assert given == 1  # the world's practitioner has hours already
    read, now = schedule(client, world, newcomer.id)
    assert now == version + 1 and len(read["extension"]) == 5
    _, unchanged = schedule(client, world, world.practitioner.id)
    scheduling.give_default_hours(session=session, clinic_id=world.clinic.id)  # nobody new
    assert schedule(client, world, newcomer.id)[1] == now
    assert schedule(client, world, world.practitioner.id)[1] == unchanged
