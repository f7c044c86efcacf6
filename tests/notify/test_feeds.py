"""Private calendar feeds: an unguessable URL, revocable, showing only what a calendar needs."""

from __future__ import annotations

import datetime as dt

from fastapi.testclient import TestClient
from icalendar import Calendar
from sqlalchemy import select
from sqlalchemy.orm import Session

from prolo.db import utcnow
from prolo.notify.feeds import token_hash
from prolo.notify.models import CalendarFeed
from prolo.security.models import AuditEvent
from tests.factories import make_practitioner, make_user, token_for
from tests.notify.helpers import book


def _clinician(session: Session, visit_practitioner_id: int, clinic) -> dict[str, str]:  # type: ignore[no-untyped-def]
    user = make_user(session, clinic, "clinician")
    user.practitioner_id = visit_practitioner_id
    session.flush()
    return token_for(session, user)


def test_a_feed_serves_the_practitioners_visits_without_names(
    client: TestClient, session: Session
) -> None:
    soon = utcnow().replace(microsecond=0) + dt.timedelta(days=2)
    visit = book(session, starts_at=soon)
    visit.patient.family_name = "Zimmerwald"
    later = book(
        session,
        starts_at=soon + dt.timedelta(days=1),
        clinic=visit.clinic,
        practitioner=visit.practitioner,
        room=visit.room,
    )
    later.appointment.status = "cancelled"
    far = book(
        session,
        starts_at=soon + dt.timedelta(days=400),
        clinic=visit.clinic,
        practitioner=visit.practitioner,
        room=visit.room,
    )
    elsewhere = book(session, starts_at=soon, clinic=visit.clinic)  # another practitioner
    headers = _clinician(session, visit.practitioner.id, visit.clinic)

    r = client.post("/api/calendar-feeds", headers=headers)
    assert r.status_code == 201, r.text
    url = r.json()["url"]
    assert url.startswith("http://127.0.0.1:8000/calendar/") and url.endswith(".ics")
    token = url.rsplit("/", 1)[1].removesuffix(".ics")
    assert len(token) >= 40
    stored = session.scalar(select(CalendarFeed).where(CalendarFeed.id == r.json()["id"]))
    assert stored is not None and stored.token_hash == token_hash(token) != token

    feed = client.get(f"/calendar/{token}.ics")  # no login: the token is the credential
    assert feed.status_code == 200
    assert feed.headers["content-type"].startswith("text/calendar")
    assert "Zimmerwald" not in feed.text and visit.patient.email not in feed.text
    cal = Calendar.from_ical(feed.content)
    events = {str(e["uid"]).split("@")[0]: e for e in cal.walk("VEVENT")}
    assert set(events) == {
        f"appointment-{visit.appointment.id}",
        f"appointment-{later.appointment.id}",
    }
    first = events[f"appointment-{visit.appointment.id}"]
    assert first.decoded("dtstart") == soon
    assert str(first["summary"]) == "Treatment session · A. Z."
    assert str(first["status"]) == "CONFIRMED"
    assert str(events[f"appointment-{later.appointment.id}"]["status"]) == "CANCELLED"
    assert far.appointment.id and elsewhere.appointment.id  # present in the db, not the feed
    reads = session.scalars(
        select(AuditEvent.detail).where(AuditEvent.event == "calendar_feed.read")
    ).all()
    assert "2 appointments" in reads


def test_a_new_feed_revokes_the_old_and_revoked_feeds_answer_404(
    client: TestClient, session: Session
) -> None:
    visit = book(session, starts_at=utcnow() + dt.timedelta(days=1))
    headers = _clinician(session, visit.practitioner.id, visit.clinic)
    first = client.post("/api/calendar-feeds", headers=headers).json()
    second = client.post("/api/calendar-feeds", headers=headers).json()
    path = lambda f: "/calendar/" + f["url"].rsplit("/", 1)[1]  # noqa: E731
    assert client.get(path(first)).status_code == 404
    assert client.get(path(second)).status_code == 200
    listed = client.get("/api/calendar-feeds", headers=headers).json()
    assert [(f["id"], f["revoked_at"] is None) for f in listed] == [
        (second["id"], True),
        (first["id"], False),
    ]
    assert "url" not in listed[0]
    assert client.delete(f"/api/calendar-feeds/{second['id']}", headers=headers).status_code == 204
    assert client.get(path(second)).status_code == 404
    assert client.get("/calendar/" + "x" * 43 + ".ics").status_code == 404


def test_who_may_manage_feeds(client: TestClient, session: Session) -> None:
    visit = book(session, starts_at=utcnow() + dt.timedelta(days=1))
    owner = _clinician(session, visit.practitioner.id, visit.clinic)
    feed = client.post("/api/calendar-feeds", headers=owner).json()
    colleague = _clinician(session, make_practitioner(session, visit.clinic).id, visit.clinic)
    assert client.delete(f"/api/calendar-feeds/{feed['id']}", headers=colleague).status_code == 404
    r = client.post(
        "/api/calendar-feeds", json={"practitioner_id": visit.practitioner.id}, headers=colleague
    )
    assert r.status_code == 403
    front_desk = token_for(session, make_user(session, visit.clinic, "front_desk"))
    assert client.post("/api/calendar-feeds", headers=front_desk).status_code == 403
    unlinked = token_for(session, make_user(session, visit.clinic, "clinician"))
    r = client.post("/api/calendar-feeds", headers=unlinked)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "practitioner_id"
    admin = token_for(session, make_user(session, visit.clinic, "admin"))
    r = client.post(
        "/api/calendar-feeds", json={"practitioner_id": visit.practitioner.id}, headers=admin
    )
    assert r.status_code == 201


def test_the_feed_page_shows_a_new_address_once(client: TestClient, session: Session) -> None:
    import re

    from tests.factories import PASSWORD

    visit = book(session, starts_at=utcnow() + dt.timedelta(days=1))
    user = make_user(session, visit.clinic, "clinician")
    user.practitioner_id = visit.practitioner.id
    session.flush()

    def csrf(html: str) -> str:
        match = re.search(r'name="csrf_token" value="([^"]+)"', html)
        assert match
        return match.group(1)

    login = csrf(client.get("/login").text)
    client.post("/login", data={"email": user.email, "password": PASSWORD, "csrf_token": login})
    page = client.get("/calendar-feed")
    assert page.status_code == 200 and "No feed yet." in page.text
    r = client.post("/calendar-feed", data={"csrf_token": csrf(page.text)})
    assert r.status_code == 201
    url = re.search(r'id="feed-url" type="text" readonly value="([^"]+)"', r.text)
    assert url is not None
    assert client.get(url.group(1).removeprefix("http://127.0.0.1:8000")).status_code == 200
    again = client.get("/calendar-feed")
    assert url.group(1) not in again.text and "Active" in again.text
    feed_id = session.scalar(select(CalendarFeed.id).where(CalendarFeed.revoked_at.is_(None)))
    r = client.post(
        f"/calendar-feed/{feed_id}/revoke",
        data={"csrf_token": csrf(again.text)},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert client.get(url.group(1).removeprefix("http://127.0.0.1:8000")).status_code == 404
