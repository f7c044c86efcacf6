"""The portal's pages and the clinic's outcome pages, through the app (both databases)."""

from __future__ import annotations

import datetime as dt
import re

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from prolo.db import utcnow
from prolo.portal import links, service
from prolo.portal.models import ClinicAlert, PortalLink, QuestionnaireResponse, Score
from prolo.security import service as security
from prolo.security.models import User
from prolo.settings import Settings
from tests.factories import make_clinic, make_patient, make_user, principal_for
from tests.portal.factories import make_course, make_session

ODI = [f"odi-{n}" for n in range(1, 11)]


def log_in(client: TestClient, session: Session, user: User) -> str:
    """Start a browser session for ``user``; returns its CSRF token."""
    secret, row = security.start_web_session(session=session, user=user, hours=1)
    client.cookies.set("prolo_session", secret)
    return row.csrf_token


def patient_portal(client: TestClient, session: Session):
    clinic = make_clinic(session)
    clinic.phone = "+1 555 0100"
    patient = make_patient(session, clinic, given_name="Ana")
    user = make_user(session, clinic, "patient", patient=patient)
    return clinic, patient, log_in(client, session, user)


def count(session: Session, model: type) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def test_the_portal_lists_what_is_due_with_a_start_button(
    client: TestClient, session: Session
) -> None:
    clinic, patient, _ = patient_portal(client, session)
    clinician = principal_for(make_user(session, clinic, "clinician"))
    service.request_questionnaire(
        session=session, principal=clinician, patient_id=patient.id, instrument_id="pain-nrs"
    )
    r = client.get("/portal")
    assert r.status_code == 200
    assert "Hello, Ana" in r.text
    assert "Pain intensity numeric rating scale" in r.text
    assert 'href="/portal/questionnaires/pain-nrs?timepoint=ad_hoc"' in r.text


def test_staff_and_strangers_cannot_use_the_portal(client: TestClient, session: Session) -> None:
    r = client.get("/portal", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    clinic = make_clinic(session)
    log_in(client, session, make_user(session, clinic, "clinician"))
    assert client.get("/portal/scores").status_code == 403


def test_a_missing_answer_is_shown_next_to_the_question_and_nothing_is_stored(
    client: TestClient, session: Session
) -> None:
    clinic, patient, csrf = patient_portal(client, session)
    form = client.get("/portal/questionnaires/pain-nrs")
    assert form.status_code == 200
    key = re.search(r'name="key" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    base = {"csrf_token": csrf, "timepoint": "ad_hoc", "course": "", "key": key}
    r = client.post("/portal/questionnaires/pain-nrs", data=base | {"action": "submit"})
    assert r.status_code == 422
    assert 'id="q-pain-nrs-error"' in r.text and "Please answer this question." in r.text
    assert 'aria-describedby="q-pain-nrs-error"' in r.text
    r = client.post(
        "/portal/questionnaires/pain-nrs", data=base | {"action": "submit", "a-pain-nrs": "14"}
    )
    assert r.status_code == 422 and "Choose one of the answers shown." in r.text
    assert count(session, QuestionnaireResponse) == 0
    r = client.post(
        "/portal/questionnaires/pain-nrs",
        data=base | {"action": "submit", "a-pain-nrs": "6"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    result = client.get(r.headers["location"])
    assert "Thank you" in result.text and '<td class="score-value">6</td>' in result.text
    # pressing send twice (same form key) does not store a second response
    again = client.post(
        "/portal/questionnaires/pain-nrs",
        data=base | {"action": "submit", "a-pain-nrs": "6"},
        follow_redirects=False,
    )
    assert again.headers["location"] == r.headers["location"]
    assert (count(session, QuestionnaireResponse), count(session, Score)) == (1, 1)
    assert "<svg" in client.get("/portal/scores").text


def test_save_and_resume_then_submit_one_question_per_screen(
    client: TestClient, session: Session
) -> None:
    clinic, patient, csrf = patient_portal(client, session)
    first = client.get("/portal/questionnaires/odi?step=1")
    assert "Question 1 of 10" in first.text and "Question 2 of 10" not in first.text
    assert "has not loaded the licensed wording" in first.text
    key = re.search(r'name="key" value="([^"]+)"', first.text).group(1)  # type: ignore[union-attr]
    base = {"csrf_token": csrf, "timepoint": "ad_hoc", "course": "", "key": key}
    r = client.post(
        "/portal/questionnaires/odi",
        data=base | {"step": "1", "action": "next", "a-odi-1": "3"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"].endswith("&step=2")
    draft = session.scalars(select(QuestionnaireResponse)).one()
    assert (draft.status, draft.answers) == ("in-progress", {"odi-1": 3})
    assert count(session, Score) == 0
    # Leave and come back: the whole form shows the saved answer checked.
    resumed = client.get("/portal/questionnaires/odi")
    assert re.search(r'name="a-odi-1" value="3" checked', resumed.text)
    assert "1 of 10 answered" in resumed.text
    answers = {f"a-{item}": "2" for item in ODI[1:]}
    r = client.post(
        "/portal/questionnaires/odi",
        data=base | answers | {"a-odi-1": "3", "action": "submit"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    session.refresh(draft)
    assert draft.status == "completed"
    # ODI: (3 + 9 x 2) / 50 x 100 = 42
    assert [s.value for s in session.scalars(select(Score))] == [42.0]


def test_the_clinics_licensed_wording_replaces_the_neutral_labels(
    client: TestClient, session: Session
) -> None:
    clinic, patient, _ = patient_portal(client, session)
    admin = principal_for(make_user(session, clinic, "admin"))
    service.load_instrument_text(
        session=session,
        principal=admin,
        instrument_id="odi",
        items={item: f"Licensed wording {item}" for item in ODI},
    )
    page = client.get("/portal/questionnaires/odi")
    assert "Licensed wording odi-7" in page.text
    assert "has not loaded the licensed wording" not in page.text


def test_a_form_without_its_csrf_token_is_refused(client: TestClient, session: Session) -> None:
    patient_portal(client, session)
    r = client.post(
        "/portal/questionnaires/pain-nrs",
        data={"key": "abcdefgh1234", "a-pain-nrs": "3", "action": "submit"},
    )
    assert r.status_code == 403
    assert count(session, QuestionnaireResponse) == 0


def _link(session: Session, clinic, patient, settings: Settings, hours: int = 24) -> str:
    staff = principal_for(make_user(session, clinic, "front_desk"))
    token, _ = links.issue_link(
        session=session,
        principal=staff,
        patient_id=patient.id,
        secret_key=settings.secret_key.get_secret_value(),
        hours=hours,
    )
    return f"/portal/link/{token}"


def _csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]


def test_a_single_use_link_opens_the_portal_once(
    client: TestClient, session: Session, settings: Settings
) -> None:
    clinic = make_clinic(session)
    patient = make_patient(session, clinic, given_name="Bo")
    url = _link(session, clinic, patient, settings)
    page = client.get(url)
    assert page.status_code == 200 and "Continue" in page.text
    assert session.scalars(select(PortalLink)).one().used_at is None  # a GET never uses it
    r = client.post(url, data={"csrf_token": _csrf_of(page.text)}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/portal"
    home = client.get("/portal")
    assert home.status_code == 200 and "Hello, Bo" in home.text
    assert "with a link from your clinic" in home.text
    # the visit is the patient's portal only
    assert client.get("/patients", follow_redirects=False).status_code == 303
    used = client.get(url)
    assert used.status_code == 410 and "already used" in used.text
    again = client.post(url, data={"csrf_token": _csrf_of(page.text)})
    assert again.status_code == 410
    client.post("/portal/visit/end", data={"csrf_token": _csrf_of(home.text)})
    assert client.get("/portal", follow_redirects=False).status_code == 303


def test_expired_and_forged_links_are_410_with_a_clear_page(
    client: TestClient, session: Session, settings: Settings
) -> None:
    clinic = make_clinic(session)
    patient = make_patient(session, clinic)
    url = _link(session, clinic, patient, settings, hours=1)
    link = session.scalars(select(PortalLink)).one()
    link.created_at = utcnow() - dt.timedelta(hours=3)
    link.expires_at = utcnow() - dt.timedelta(hours=2)
    session.flush()
    r = client.get(url)
    assert r.status_code == 410 and "has expired" in r.text
    assert "This link no longer works" in r.text
    forged = url[:-3] + ("aaa" if not url.endswith("aaa") else "bbb")
    assert client.get("/portal/link/" + "x" * 300).status_code == 410
    r = client.get(forged)
    assert r.status_code == 410 and "not valid" in r.text
    api = client.get(forged, headers={"accept": "application/json"})
    assert api.status_code == 410 and api.json()["code"] == "gone"


def _diary_session(session: Session, clinic, patient):
    course = make_course(session, clinic, patient)
    return make_session(session, clinic, patient, utcnow() - dt.timedelta(hours=30), course=course)


def test_a_red_flag_in_the_diary_tells_the_patient_to_call_and_alerts_the_clinic(
    client: TestClient, session: Session
) -> None:
    clinic, patient, csrf = patient_portal(client, session)
    appt = _diary_session(session, clinic, patient)
    page = client.get(f"/portal/diary/{appt.id}")
    assert page.status_code == 200 and "Pain at the injected area" in page.text
    day = re.search(r'name="day" value="(\d)"', page.text).group(1)  # type: ignore[union-attr]
    missing = client.post(f"/portal/diary/{appt.id}", data={"csrf_token": csrf, "day": day})
    assert missing.status_code == 422
    assert 'id="d-pain-error"' in missing.text and 'id="d-swelling-error"' in missing.text
    answers = {
        "csrf_token": csrf,
        "day": day,
        "pain": "5",
        "swelling": "some",
        "redness": "spreading",
        "warmth": "yes",
        "fever": "no",
        "normal_activity": "yes",
    }
    r = client.post(f"/portal/diary/{appt.id}", data=answers)
    assert r.status_code == 200
    assert "Please call the clinic on +1 555 0100 today" in r.text
    assert count(session, ClinicAlert) == 1
    # the clinic sees it on the home page at once
    staff_csrf = log_in(client, session, make_user(session, clinic, "clinician"))
    home = client.get("/home")
    assert "1 open" in home.text and patient.display_name in home.text
    alerts = client.get("/alerts")
    assert "The injected area becomes red, hot and swollen" in alerts.text
    outcomes = client.get(f"/patients/{patient.id}/outcomes")
    assert "Flare diaries" in outcomes.text and "warning signs" in outcomes.text
    alert = session.scalars(select(ClinicAlert)).one()
    r = client.post(
        f"/alerts/{alert.id}/acknowledge",
        data={"csrf_token": staff_csrf, "next": "/home"},
        follow_redirects=False,
    )
    assert r.headers["location"] == "/home"
    assert "No open alerts." in client.get("/home").text


def test_front_desk_sees_only_the_number_of_alerts(client: TestClient, session: Session) -> None:
    clinic, patient, csrf = patient_portal(client, session)
    appt = _diary_session(session, clinic, patient)
    page = client.get(f"/portal/diary/{appt.id}")
    day = re.search(r'name="day" value="(\d)"', page.text).group(1)  # type: ignore[union-attr]
    client.post(
        f"/portal/diary/{appt.id}",
        data={
            "csrf_token": csrf,
            "day": day,
            "pain": "3",
            "swelling": "none",
            "redness": "none",
            "warmth": "no",
            "fever": "yes",
            "normal_activity": "no",
        },
    )
    log_in(client, session, make_user(session, clinic, "front_desk"))
    home = client.get("/home")
    assert "1 alert from patients" in home.text and patient.display_name not in home.text
    assert client.get("/alerts").status_code == 403
    assert client.get(f"/patients/{patient.id}/outcomes").status_code == 403


def test_the_outcomes_page_shows_trajectories_with_the_mcid_band(
    client: TestClient, session: Session
) -> None:
    clinic = make_clinic(session)
    patient = make_patient(session, clinic)
    clinician_user = make_user(session, clinic, "clinician")
    clinician = principal_for(clinician_user)
    from prolo.portal.schemas import ResponseIn

    for days, value in ((90, 7), (60, 6), (1, 3)):
        service.submit_response(
            session=session,
            principal=clinician,
            patient_id=patient.id,
            data=ResponseIn(
                instrument_id="pain-nrs",
                answers={"pain-nrs": value},
                authored_at=utcnow() - dt.timedelta(days=days),
            ),
        )
    csrf = log_in(client, session, clinician_user)
    page = client.get(f"/patients/{patient.id}/outcomes")
    assert page.status_code == 200
    assert "Change smaller than the MCID (2); below the dashed line" in page.text
    assert "Farrar" in page.text and "<svg" in page.text
    assert "-4.0" in page.text  # 3 - 7 from the first score
    assert f'href="/patients/{patient.id}/outcomes"' in client.get(f"/patients/{patient.id}").text
    r = client.post(
        f"/patients/{patient.id}/outcomes/request",
        data={"csrf_token": csrf, "instrument_id": "ndi"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert session.scalars(
        select(QuestionnaireResponse.instrument_id).where(
            QuestionnaireResponse.status == "in-progress"
        )
    ).all() == ["ndi"]
    due = client.get("/questionnaires/due")
    assert patient.display_name in due.text and "Neck Disability Index" in due.text
    link = client.post(f"/patients/{patient.id}/outcomes/link", data={"csrf_token": csrf})
    assert "/portal/link/" in link.text
    other = log_in(client, session, make_user(session, make_clinic(session), "clinician"))
    assert other
    assert client.get(f"/patients/{patient.id}/outcomes").status_code == 404
