"""The clinician's procedure pages: document, sign, refuse edits of a signed record, amend."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from prolo.courses.models import Procedure
from prolo.knowledge.safety import load_safety_rules
from tests.courses.test_procedure_api import Setup, _visit
from tests.factories import PASSWORD


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "form has no CSRF token"
    return match.group(1)


def _login(client: TestClient, email: str) -> None:
    token = _csrf(client.get("/login").text)
    r = client.post(
        "/login",
        data={"email": email, "password": PASSWORD, "csrf_token": token},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text


def _form(s: Setup, csrf: str, **overrides: str) -> dict[str, Any]:
    """The form as a browser would send it: strings, ticked boxes only."""
    data: dict[str, Any] = {
        "csrf_token": csrf,
        "performed_at": "2026-01-05T10:30",
        "appointment_id": str(s.visit.id),
        "course_id": "",
        "body_region": "knee",
        "injectate.solution": "dextrose",
        "injectate.concentration_percent": "25",
        "injectate.anaesthetic": "lidocaine",
        "injectate.anaesthetic_concentration_percent": "1",
        "injectate.total_volume_ml": "6.5",
        "sites.0.site_id": "knee-intra-articular",
        "sites.0.side": "right",
        "sites.0.volume_ml": "6",
        "sites.1.site_id": "knee-ligament-insertion",
        "sites.1.side": "right",
        "sites.1.volume_ml": "0.5",
        "sites.2.site_id": "",
        "sites.2.side": "",
        "sites.2.volume_ml": "",
        "guidance": "ultrasound",
        "needle.gauge": "27",
        "needle.length_mm": "38",
        "checks.pain_duration_weeks": "40",
        "checks.pregnant": "no",
        "adverse.vasovagal": "on",
        "adverse.vasovagal.severity": "mild",
        "adverse.vasovagal.description": "Felt faint, settled lying down",
        "aftercare.normal_activity": "on",
        "aftercare.expected_inflammation": "on",
        "aftercare.pain_advice": "on",
        "aftercare.when_to_call": "on",
        "note": "Right knee.",
    }
    data.update(overrides)
    return data


def _count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Procedure)) or 0)


def test_document_sign_and_refuse_edits_through_the_pages(
    client: TestClient, session: Session
) -> None:
    s = Setup(session)
    _login(client, s.user.email)
    r = client.get(f"/procedures/new?patient_id={s.patient.id}&appointment_id={s.visit.id}")
    assert r.status_code == 200
    page = r.text
    assert '<option value="knee" selected>' in page  # the course's condition is a knee one
    for q in load_safety_rules().questions:
        assert f'name="checks.red_flags.{q}"' in page
    assert 'for="f-injectate.total_volume_ml"' in page
    csrf = _csrf(page)

    r = client.post(
        f"/procedures/new?patient_id={s.patient.id}", data=_form(s, csrf), follow_redirects=False
    )
    assert r.status_code == 303, r.text
    location = r.headers["location"]
    view = client.get(location).text
    assert "Draft" in view and "Knee joint (intra-articular)" in view
    assert "Fainting or near-fainting" in view and "Felt faint" in view
    assert "No reason against injecting" in view
    record_id = int(location.rsplit("/", 1)[1])
    stored = session.get(Procedure, record_id)
    assert stored is not None
    assert stored.performed_at.isoformat() == "2026-01-05T15:30:00+00:00"  # 10:30 New York

    r = client.post(
        f"/procedures/{record_id}/sign", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert r.status_code == 303
    view = client.get(location).text
    assert f"Signed by <strong>{s.user.display_name}</strong>" in view

    r = client.get(f"/procedures/{record_id}/edit")
    assert r.status_code == 409
    assert f"Procedure record {record_id} is signed and cannot be changed" in r.text
    before = client.get(f"/api/procedures/{record_id}", headers=s.headers).json()
    r = client.post(
        f"/procedures/{record_id}/edit", data=_form(s, csrf, note="Changed"), follow_redirects=False
    )
    assert r.status_code == 409
    assert client.get(f"/api/procedures/{record_id}", headers=s.headers).json() == before

    r = client.get(f"/procedures/{record_id}/amend")
    assert r.status_code == 200 and 'name="reason"' in r.text
    r = client.post(
        f"/procedures/{record_id}/amend",
        data=_form(s, csrf, **{"sites.0.side": "left", "sites.1.side": "left"}, reason=""),
        follow_redirects=False,
    )
    assert r.status_code == 422 and "f-reason-error" in r.text
    r = client.post(
        f"/procedures/{record_id}/amend",
        data=_form(
            s, csrf, **{"sites.0.side": "left", "sites.1.side": "left"}, reason="Wrong knee"
        ),
        follow_redirects=False,
    )
    assert r.status_code == 303
    amendment = client.get(r.headers["location"]).text
    assert (
        f'This record amends <a href="/procedures/{record_id}">record {record_id}</a>' in amendment
    )
    assert "corrected by" in client.get(location).text


def test_a_wrong_form_shows_errors_beside_the_fields_and_saves_nothing(
    client: TestClient, session: Session
) -> None:
    s = Setup(session)
    _login(client, s.user.email)
    csrf = _csrf(client.get(f"/procedures/new?patient_id={s.patient.id}").text)
    before = _count(session)
    r = client.post(
        f"/procedures/new?patient_id={s.patient.id}",
        data=_form(s, csrf, **{"sites.0.site_id": "common-extensor-origin"}),
    )
    assert r.status_code == 422
    assert 'id="f-sites.0.site_id-error"' in r.text and "not in this body region" in r.text
    r = client.post(
        f"/procedures/new?patient_id={s.patient.id}",
        data=_form(s, csrf, **{"needle.gauge": "", "injectate.total_volume_ml": "9"}),
    )
    assert r.status_code == 422
    assert 'id="f-needle.gauge-error"' in r.text
    r = client.post(
        f"/procedures/new?patient_id={s.patient.id}",
        data=_form(s, csrf, **{"injectate.total_volume_ml": "9"}),
    )
    assert r.status_code == 422 and "add up to 6.5 mL but the total volume is 9 mL" in r.text
    assert 'id="f-injectate.total_volume_ml-error"' in r.text
    assert _count(session) == before
    # A refused form keeps what was typed.
    assert 'value="9"' in r.text and "Felt faint" in r.text


def test_a_refused_signature_says_why_and_changes_nothing(
    client: TestClient, session: Session
) -> None:
    s = Setup(session, consent=False)
    _login(client, s.user.email)
    csrf = _csrf(client.get(f"/procedures/new?patient_id={s.patient.id}").text)
    r = client.post(
        f"/procedures/new?patient_id={s.patient.id}", data=_form(s, csrf), follow_redirects=False
    )
    record_id = int(r.headers["location"].rsplit("/", 1)[1])
    r = client.post(f"/procedures/{record_id}/sign", data={"csrf_token": csrf})
    assert r.status_code == 409
    assert "no informed consent is on file" in r.text
    stored = session.get(Procedure, record_id)
    assert stored is not None and stored.status == "draft"


def test_the_form_offers_only_visits_that_took_place_and_refuses_a_cancelled_one(
    client: TestClient, session: Session
) -> None:
    s = Setup(session)
    cancelled = _visit(s, session, status="cancelled", starts_in=-dt.timedelta(days=2))
    later = _visit(s, session, status="booked", starts_in=dt.timedelta(days=7))
    _login(client, s.user.email)
    page = client.get(f"/procedures/new?patient_id={s.patient.id}").text
    offered = set(re.findall(r'name="appointment_id".*?</select>', page, re.S)[0].split('value="'))
    offered_ids = {chunk.split('"')[0] for chunk in offered}
    assert str(s.visit.id) in offered_ids  # booked, started an hour ago
    assert str(cancelled.id) not in offered_ids and str(later.id) not in offered_ids
    before = _count(session)
    form = _form(s, _csrf(page), appointment_id=str(cancelled.id))
    r = client.post(f"/procedures/new?patient_id={s.patient.id}", data=form)
    assert r.status_code == 409  # shown beside the appointment field
    assert f"appointment {cancelled.id} was cancelled" in r.text
    assert _count(session) == before
