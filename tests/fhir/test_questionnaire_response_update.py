"""FHIR update of a QuestionnaireResponse: the portal's draft rules, through FHIR.

A draft takes new answers and may be completed (then scored); a completed response is
fixed: the same content again is accepted and changes nothing, anything else is a 409;
the subject, questionnaire, course and timepoint never change (422 naming the element).
"""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from prolo.fhir import codes
from prolo.portal.models import QuestionnaireResponse, Score
from prolo.security.models import AuditEvent
from tests.factories import make_user
from tests.fhir.conftest import World
from tests.fhir.helpers import check_resource, fhir_token

ODI = "https://prolo.example.org/fhir/Questionnaire/odi"


def odi_items(values: dict[int, int]) -> list[dict[str, Any]]:
    return [
        {
            "linkId": f"odi-{n}",
            "answer": [{"valueCoding": {"system": "urn:prolo:answers:odi", "code": str(v)}}],
        }
        for n, v in sorted(values.items())
    ]


def draft(world: World, values: dict[int, int], status: str = "in-progress") -> dict[str, Any]:
    return {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": ODI,
        "status": status,
        "subject": {"reference": f"Patient/{world.patient.id}"},
        "basedOn": [{"reference": f"CarePlan/{world.course.id}"}],
        "extension": [{"url": codes.PROLO_TIMEPOINT_EXT, "valueCode": "baseline"}],
        "item": odi_items(values),
    }


def scores_of(session: Session, response_id: int) -> list[tuple[str, float]]:
    session.expire_all()
    rows = session.scalars(select(Score).where(Score.response_id == response_id)).all()
    return sorted((s.score_key, s.value) for s in rows)


def test_a_draft_is_updated_then_completed_and_scored(
    client: TestClient, session: Session, world: World
) -> None:
    r = client.post("/fhir/QuestionnaireResponse", json=draft(world, {1: 2}), headers=world.headers)
    assert r.status_code == 201, r.text
    created = r.json()
    rid = int(created["id"])
    assert created["status"] == "in-progress" and scores_of(session, rid) == []

    more = {**created, "item": odi_items({1: 2, 2: 3, 3: 1})}
    r = client.put(f"/fhir/QuestionnaireResponse/{rid}", json=more, headers=world.headers)
    assert r.status_code == 200, r.text
    saved = r.json()
    assert saved["meta"]["versionId"] != created["meta"]["versionId"]
    assert [i["linkId"] for i in saved["item"]] == ["odi-1", "odi-2", "odi-3"]
    assert scores_of(session, rid) == []
    check_resource(client, world.headers, saved)

    answers = dict.fromkeys(range(1, 11), 1)
    done = {**saved, "status": "completed", "item": odi_items(answers)}
    r = client.put(f"/fhir/QuestionnaireResponse/{rid}", json=done, headers=world.headers)
    assert r.status_code == 200, r.text
    completed = r.json()
    assert completed["status"] == "completed"
    stored = scores_of(session, rid)
    assert stored and stored[0][0] == "total"  # scored by the instrument's own rule
    check_resource(client, world.headers, completed)
    events = session.scalars(
        select(AuditEvent.event).where(
            AuditEvent.entity_type == "QuestionnaireResponse", AuditEvent.entity_id == str(rid)
        )
    ).all()
    assert "questionnaire_response.complete" in events
    assert "questionnaire_response.save" in events

    # A read resource put back unchanged is accepted and changes nothing.
    again = client.get(f"/fhir/QuestionnaireResponse/{rid}", headers=world.headers).json()
    r = client.put(f"/fhir/QuestionnaireResponse/{rid}", json=again, headers=world.headers)
    assert r.status_code == 200, r.text
    assert r.json()["item"] == again["item"]
    assert scores_of(session, rid) == stored

    # Anything else on a completed response is a conflict, and nothing changes.
    changed = {**again, "item": odi_items({**answers, 1: 5})}
    r = client.put(f"/fhir/QuestionnaireResponse/{rid}", json=changed, headers=world.headers)
    assert r.status_code == 409, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    assert "completed" in r.json()["issue"][0]["diagnostics"]
    reopened = {**again, "status": "in-progress"}
    r = client.put(f"/fhir/QuestionnaireResponse/{rid}", json=reopened, headers=world.headers)
    assert r.status_code == 409, r.text
    session.expire_all()
    row = session.get(QuestionnaireResponse, rid)
    assert row is not None and row.status == "completed" and row.answers["odi-1"] == 1
    assert scores_of(session, rid) == stored


def test_fixed_elements_and_bad_answers_are_refused_by_name(
    client: TestClient, session: Session, world: World
) -> None:
    r = client.post("/fhir/QuestionnaireResponse", json=draft(world, {1: 2}), headers=world.headers)
    assert r.status_code == 201, r.text
    created = r.json()
    rid = created["id"]
    before = session.scalar(select(func.count()).select_from(Score)) or 0

    def refused(resource: dict[str, Any], status: int, element: str) -> None:
        r = client.put(f"/fhir/QuestionnaireResponse/{rid}", json=resource, headers=world.headers)
        assert r.status_code == status, r.text
        issue = r.json()["issue"][0]
        assert issue["expression"] == [f"QuestionnaireResponse.{element}"], issue

    refused({**created, "subject": {"reference": f"Patient/{world.other.id}"}}, 422, "subject")
    refused(
        {**created, "questionnaire": "https://prolo.example.org/fhir/Questionnaire/pain-nrs"},
        422,
        "questionnaire",
    )
    refused({**created, "basedOn": []}, 422, "basedOn")
    refused(
        {**created, "extension": [{"url": codes.PROLO_TIMEPOINT_EXT, "valueCode": "month_3"}]},
        422,
        "extension",
    )
    bad = [{"linkId": "odi-1", "answer": [{"valueCoding": {"code": "9"}}]}]
    refused({**created, "item": bad}, 422, "item[0].answer")
    # Completing with items missing: the instrument's scoring rule names what stops it.
    r = client.put(
        f"/fhir/QuestionnaireResponse/{rid}",
        json={**created, "status": "completed"},
        headers=world.headers,
    )
    assert r.status_code == 422, r.text
    session.expire_all()
    row = session.get(QuestionnaireResponse, int(rid))
    assert row is not None and row.status == "in-progress" and row.answers == {"odi-1": 2}
    assert (session.scalar(select(func.count()).select_from(Score)) or 0) == before


def test_patients_update_their_own_drafts_only(
    client: TestClient, session: Session, world: World
) -> None:
    """A patient's token updates its own draft; another patient's is a 404 and unchanged."""
    r = client.post("/fhir/QuestionnaireResponse", json=draft(world, {1: 2}), headers=world.headers)
    assert r.status_code == 201, r.text
    created = r.json()
    mine = fhir_token(
        session,
        make_user(session, world.clinic, "patient", patient=world.patient),
        "fhir",
        "write",
    )
    theirs = fhir_token(
        session, make_user(session, world.clinic, "patient", patient=world.other), "fhir", "write"
    )
    url = f"/fhir/QuestionnaireResponse/{created['id']}"
    r = client.put(url, json={**created, "item": odi_items({1: 4})}, headers=theirs)
    assert r.status_code == 404, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    assert "odi" not in r.text  # nothing of the response leaks
    r = client.put(url, json={**created, "item": odi_items({1: 3})}, headers=mine)
    assert r.status_code == 200, r.text
    session.expire_all()
    row = session.get(QuestionnaireResponse, int(created["id"]))
    assert row is not None and row.answers == {"odi-1": 3}
