"""The questionnaire, diary and alert API: storage, idempotency, bad input, authorization
and audit, on both databases."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from prolo.db import utcnow
from prolo.errors import Conflict
from prolo.portal.diary import diary_day
from prolo.portal.models import ClinicAlert, QuestionnaireResponse, Score
from prolo.portal.service import condition_instruments
from prolo.security.models import AuditEvent
from tests.factories import make_clinic, make_patient, make_user, token_for
from tests.portal.factories import make_course, make_session

ODI = [f"odi-{n}" for n in range(1, 11)]
NY = ZoneInfo("America/New_York")


def count(session: Session, model: type) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def events(session: Session, patient_id: int) -> list[str]:
    return list(
        session.scalars(
            select(AuditEvent.event)
            .where(AuditEvent.patient_id == patient_id)
            .order_by(AuditEvent.id)
        ).all()
    )


def patient_and_token(session: Session):
    clinic = make_clinic(session)
    patient = make_patient(session, clinic)
    headers = token_for(session, make_user(session, clinic, "patient", patient=patient))
    return clinic, patient, headers


def test_a_submission_stores_the_response_and_its_scores_in_one_go(
    client: TestClient, session: Session
) -> None:
    clinic, patient, headers = patient_and_token(session)
    url = f"/api/patients/{patient.id}/responses"
    prtee = {f"prtee-pain-{n}": 6 for n in range(1, 6)} | {
        f"prtee-function-{n}": 4 for n in range(1, 11)
    }
    r = client.post(url, json={"instrument_id": "prtee", "answers": prtee}, headers=headers)
    assert r.status_code == 201, r.text
    body = r.json()
    # pain = 5 x 6 = 30; function = 10 x 4 / 2 = 20; total = 50
    assert {s["score_key"]: s["value"] for s in body["scores"]} == {
        "total": 50.0,
        "pain": 30.0,
        "function": 20.0,
    }
    assert all(s["effective_at"] == body["authored_at"] for s in body["scores"])
    assert (count(session, QuestionnaireResponse), count(session, Score)) == (1, 3)
    assert "questionnaire_response.create" in events(session, patient.id)
    listed = client.get(url, headers=headers).json()
    assert [x["id"] for x in listed] == [body["id"]]
    one = client.get(f"{url}/{body['id']}", headers=headers).json()
    assert one["answers"]["prtee-pain-1"] == 6


def test_the_same_idempotency_key_is_not_stored_twice(client: TestClient, session: Session) -> None:
    clinic, patient, headers = patient_and_token(session)
    url = f"/api/patients/{patient.id}/responses"
    body = {"instrument_id": "pain-nrs", "answers": {"pain-nrs": 5}}
    first = client.post(url, json=body, headers=headers | {"Idempotency-Key": "retry-0001"})
    again = client.post(url, json=body, headers=headers | {"Idempotency-Key": "retry-0001"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    in_body = client.post(url, json=body | {"idempotency_key": "retry-0001"}, headers=headers)
    assert in_body.status_code == 200
    assert (count(session, QuestionnaireResponse), count(session, Score)) == (1, 1)
    changed = client.post(
        url,
        json={"instrument_id": "pain-nrs", "answers": {"pain-nrs": 6}},
        headers=headers | {"Idempotency-Key": "retry-0001"},
    )
    assert changed.status_code == 409
    assert changed.json()["errors"][0]["field"] == "idempotency_key"
    clash = client.post(
        url,
        json=body | {"idempotency_key": "other-0001"},
        headers=headers | {"Idempotency-Key": "retry-0001"},
    )
    assert clash.status_code == 422
    assert count(session, QuestionnaireResponse) == 1


def test_bad_input_names_the_item_and_stores_nothing(client: TestClient, session: Session) -> None:
    clinic, patient, headers = patient_and_token(session)
    other = make_patient(session, clinic)
    foreign_course = make_course(session, clinic, other)
    url = f"/api/patients/{patient.id}/responses"
    cases = [
        ({"instrument_id": "nope", "answers": {}}, "instrument_id"),
        ({"instrument_id": "pain-nrs", "answers": {"pain-nrs": 12}}, "answers.pain-nrs"),
        ({"instrument_id": "pain-nrs", "answers": {"pain-nrs": "x"}}, "answers.pain-nrs"),
        ({"instrument_id": "pain-nrs", "answers": {"pain-nrs": None}}, "answers.pain-nrs"),
        ({"instrument_id": "odi", "answers": {"odi-1": 6}}, "answers.odi-1"),
        ({"instrument_id": "odi", "answers": {"odi-99": 1}}, "answers.odi-99"),
        (
            {
                "instrument_id": "pain-nrs",
                "answers": {"pain-nrs": 3},
                "course_id": foreign_course.id,
            },
            "course_id",
        ),
        (
            {"instrument_id": "pain-nrs", "answers": {"pain-nrs": 3}, "timepoint": "soon"},
            "timepoint",
        ),
    ]
    for body, field in cases:
        r = client.post(url, json=body, headers=headers)
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert field in [e["field"] for e in r.json()["errors"]], (body, r.json())
    r = client.post(
        url, json={"instrument_id": "odi", "answers": dict.fromkeys(ODI[:8], 2)}, headers=headers
    )
    assert r.status_code == 422 and r.json()["detail"].startswith("not scorable")
    r = client.post(
        url,
        json={
            "instrument_id": "pain-nrs",
            "answers": {"pain-nrs": 3},
            "authored_at": "2999-01-01T00:00:00Z",
        },
        headers=headers,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "authored_at"
    assert (count(session, QuestionnaireResponse), count(session, Score)) == (0, 0)


def test_a_draft_is_not_scored_until_completed(client: TestClient, session: Session) -> None:
    clinic, patient, headers = patient_and_token(session)
    url = f"/api/patients/{patient.id}/responses"
    partial = dict.fromkeys(ODI[:3], 1)
    r = client.post(
        url,
        json={"instrument_id": "odi", "answers": partial, "status": "in-progress"},
        headers=headers,
    )
    assert r.status_code == 201 and r.json()["scores"] == []
    draft = r.json()["id"]
    bad = client.put(
        f"{url}/{draft}", json={"answers": partial, "status": "completed"}, headers=headers
    )
    assert bad.status_code == 422  # seven sections missing: not scorable
    assert count(session, Score) == 0
    assert client.get(f"{url}/{draft}", headers=headers).json()["status"] == "in-progress"
    wrong = client.put(f"{url}/{draft}", json={"answers": {"odi-1": 9}}, headers=headers)
    assert wrong.status_code == 422 and wrong.json()["item"] == "odi-1"
    done = client.put(
        f"{url}/{draft}",
        json={"answers": dict.fromkeys(ODI, 1), "status": "completed"},
        headers=headers,
    )
    assert done.status_code == 200
    assert [s["value"] for s in done.json()["scores"]] == [20.0]  # 100 x 10 / 50
    again = client.put(f"{url}/{draft}", json={"answers": {}}, headers=headers)
    assert again.status_code == 409


def test_a_patient_sees_only_their_own_answers(client: TestClient, session: Session) -> None:
    clinic, patient, headers = patient_and_token(session)
    other = make_patient(session, clinic)
    for path in ("responses", "scores", "due"):
        r = client.get(f"/api/patients/{other.id}/{path}", headers=headers)
        assert r.status_code == 404
    r = client.post(
        f"/api/patients/{other.id}/responses",
        json={"instrument_id": "pain-nrs", "answers": {"pain-nrs": 1}},
        headers=headers,
    )
    assert r.status_code == 404
    assert count(session, QuestionnaireResponse) == 0
    denied = session.scalars(select(AuditEvent).where(AuditEvent.event == "access.denied")).all()
    assert {e.entity_id for e in denied} == {str(other.id)}


def test_staff_see_their_clinic_only_and_front_desk_sees_no_scores(
    client: TestClient, session: Session
) -> None:
    clinic, patient, patient_headers = patient_and_token(session)
    client.post(
        f"/api/patients/{patient.id}/responses",
        json={"instrument_id": "pain-nrs", "answers": {"pain-nrs": 4}},
        headers=patient_headers,
    )
    clinician = token_for(session, make_user(session, clinic, "clinician"))
    scores = client.get(f"/api/patients/{patient.id}/scores", headers=clinician).json()
    assert [(s["instrument_id"], s["value"]) for s in scores] == [("pain-nrs", 4.0)]
    r = client.post(
        f"/api/patients/{patient.id}/responses",
        json={"instrument_id": "pain-nrs", "answers": {"pain-nrs": 2}, "timepoint": "week_6"},
        headers=clinician,
    )
    assert r.status_code == 201  # a clinician may enter a paper form
    elsewhere = token_for(session, make_user(session, make_clinic(session), "clinician"))
    assert client.get(f"/api/patients/{patient.id}/scores", headers=elsewhere).status_code == 404
    front = token_for(session, make_user(session, clinic, "front_desk"))
    assert client.get(f"/api/patients/{patient.id}/scores", headers=front).status_code == 403
    research = token_for(session, make_user(session, clinic, "researcher"))
    assert client.get(f"/api/patients/{patient.id}/responses", headers=research).status_code == 403
    assert events(session, patient.id).count("score.read") == 1


def test_due_questionnaires_follow_the_course(client: TestClient, session: Session) -> None:
    clinic, patient, headers = patient_and_token(session)
    course = make_course(session, clinic, patient, condition_id="temporomandibular-disorder")
    make_session(
        session, clinic, patient, utcnow() + dt.timedelta(days=3), course=course, status="booked"
    )
    url = f"/api/patients/{patient.id}/due"
    due = client.get(url, params={"outstanding": True}, headers=headers).json()
    expected = [i for i in condition_instruments("temporomandibular-disorder") if i != "pgic"]
    assert [(d["timepoint"], d["instrument_id"], d["status"]) for d in due] == [
        ("baseline", i, "due") for i in expected
    ]
    client.post(
        f"/api/patients/{patient.id}/responses",
        json={
            "instrument_id": "pain-nrs",
            "answers": {"pain-nrs": 6},
            "timepoint": "baseline",
            "course_id": course.id,
        },
        headers=headers,
    )
    statuses = {d["instrument_id"]: d["status"] for d in client.get(url, headers=headers).json()}
    assert statuses["pain-nrs"] == "done" and statuses["jfls-8"] == "due"


def test_a_clinician_can_ask_for_a_questionnaire_now(client: TestClient, session: Session) -> None:
    clinic, patient, headers = patient_and_token(session)
    clinician = token_for(session, make_user(session, clinic, "clinician"))
    url = f"/api/patients/{patient.id}/questionnaire-requests"
    r = client.post(url, json={"instrument_id": "quickdash"}, headers=clinician)
    assert r.status_code == 201 and r.json()["status"] == "in-progress"
    again = client.post(url, json={"instrument_id": "quickdash"}, headers=clinician)
    assert again.json()["id"] == r.json()["id"]  # one open request per instrument
    front = token_for(session, make_user(session, clinic, "front_desk"))
    assert client.post(url, json={"instrument_id": "odi"}, headers=front).status_code == 403
    due = client.get(f"/api/patients/{patient.id}/due", headers=headers).json()
    assert [(d["timepoint"], d["instrument_id"], d["draft"]) for d in due] == [
        ("ad_hoc", "quickdash", True)
    ]
    # QuickDASH: ((sum / n) - 1) x 25; eleven answers of 3 -> (33 / 11 - 1) x 25 = 50
    done = client.put(
        f"/api/patients/{patient.id}/responses/{r.json()['id']}",
        json={"answers": {f"quickdash-{n}": 3 for n in range(1, 12)}, "status": "completed"},
        headers=headers,
    )
    assert done.json()["scores"][0]["value"] == 50.0
    assert client.get(f"/api/patients/{patient.id}/due", headers=headers).json() == []


def _diary_setup(session: Session, *, days_ago: float = 1.5):
    clinic, patient, headers = patient_and_token(session)
    clinic.phone = "+1 555 0100"
    course = make_course(session, clinic, patient)
    start = utcnow() - dt.timedelta(days=days_ago)
    appointment = make_session(session, clinic, patient, start, course=course)
    return clinic, patient, headers, appointment


def diary_body(appointment_id: int, day: int, **kw: object) -> dict[str, object]:
    body: dict[str, object] = {
        "appointment_id": appointment_id,
        "day": day,
        "pain": 5,
        "swelling": "some",
        "redness": "at_site",
        "warmth": False,
        "fever": False,
        "normal_activity": True,
    }
    return body | kw


def test_a_red_flag_in_the_diary_alerts_the_clinic_at_once(
    client: TestClient, session: Session
) -> None:
    clinic, patient, headers, appt = _diary_setup(session)
    url = f"/api/patients/{patient.id}/flare-diary"
    calm = client.post(url, json=diary_body(appt.id, 1), headers=headers)
    assert calm.status_code == 201, calm.text
    assert calm.json()["red_flags"] == [] and calm.json()["alert_id"] is None
    r = client.post(url, json=diary_body(appt.id, 2, fever=True), headers=headers)
    assert r.status_code == 201
    result = r.json()
    assert [f["sign_id"] for f in result["red_flags"]] == ["fever-after-injection"]
    assert "+1 555 0100" in result["advice"]
    clinician = token_for(session, make_user(session, clinic, "clinician"))
    alerts = client.get("/api/alerts", headers=clinician).json()
    assert [(a["id"], a["signs"]) for a in alerts] == [
        (result["alert_id"], ["fever-after-injection"])
    ]
    # correcting the same day with the same sign does not raise a second alert
    client.post(url, json=diary_body(appt.id, 2, fever=True, pain=6), headers=headers)
    assert count(session, ClinicAlert) == 1
    other_clinic = token_for(session, make_user(session, make_clinic(session), "clinician"))
    assert client.get("/api/alerts", headers=other_clinic).json() == []
    assert (
        client.post(
            f"/api/alerts/{result['alert_id']}/acknowledge", headers=other_clinic
        ).status_code
        == 404
    )
    ack = client.post(f"/api/alerts/{result['alert_id']}/acknowledge", headers=clinician)
    assert ack.status_code == 200 and ack.json()["acknowledged_at"] is not None
    assert client.get("/api/alerts", headers=clinician).json() == []
    assert "alert.create" in events(session, patient.id)
    curve = client.get(f"{url}/{appt.id}", headers=clinician).json()
    assert [(e["day"], e["pain"], e["red_flags"]) for e in curve["entries"]] == [
        (1, 5, []),
        (2, 6, ["fever-after-injection"]),
    ]


def test_pain_far_above_baseline_after_72_hours_is_flagged(
    client: TestClient, session: Session
) -> None:
    clinic, patient, headers, appt = _diary_setup(session, days_ago=4.2)
    before = (appt.starts_at - dt.timedelta(hours=1)).isoformat()
    client.post(
        f"/api/patients/{patient.id}/responses",
        json={"instrument_id": "pain-nrs", "answers": {"pain-nrs": 4}, "authored_at": before},
        headers=headers,
    )
    today = diary_day(appt.starts_at, utcnow(), NY)
    r = client.post(
        f"/api/patients/{patient.id}/flare-diary",
        json=diary_body(appt.id, today, pain=7, redness="none", swelling="none"),
        headers=headers,
    )
    assert [f["sign_id"] for f in r.json()["red_flags"]] == ["pain-worsening-after-72-hours"]
    assert "baseline of 4" in r.json()["red_flags"][0]["reason"]


def test_diary_days_must_be_within_the_week_after_the_patients_own_session(
    client: TestClient, session: Session
) -> None:
    clinic, patient, headers, appt = _diary_setup(session)
    url = f"/api/patients/{patient.id}/flare-diary"
    today = diary_day(appt.starts_at, utcnow(), NY)
    future = client.post(url, json=diary_body(appt.id, today + 1), headers=headers)
    assert future.status_code == 422 and future.json()["errors"][0]["field"] == "day"
    bad = client.post(url, json=diary_body(appt.id, 1, pain=11), headers=headers)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "pain"
    typed = client.post(url, json=diary_body(appt.id, 1, fever="yes"), headers=headers)
    assert typed.status_code == 422
    other = make_patient(session, clinic)
    theirs = make_session(session, clinic, other, appt.starts_at)
    assert client.post(url, json=diary_body(theirs.id, 1), headers=headers).status_code == 404
    old = make_session(session, clinic, patient, utcnow() - dt.timedelta(days=12))
    closed = client.post(url, json=diary_body(old.id, 7), headers=headers)
    assert closed.status_code == 409
    consult = make_session(
        session, clinic, patient, appt.starts_at + dt.timedelta(hours=2), kind="consultation"
    )
    assert client.post(url, json=diary_body(consult.id, 1), headers=headers).status_code == 404


def test_staff_create_single_use_links(client: TestClient, session: Session) -> None:
    clinic, patient, _ = patient_and_token(session)
    front = token_for(session, make_user(session, clinic, "front_desk"))
    r = client.post(f"/api/patients/{patient.id}/portal-links", json={"hours": 48}, headers=front)
    assert r.status_code == 201
    assert "/portal/link/" in r.json()["url"]
    expires = dt.datetime.fromisoformat(r.json()["expires_at"])
    assert dt.timedelta(hours=47) < expires - utcnow() <= dt.timedelta(hours=48)
    assert (
        client.post(
            f"/api/patients/{patient.id}/portal-links", json={"hours": 0}, headers=front
        ).status_code
        == 422
    )


def test_an_admin_sets_the_clinic_schedule(client: TestClient, session: Session) -> None:
    clinic, patient, headers = patient_and_token(session)
    admin = token_for(session, make_user(session, clinic, "admin"))
    url = "/api/clinic/questionnaire-schedule"
    assert client.get(url, headers=admin).json()["follow_up_days"] == {
        "week_6": 42,
        "month_3": 91,
        "month_6": 182,
        "month_12": 365,
    }
    clinician = token_for(session, make_user(session, clinic, "clinician"))
    assert client.put(url, json={"pre_session": False}, headers=clinician).status_code == 403
    bad = client.put(url, json={"follow_up_days": {"week_6": 100, "month_3": 90}}, headers=admin)
    assert bad.status_code == 422
    r = client.put(
        url, json={"follow_up_days": {"month_3": 90}, "open_days_before": 3}, headers=admin
    )
    assert r.status_code == 200 and r.json()["follow_up_days"] == {"month_3": 90}
    course = make_course(
        session,
        clinic,
        patient,
        status="completed",
        ended_on=utcnow().date() - dt.timedelta(days=88),
    )
    make_session(session, clinic, patient, utcnow() - dt.timedelta(days=120), course=course)
    due = client.get(f"/api/patients/{patient.id}/due", headers=headers).json()
    follow_ups = {d["timepoint"] for d in due} - {"baseline", "pre_session"}
    assert follow_ups == {"month_3"}
    assert {d["status"] for d in due if d["timepoint"] == "month_3"} == {"due"}


def test_open_windows_group_a_courses_due_items_for_one_reminder(session: Session) -> None:
    from prolo.portal.service import open_windows

    clinic, patient, _ = patient_and_token(session)
    course = make_course(session, clinic, patient, condition_id="low-back-pain")
    start = utcnow() + dt.timedelta(days=3)
    make_session(session, clinic, patient, start, course=course, status="booked")
    other = make_patient(session, clinic)
    make_course(session, clinic, other, status="completed", ended_on=utcnow().date())
    (window,) = open_windows(session=session, clinic_id=clinic.id)
    assert (window.patient_id, window.course_id, window.timepoint) == (
        patient.id,
        course.id,
        "baseline",
    )
    assert window.instruments == tuple(
        i for i in condition_instruments("low-back-pain") if i != "pgic"
    )
    assert window.due_by == start - dt.timedelta(hours=24)
    assert open_windows(session=session, clinic_id=make_clinic(session).id) == []


def test_huge_ids_in_bodies_are_422_not_an_overflow(client: TestClient, session: Session) -> None:
    clinic, patient, headers = patient_and_token(session)
    huge = 2**63
    r = client.post(
        f"/api/patients/{patient.id}/responses",
        json={"instrument_id": "pain-nrs", "answers": {"pain-nrs": 1}, "course_id": huge},
        headers=headers,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "course_id"
    r = client.post(
        f"/api/patients/{patient.id}/flare-diary", json=diary_body(huge, 1), headers=headers
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "appointment_id"


def test_a_concurrent_retry_that_loses_the_race_returns_the_winner(
    session: Session, monkeypatch
) -> None:
    from prolo.portal import service
    from prolo.portal.schemas import ResponseIn
    from tests.factories import principal_for

    clinic = make_clinic(session)
    patient = make_patient(session, clinic)
    me = principal_for(make_user(session, clinic, "patient", patient=patient))
    data = ResponseIn(
        instrument_id="pain-nrs", answers={"pain-nrs": 3}, idempotency_key="race-key-01"
    )
    winner = service.submit_response(
        session=session, principal=me, patient_id=patient.id, data=data
    )
    # The loser looked for the key before the winner committed, so its lookup saw nothing.
    real_scalar = session.scalar
    calls = {"n": 0}

    def first_lookup_misses(statement, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            return None
        return real_scalar(statement, *args, **kwargs)

    monkeypatch.setattr(session, "scalar", first_lookup_misses)
    loser = service.submit_response(session=session, principal=me, patient_id=patient.id, data=data)
    monkeypatch.undo()
    assert (loser.created, loser.response.id) == (False, winner.response.id)
    assert count(session, QuestionnaireResponse) == 1 and count(session, Score) == 1
    changed = data.model_copy(update={"answers": {"pain-nrs": 4}})
    calls["n"] = 0
    monkeypatch.setattr(session, "scalar", first_lookup_misses)
    with pytest.raises(Conflict):
        service.submit_response(session=session, principal=me, patient_id=patient.id, data=changed)
