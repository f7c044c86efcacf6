"""Screening over HTTP: the anonymous self-check (API and page) and stored screenings."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from prolo.knowledge.safety import load_safety_rules
from prolo.screening.models import Screening, ScreeningReason
from prolo.security.models import AuditEvent
from tests.factories import PASSWORD, make_clinic, make_patient, make_user, token_for
from tests.screening.factories import answers, no_red_flags

RULES = load_safety_rules()


def _problem(r: Any, status: int = 422) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    return body


# --- POST /api/screening (public, nothing stored) -------------------------------------


def test_a_chronic_knee_complaint_with_no_safety_issue(client: TestClient) -> None:
    r = client.post("/api/screening", json=answers(condition_id="knee-osteoarthritis"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["decision"] == "candidate"
    assert body["reasons"] == []
    assert body["suggested_protocol_condition_id"] == "knee-osteoarthritis"
    assert "not a diagnosis" in body["information_only"]
    assert body["decision_text"]


def test_a_red_flag_refers_with_its_rule_and_sources(client: TestClient) -> None:
    flags = {**no_red_flags(), "fever": True}
    r = client.post("/api/screening", json=answers(complaint="lower_back", red_flags=flags))
    body = r.json()
    assert body["decision"] == "refer"
    first = body["reasons"][0]
    assert first["kind"] == "red_flag" and first["rule_id"] == "fever-with-spinal-pain"
    assert first["sources"] and all(s["url"] and s["locator"] for s in first["sources"])


def test_every_reason_carries_a_rule_id_and_a_source(client: TestClient) -> None:
    data = answers(
        pain_duration_weeks=2,
        medications={"anticoagulant": True, "antiplatelet": False},
        allergies={"local_anaesthetic": True, "dextrose": False, "other": []},
    )
    body = client.post("/api/screening", json=data).json()
    assert body["decision"] == "not_candidate"
    kinds = [r["kind"] for r in body["reasons"]]
    assert kinds == sorted(kinds, key=["red_flag", "absolute", "relative", "duration"].index)
    assert {"injectate-allergy", "bleeding-risk", "chronic-pain-threshold"} <= {
        r["rule_id"] for r in body["reasons"]
    }
    for reason in body["reasons"]:
        assert reason["rule_id"] and reason["sources"]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (answers(pregnant=True, sex_at_birth="male"), "pregnant"),
        (answers(prior_treatments=["none", "nsaids"]), "prior_treatments"),
        (answers(condition_id="lateral-epicondylosis"), "condition_id"),
        (answers(condition_id="no-such-condition"), "condition_id"),
        (answers(icd10="Q99.99"), "icd10"),
        (answers(pain_duration_weeks=-1), "pain_duration_weeks"),
        (answers(complaint=None), "complaint"),
        (answers(red_flags={**no_red_flags(), "made_up": False}), "red_flags.made_up"),
    ],
)
def test_contradictory_or_unknown_answers_name_the_field(
    client: TestClient, data: dict[str, Any], field: str
) -> None:
    body = _problem(client.post("/api/screening", json=data))
    assert body["errors"][0]["field"] == field
    assert body["detail"].startswith(field)


def test_missing_answers_name_the_field(client: TestClient) -> None:
    data = answers()
    del data["history"]
    assert _problem(client.post("/api/screening", json=data))["errors"][0]["field"] == "history"
    data = answers()
    data["red_flags"] = {k: v for k, v in no_red_flags().items() if k != "night_pain"}
    body = _problem(client.post("/api/screening", json=data))
    assert body["errors"][0]["field"] == "red_flags.night_pain"
    data = answers(medications={"anticoagulant": "yes", "antiplatelet": False})
    body = _problem(client.post("/api/screening", json=data))
    assert body["errors"][0]["field"] == "medications.anticoagulant"


def test_the_self_check_api_stores_and_audits_nothing(client: TestClient, session: Session) -> None:
    before = session.scalar(select(func.count(AuditEvent.id)))
    assert client.post("/api/screening", json=answers()).status_code == 200
    assert session.scalar(select(func.count(Screening.id))) == 0
    assert session.scalar(select(func.count(AuditEvent.id))) == before


# --- Screenings stored on the patient's record -----------------------------------------


def _clinic_with_patient(session: Session, role: str = "clinician") -> tuple[Any, Any, dict]:
    clinic = make_clinic(session)
    patient = make_patient(session, clinic)
    return clinic, patient, token_for(session, make_user(session, clinic, role))


def test_a_clinician_stores_a_screening_with_every_reason(
    client: TestClient, session: Session
) -> None:
    _, patient, headers = _clinic_with_patient(session)
    data = answers(
        complaint="lower_back",
        red_flags={**no_red_flags(), "history_of_cancer": True},
        pregnant=True,
    )
    r = client.post(f"/api/patients/{patient.id}/screenings", json=data, headers=headers)
    assert r.status_code == 201, r.text
    stored = r.json()
    assert stored["decision"] == "refer" and stored["patient_id"] == patient.id
    rule_ids = [x["rule_id"] for x in stored["reasons"]]
    assert rule_ids == [x["rule_id"] for x in stored["result"]["reasons"]]
    assert "history-of-cancer" in rule_ids and "pregnancy" in rule_ids
    assert [x["position"] for x in stored["reasons"]] == list(range(len(rule_ids)))
    assert all(x["sources"][0]["url"] for x in stored["reasons"])
    assert stored["answers"]["pregnant"] is True

    rows = session.scalars(
        select(ScreeningReason).join(Screening).where(Screening.patient_id == patient.id)
    ).all()
    assert sorted(r.rule_id for r in rows) == sorted(rule_ids)
    created = session.scalars(
        select(AuditEvent).where(AuditEvent.event == "screening.create", AuditEvent.action == "C")
    ).all()
    assert [(e.entity_id, e.patient_id) for e in created] == [(str(stored["id"]), patient.id)]

    listed = client.get(f"/api/patients/{patient.id}/screenings", headers=headers).json()
    assert [s["id"] for s in listed] == [stored["id"]]
    one = client.get(f"/api/patients/{patient.id}/screenings/{stored['id']}", headers=headers)
    assert one.status_code == 200 and one.json()["reasons"] == stored["reasons"]
    reads = session.scalar(
        select(func.count(AuditEvent.id)).where(
            AuditEvent.event == "screening.read", AuditEvent.entity_type == "Screening"
        )
    )
    assert reads == 1


def test_bad_answers_for_a_patient_store_nothing(client: TestClient, session: Session) -> None:
    _, patient, headers = _clinic_with_patient(session)
    data = answers(pregnant=True, sex_at_birth="male")
    r = client.post(f"/api/patients/{patient.id}/screenings", json=data, headers=headers)
    assert _problem(r)["errors"][0]["field"] == "pregnant"
    assert session.scalar(select(func.count(Screening.id))) == 0


def test_another_clinics_patient_is_a_404_and_is_audited(
    client: TestClient, session: Session
) -> None:
    _, _, headers = _clinic_with_patient(session)
    other = make_patient(session, make_clinic(session))
    r = client.post(f"/api/patients/{other.id}/screenings", json=answers(), headers=headers)
    _problem(r, 404)
    assert other.family_name not in r.text
    assert _problem(client.get(f"/api/patients/{other.id}/screenings", headers=headers), 404)
    denied = session.scalars(select(AuditEvent).where(AuditEvent.event == "access.denied")).all()
    assert {e.entity_id for e in denied} == {str(other.id)}
    assert session.scalar(select(func.count(Screening.id))) == 0


def test_a_screening_of_another_patient_is_not_found(client: TestClient, session: Session) -> None:
    clinic, patient, headers = _clinic_with_patient(session)
    second = make_patient(session, clinic)
    made = client.post(f"/api/patients/{patient.id}/screenings", json=answers(), headers=headers)
    sid = made.json()["id"]
    r = client.get(f"/api/patients/{second.id}/screenings/{sid}", headers=headers)
    _problem(r, 404)


@pytest.mark.parametrize(("role", "status"), [("front_desk", 403), ("patient", 403)])
def test_only_clinicians_and_admins_screen(
    client: TestClient, session: Session, role: str, status: int
) -> None:
    clinic = make_clinic(session)
    patient = make_patient(session, clinic)
    user = make_user(session, clinic, role, patient=patient if role == "patient" else None)
    headers = token_for(session, user)
    url = f"/api/patients/{patient.id}/screenings"
    _problem(client.post(url, json=answers(), headers=headers), status)
    _problem(client.get(url, headers=headers), status)
    _problem(client.post(url, json=answers()), 401)


def test_an_admin_may_screen(client: TestClient, session: Session) -> None:
    _, patient, headers = _clinic_with_patient(session, "admin")
    r = client.post(f"/api/patients/{patient.id}/screenings", json=answers(), headers=headers)
    assert r.status_code == 201


# --- The HTML pages post the same answers ---------------------------------------------


def _form(**overrides: str | list[str]) -> dict[str, Any]:
    """A complete self-check form: a 6-month knee complaint, every safety answer no."""
    form: dict[str, Any] = {
        "complaint": "knee",
        "condition_id": "",
        "duration_value": "6",
        "duration_unit": "months",
        "prior_treatments": ["physiotherapy_exercise"],
        "allergies.other": "",
        "sex_at_birth": "female",
        "pregnant": "no",
    }
    for q in RULES.questions:
        form[f"red_flags.{q}"] = "no"
    for name in ("anticoagulant", "antiplatelet"):
        form[f"medications.{name}"] = "no"
    for name in ("local_anaesthetic", "dextrose"):
        form[f"allergies.{name}"] = "no"
    for name in (
        "infection_at_site",
        "systemic_infection",
        "bleeding_disorder",
        "fracture_at_site",
        "prosthetic_joint_at_site",
        "immunosuppressed",
        "malignancy_at_site",
        "diabetes",
    ):
        form[f"history.{name}"] = "no"
    form.update(overrides)
    return form


def _csrf(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page)[1]  # type: ignore[index]


def _error_next_to(page: str, field: str) -> str:
    fid = "f-" + field.replace(".", "-") if field.count(".") else f"f-{field}"
    match = re.search(rf'<p class="error" id="{re.escape(fid)}-error">([^<]+)</p>', page)
    assert match, f"no error shown next to {field}"
    return match[1]


def test_the_self_check_page_explains_its_answer(client: TestClient) -> None:
    token = _csrf(client.get("/self-check").text)
    r = client.post("/self-check", data=_form(csrf_token=token, condition_id="knee-osteoarthritis"))
    assert r.status_code == 200, r.text
    assert "Your result" in r.text and "information, not a diagnosis" in r.text
    assert "Prolotherapy may be an option worth discussing with a clinician." in r.text
    assert "To book a consultation" in r.text


def test_the_self_check_page_shows_each_missing_answer_next_to_its_field(
    client: TestClient,
) -> None:
    token = _csrf(client.get("/self-check").text)
    form = _form(csrf_token=token, complaint="", duration_value="")
    del form["red_flags.fever"]
    del form["history.diabetes"]
    r = client.post("/self-check", data=form)
    assert r.status_code == 422
    assert "Choose where the pain is" in _error_next_to(r.text, "complaint")
    assert "how long" in _error_next_to(r.text, "duration_value")
    assert _error_next_to(r.text, "red_flags.fever") == "Answer yes or no."
    assert _error_next_to(r.text, "history.diabetes") == "Answer yes or no."
    assert "Your result" not in r.text
    assert 'name="history.infection_at_site" value="no" checked' in r.text  # answers are kept


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"pregnant": "yes", "sex_at_birth": "male"}, "pregnant", "sex at birth"),
        ({"prior_treatments": ["none", "nsaids"]}, "prior_treatments", "nothing yet"),
        ({"condition_id": "lateral-epicondylosis"}, "condition_id", "does not fit"),
        ({"history.diabetes_controlled": "yes"}, "history.diabetes_controlled", "diabetes"),
        ({"duration_value": "-3"}, "duration_value", "zero or more"),
        ({"duration_value": "soon"}, "duration_value", "number"),
    ],
)
def test_contradictory_answers_show_the_message_next_to_the_field(
    client: TestClient, overrides: dict[str, Any], field: str, words: str
) -> None:
    token = _csrf(client.get("/self-check").text)
    r = client.post("/self-check", data=_form(csrf_token=token, **overrides))
    assert r.status_code == 422
    assert words in _error_next_to(r.text, field).lower()


def test_the_self_check_refuses_a_form_from_elsewhere(client: TestClient) -> None:
    client.get("/self-check")
    r = client.post("/self-check", data=_form(csrf_token="forged"))
    assert r.status_code == 403 and "Your result" not in r.text


def _login(client: TestClient, email: str) -> str:
    token = _csrf(client.get("/login").text)
    r = client.post(
        "/login",
        data={"email": email, "password": PASSWORD, "csrf_token": token},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    return _csrf(client.get("/home").text)


def test_the_clinician_screens_from_the_patient_view_and_sees_reasons_and_sources(
    client: TestClient, session: Session
) -> None:
    clinic = make_clinic(session)
    patient = make_patient(session, clinic)
    user = make_user(session, clinic, "clinician")
    csrf = _login(client, user.email)
    chart = client.get(f"/patients/{patient.id}").text
    assert f'href="/patients/{patient.id}/screening"' in chart
    page = client.get(f"/patients/{patient.id}/screening")
    assert page.status_code == 200 and "No screening stored" in page.text

    bad = client.post(
        f"/patients/{patient.id}/screening/new", data=_form(csrf_token=csrf, pregnant="")
    )
    assert bad.status_code == 422 and _error_next_to(bad.text, "pregnant")

    form = _form(csrf_token=csrf, **{"medications.anticoagulant": "yes"})
    r = client.post(f"/patients/{patient.id}/screening/new", data=form, follow_redirects=False)
    assert r.status_code == 303
    stored = session.scalars(select(Screening).where(Screening.patient_id == patient.id)).one()
    assert r.headers["location"].endswith(f"/screening#screening-{stored.id}")
    assert stored.decision == "candidate_with_precautions"
    page = client.get(f"/patients/{patient.id}/screening").text
    assert "bleeding-risk" in page and "Candidate with precautions" in page
    bleeding = next(x for x in stored.reasons if x.rule_id == "bleeding-risk")
    assert bleeding.clinician_message.split(".")[0] in page
    assert bleeding.sources[0]["url"] in page
