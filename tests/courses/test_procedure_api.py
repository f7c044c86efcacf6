"""Procedure records through the API: draft, re-check, sign, 409 on edits, amendments."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from prolo.clinic.models import Clinic, Practitioner
from prolo.courses.models import Consent, Procedure, TreatmentCourse
from prolo.knowledge.safety import load_safety_rules
from prolo.patients.models import Allergy, Patient
from prolo.scheduling.models import Appointment
from prolo.security.models import AuditEvent, User
from tests.factories import make_clinic, make_patient, make_practitioner, make_user, token_for
from tests.screening.factories import clear_history

Headers = dict[str, str]


def clinician(session: Session, clinic: Clinic, practitioner: Practitioner) -> tuple[User, Headers]:
    """A clinician whose login is the given practitioner, with an API token."""
    user = make_user(session, clinic, "clinician")
    user.practitioner_id = practitioner.id
    session.flush()
    return user, token_for(session, user)


def course_for(session: Session, patient: Patient, *, consent: bool) -> TreatmentCourse:
    course = TreatmentCourse(
        clinic_id=patient.clinic_id,
        patient_id=patient.id,
        condition_id="knee-osteoarthritis",
        status="planned",
        planned_sessions=3,
        interval_weeks_min=4,
        interval_weeks_max=4,
        injectate="dextrose (test)",
    )
    session.add(course)
    session.flush()
    if consent:
        session.add(
            Consent(
                clinic_id=patient.clinic_id,
                course_id=course.id,
                patient_id=patient.id,
                signed_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=1),
                recorded_by_user_id=1,
                recorded_by_name="Test clinician",
                text_version="test",
                items=["all"],
            )
        )
        session.flush()
    return course


def injection_visit(
    session: Session, patient: Patient, practitioner: Practitioner, course: TreatmentCourse
) -> Appointment:
    starts = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)
    visit = Appointment(
        clinic_id=patient.clinic_id,
        patient_id=patient.id,
        practitioner_id=practitioner.id,
        course_id=course.id,
        kind="injection",
        status="booked",
        starts_at=starts,
        ends_at=starts + dt.timedelta(minutes=30),
    )
    session.add(visit)
    session.flush()
    return visit


def record(**overrides: Any) -> dict[str, Any]:
    """A complete, plausible knee session; nothing in it argues against injecting."""
    questions = load_safety_rules().questions
    body: dict[str, Any] = {
        "performed_at": (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=20)).isoformat(),
        "body_region": "knee",
        "injectate": {
            "solution": "dextrose",
            "concentration_percent": 25,
            "anaesthetic": "lidocaine",
            "anaesthetic_concentration_percent": 1,
            "total_volume_ml": 6.5,
        },
        "sites": [
            {"site_id": "knee-intra-articular", "side": "right", "volume_ml": 6},
            {"site_id": "knee-ligament-insertion", "side": "right", "volume_ml": 0.5},
        ],
        "guidance": "landmark",
        "needle": {"gauge": 25, "length_mm": 38},
        "checks": {
            "pain_duration_weeks": 52,
            "red_flags": dict.fromkeys(questions, False),
            "history": clear_history(),
            "anticoagulant": False,
            "antiplatelet": False,
            "allergy_local_anaesthetic": False,
            "allergy_dextrose": False,
            "pregnant": False,
        },
        "adverse_events": [],
        "aftercare": {
            "normal_activity": True,
            "expected_inflammation": True,
            "pain_advice": True,
            "when_to_call": True,
        },
        "note": "Tolerated well.",
    }
    body.update(overrides)
    return body


class Setup:
    def __init__(self, session: Session, *, consent: bool = True) -> None:
        self.clinic = make_clinic(session)
        self.practitioner = make_practitioner(session, self.clinic)
        self.patient = make_patient(session, self.clinic)
        self.user, self.headers = clinician(session, self.clinic, self.practitioner)
        self.course = course_for(session, self.patient, consent=consent)
        self.visit = injection_visit(session, self.patient, self.practitioner, self.course)

    def body(self, **overrides: Any) -> dict[str, Any]:
        return record(appointment_id=self.visit.id, **overrides)


def _create(client: TestClient, s: Setup, **overrides: Any) -> dict[str, Any]:
    r = client.post(
        f"/api/patients/{s.patient.id}/procedures", json=s.body(**overrides), headers=s.headers
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_a_draft_stores_the_re_check_and_links_the_session(
    client: TestClient, session: Session
) -> None:
    s = Setup(session)
    created = _create(client, s)
    assert created["status"] == "draft"
    assert created["course_id"] == s.course.id  # taken from the appointment
    assert created["practitioner_id"] == s.practitioner.id  # taken from the login
    pre = created["pre_check"]
    assert pre["consent_on_file"] is True
    assert pre["decision"] == "candidate"
    assert pre["safety_rules_version"] == load_safety_rules().version
    assert created["sites"][1] == {
        "site_id": "knee-ligament-insertion",
        "side": "right",
        "volume_ml": 0.5,
    }
    events = session.scalars(
        select(AuditEvent.event).where(AuditEvent.patient_id == s.patient.id)
    ).all()
    assert "procedure.create" in events


def test_signing_fixes_the_record_and_edits_answer_409_changing_nothing(
    client: TestClient, session: Session
) -> None:
    s = Setup(session)
    created = _create(client, s)
    url = f"/api/procedures/{created['id']}"
    r = client.post(f"{url}/sign", headers=s.headers)
    assert r.status_code == 200, r.text
    signed = r.json()
    assert signed["status"] == "signed"
    assert signed["signed_by_name"] == s.user.display_name
    assert signed["signed_at"] is not None
    session.refresh(s.course)
    assert s.course.status == "active"  # the first signed session starts the course

    before = client.get(url, headers=s.headers).json()
    r = client.put(url, json=s.body(note="changed afterwards"), headers=s.headers)
    assert r.status_code == 409
    problem = r.json()
    assert problem["code"] == "procedure_signed"
    assert f"procedure record {created['id']} is signed" in problem["detail"]
    assert "amendment" in problem["detail"]
    assert client.delete(url, headers=s.headers).status_code == 409
    assert client.post(f"{url}/sign", headers=s.headers).status_code == 409
    assert client.get(url, headers=s.headers).json() == before


def test_an_amendment_keeps_the_original_and_forms_one_chain(
    client: TestClient, session: Session
) -> None:
    s = Setup(session)
    original = _create(client, s)
    url = f"/api/procedures/{original['id']}"
    assert client.post(f"{url}/sign", headers=s.headers).status_code == 200
    corrected = s.body(
        sites=[{"site_id": "knee-intra-articular", "side": "left", "volume_ml": 6.5}],
        reason="Side documented wrongly: it was the left knee.",
    )
    r = client.post(f"{url}/amendments", json=corrected, headers=s.headers)
    assert r.status_code == 201, r.text
    amendment = r.json()
    assert (amendment["status"], amendment["amends_id"]) == ("draft", original["id"])
    assert amendment["amendment_reason"].startswith("Side documented wrongly")
    # The original is untouched, and points at its correction.
    now_original = client.get(url, headers=s.headers).json()
    assert now_original["sites"] == original["sites"]
    assert now_original["status"] == "signed"
    assert now_original["amended_by_id"] == amendment["id"]
    # A second correction of the same original is refused, naming the first.
    r = client.post(f"{url}/amendments", json=corrected, headers=s.headers)
    assert r.status_code == 409
    assert f"already amended by record {amendment['id']}" in r.json()["detail"]
    # The amendment is a draft until signed, then fixed like any record.
    r = client.post(f"/api/procedures/{amendment['id']}/sign", headers=s.headers)
    assert r.status_code == 200
    r = client.put(f"/api/procedures/{amendment['id']}", json=corrected, headers=s.headers)
    assert r.status_code == 409
    listed = client.get(f"/api/patients/{s.patient.id}/procedures", headers=s.headers).json()
    assert sorted(p["id"] for p in listed) == sorted([original["id"], amendment["id"]])


def test_no_consent_no_signature_and_the_draft_keeps_the_result(
    client: TestClient, session: Session
) -> None:
    s = Setup(session, consent=False)
    created = _create(client, s)
    assert created["pre_check"]["consent_on_file"] is False
    r = client.post(f"/api/procedures/{created['id']}/sign", headers=s.headers)
    assert r.status_code == 409
    assert r.json()["code"] == "consent_missing"
    after = client.get(f"/api/procedures/{created['id']}", headers=s.headers).json()
    assert after["status"] == "draft" and after["signed_at"] is None


def test_a_chart_allergy_to_the_anaesthetic_rules_injection_out(
    client: TestClient, session: Session
) -> None:
    s = Setup(session)
    session.add(Allergy(patient_id=s.patient.id, substance="Lidocaine", criticality="high"))
    session.flush()
    created = _create(client, s)  # the form said no allergy; the chart says otherwise
    pre = created["pre_check"]
    assert pre["decision"] == "not_candidate"
    assert "injectate-allergy" in [r["rule_id"] for r in pre["reasons"]]
    r = client.post(f"/api/procedures/{created['id']}/sign", headers=s.headers)
    assert r.status_code == 409
    assert "not candidate" in r.json()["detail"] and "injectate-allergy" in r.json()["detail"]


def test_a_fever_today_rules_injection_out(client: TestClient, session: Session) -> None:
    s = Setup(session)
    body = s.body()
    body["checks"]["red_flags"]["fever"] = True
    r = client.post(f"/api/patients/{s.patient.id}/procedures", json=body, headers=s.headers)
    assert r.status_code == 201
    assert r.json()["pre_check"]["decision"] == "not_candidate"


def test_bad_input_names_the_field_and_stores_nothing(client: TestClient, session: Session) -> None:
    s = Setup(session)
    url = f"/api/patients/{s.patient.id}/procedures"
    cases: list[tuple[dict[str, Any], str, str]] = [
        (
            {"sites": [{"site_id": "common-extensor-origin", "side": "left", "volume_ml": 6.5}]},
            "sites.0.site_id",
            "not in this body region",
        ),
        (
            {"sites": [{"site_id": "no-such-site", "side": "left", "volume_ml": 6.5}]},
            "sites.0.site_id",
            "not on the site list",
        ),
        (
            {"sites": [{"site_id": "knee-intra-articular", "side": "left", "volume_ml": 5}]},
            "body",
            "add up to 5 mL but the total volume is 6.5 mL",
        ),
        (
            {
                "injectate": {
                    "solution": "dextrose",
                    "concentration_percent": 25,
                    "anaesthetic": "lidocaine",
                    "total_volume_ml": 6.5,
                }
            },
            "injectate",
            "together, or neither",
        ),
        (
            {"performed_at": (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()},
            "performed_at",
            "future",
        ),
        ({"guidance": "x-ray"}, "guidance", "landmark"),
    ]
    for overrides, field, message in cases:
        r = client.post(url, json=s.body(**overrides), headers=s.headers)
        assert r.status_code == 422, (field, r.text)
        errors = r.json()["errors"]
        assert errors[0]["field"] == field, r.text
        assert message in errors[0]["message"], r.text
    body = s.body()
    del body["checks"]["red_flags"]["fever"]
    r = client.post(url, json=body, headers=s.headers)
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "checks.red_flags.fever"
    listed = client.get(f"/api/patients/{s.patient.id}/procedures", headers=s.headers)
    assert listed.json() == []


def test_one_original_record_per_session(client: TestClient, session: Session) -> None:
    s = Setup(session)
    first = _create(client, s)
    r = client.post(f"/api/patients/{s.patient.id}/procedures", json=s.body(), headers=s.headers)
    assert r.status_code == 409
    assert r.json()["procedure_id"] == first["id"]


def test_only_the_performing_practitioner_signs(client: TestClient, session: Session) -> None:
    s = Setup(session)
    created = _create(client, s)
    other = make_practitioner(session, s.clinic)
    _, other_headers = clinician(session, s.clinic, other)
    r = client.post(f"/api/procedures/{created['id']}/sign", headers=other_headers)
    assert r.status_code == 403
    admin = token_for(session, make_user(session, s.clinic, "admin"))
    assert client.post(f"/api/procedures/{created['id']}/sign", headers=admin).status_code == 403


def test_who_may_see_a_record(client: TestClient, session: Session) -> None:
    s = Setup(session)
    created = _create(client, s)
    url = f"/api/procedures/{created['id']}"
    front_desk = token_for(session, make_user(session, s.clinic, "front_desk"))
    assert client.get(url, headers=front_desk).status_code == 403
    patient_user = make_user(session, s.clinic, "patient", patient=s.patient)
    assert client.get(url, headers=token_for(session, patient_user)).status_code == 403
    elsewhere = make_clinic(session)
    stranger = token_for(session, make_user(session, elsewhere, "clinician"))
    assert client.get(url, headers=stranger).status_code == 404
    assert client.get("/api/procedures/2147483647", headers=s.headers).status_code == 404


def test_a_draft_can_be_edited_and_discarded(client: TestClient, session: Session) -> None:
    s = Setup(session)
    created = _create(client, s)
    url = f"/api/procedures/{created['id']}"
    r = client.put(url, json=s.body(note="Second thoughts."), headers=s.headers)
    assert r.status_code == 200 and r.json()["note"] == "Second thoughts."
    r = client.put(url, json=s.body(reason="not an amendment"), headers=s.headers)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "reason"
    assert client.delete(url, headers=s.headers).status_code == 204
    assert client.get(url, headers=s.headers).status_code == 404


def test_site_list_and_aftercare_reference(client: TestClient, session: Session) -> None:
    s = Setup(session)
    r = client.get("/api/injection-sites", params={"body_region": "knee"}, headers=s.headers)
    assert r.status_code == 200
    (knee,) = r.json()
    ids = [site["id"] for site in knee["sites"]]
    assert "knee-intra-articular" in ids and "common-extensor-origin" not in ids
    everything = client.get(
        "/api/injection-sites", params={"body_region": "multiple"}, headers=s.headers
    ).json()[0]
    assert {"knee-intra-articular", "common-extensor-origin"} <= {
        x["id"] for x in everything["sites"]
    }
    advice = client.get("/api/aftercare", headers=s.headers).json()
    assert [a["id"] for a in advice] == [
        "normal_activity",
        "expected_inflammation",
        "pain_advice",
        "when_to_call",
    ]
    assert all(a["url"].startswith("https://") and a["locator"] and a["grade"] for a in advice)


# --- a record documents a session that took place ------------------------------------------


def _visit(s: Setup, session: Session, *, status: str, starts_in: dt.timedelta) -> Appointment:
    starts = dt.datetime.now(dt.UTC).replace(microsecond=0) + starts_in
    visit = Appointment(
        clinic_id=s.clinic.id,
        patient_id=s.patient.id,
        practitioner_id=s.practitioner.id,
        course_id=s.course.id,
        kind="injection",
        status=status,
        starts_at=starts,
        ends_at=starts + dt.timedelta(minutes=30),
    )
    session.add(visit)
    session.flush()
    return visit


def _count(session: Session) -> int:
    return len(session.scalars(select(Procedure.id)).all())


def test_no_record_for_a_cancelled_missed_or_future_visit(
    client: TestClient, session: Session
) -> None:
    s = Setup(session)
    url = f"/api/patients/{s.patient.id}/procedures"
    cases = [
        ("cancelled", -dt.timedelta(hours=2), "was cancelled"),
        ("noshow", -dt.timedelta(hours=2), "was a no-show"),
        ("booked", dt.timedelta(days=2), "is booked and has not started yet"),
    ]
    before = _count(session)
    for status, starts_in, words in cases:
        visit = _visit(s, session, status=status, starts_in=starts_in)
        r = client.post(url, json=record(appointment_id=visit.id), headers=s.headers)
        assert r.status_code == 409, r.text
        problem = r.json()
        assert problem["code"] == "appointment_status"
        assert f"appointment {visit.id} {words} (status {status})" in problem["detail"]
        assert (problem["appointment_id"], problem["current_status"]) == (visit.id, status)
    assert _count(session) == before
    # checked in early, or held: documented
    for status, starts_in in (
        ("arrived", dt.timedelta(minutes=10)),
        ("fulfilled", -dt.timedelta(days=3)),
    ):
        visit = _visit(s, session, status=status, starts_in=starts_in)
        r = client.post(url, json=record(appointment_id=visit.id), headers=s.headers)
        assert r.status_code == 201, r.text


def test_a_draft_whose_visit_became_a_no_show_cannot_be_edited_or_signed(
    client: TestClient, session: Session
) -> None:
    s = Setup(session)
    draft = _create(client, s)
    s.visit.status = "noshow"
    session.flush()
    url = f"/api/procedures/{draft['id']}"
    r = client.post(f"{url}/sign", headers=s.headers)
    assert r.status_code == 409 and r.json()["code"] == "appointment_status", r.text
    assert f"appointment {s.visit.id} was a no-show" in r.json()["detail"]
    r = client.put(url, json=s.body(note="Edited."), headers=s.headers)
    assert r.status_code == 409 and r.json()["code"] == "appointment_status", r.text
    session.expire_all()
    stored = session.get_one(Procedure, draft["id"])
    assert (stored.status, stored.note) == ("draft", "Tolerated well.")


def test_a_signed_record_stays_correctable_whatever_its_visit_became(
    client: TestClient, session: Session
) -> None:
    s = Setup(session)
    signed = _create(client, s)
    url = f"/api/procedures/{signed['id']}"
    assert client.post(f"{url}/sign", headers=s.headers).status_code == 200
    s.visit.status = "noshow"  # marked afterwards by mistake: the correction is still needed
    session.flush()
    corrected = s.body(note="Left knee, not right.", reason="Wrong side recorded")
    r = client.post(f"{url}/amendments", json=corrected, headers=s.headers)
    assert r.status_code == 201, r.text
    r = client.post(f"/api/procedures/{r.json()['id']}/sign", headers=s.headers)
    assert r.status_code == 200, r.text
