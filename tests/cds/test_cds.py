"""CDS Hooks 2.0: discovery, and patient-view requests shaped as in the specification."""

from __future__ import annotations

import copy
import uuid
from typing import Any

from fastapi.testclient import TestClient
from fhir.resources.R4B.servicerequest import ServiceRequest
from sqlalchemy import select
from sqlalchemy.orm import Session

from prolo.knowledge.loader import load_conditions
from prolo.security.models import AuditEvent
from tests.factories import make_clinic, make_user, token_for

ICD = "http://hl7.org/fhir/sid/icd-10-cm"


def searchset(*resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [{"resource": r} for r in resources],
    }


def condition(
    code: str, *, status: str = "active", onset: str | None = "2024-01-10", cid: str = "c1"
) -> dict[str, Any]:
    found: dict[str, Any] = {
        "resourceType": "Condition",
        "id": cid,
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": status,
                }
            ]
        },
        "code": {"coding": [{"system": ICD, "code": code}]},
        "subject": {"reference": "Patient/1288992"},
    }
    if onset:
        found["onsetDateTime"] = onset
    return found


def hook(**prefetch: Any) -> dict[str, Any]:
    """A patient-view request as in the CDS Hooks 2.0 examples."""
    return {
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": "https://ehr.example.org/fhir",
        "hook": "patient-view",
        "context": {"userId": "Practitioner/example", "patientId": "1288992"},
        "prefetch": prefetch,
    }


FULL = {
    "patient": {
        "resourceType": "Patient",
        "id": "1288992",
        "gender": "female",
        "birthDate": "1961-04-02",
    },
    "conditions": searchset(condition("M17.11")),
    "medications": searchset(
        {
            "resourceType": "MedicationStatement",
            "status": "active",
            "medicationCodeableConcept": {"text": "Warfarin 5 mg"},
            "subject": {"reference": "Patient/1288992"},
        }
    ),
    "allergies": searchset(
        {
            "resourceType": "AllergyIntolerance",
            "code": {"text": "Lidocaine"},
            "patient": {"reference": "Patient/1288992"},
        }
    ),
}


def headers(session: Session, role: str = "clinician") -> dict[str, str]:
    return token_for(session, make_user(session, make_clinic(session), role), scopes=("fhir",))


def call(client: TestClient, session: Session, body: dict[str, Any]) -> Any:
    r = client.post("/cds-services/prolo-candidacy", json=body, headers=headers(session))
    assert r.status_code == 200, r.text
    return r.json()


def test_discovery_lists_the_patient_view_service(client: TestClient) -> None:
    r = client.get("/cds-services")
    assert r.status_code == 200
    (service,) = r.json()["services"]
    assert service["hook"] == "patient-view" and service["id"] == "prolo-candidacy"
    assert service["description"] and service["title"]
    assert set(service["prefetch"]) == {"patient", "conditions", "medications", "allergies"}
    assert service["prefetch"]["conditions"] == "Condition?patient={{context.patientId}}"


def test_a_matching_condition_gets_a_card_with_decision_evidence_link_and_consult(
    client: TestClient, session: Session
) -> None:
    knee = load_conditions()["knee-osteoarthritis"]
    (card,) = call(client, session, hook(**copy.deepcopy(FULL)))["cards"]
    assert len(card["summary"]) < 140
    assert knee.clinical_name in card["summary"]
    assert card["indicator"] in ("info", "warning", "critical")
    assert card["source"]["label"]
    uuid.UUID(card["uuid"])
    detail = card["detail"]
    assert "**Decision from the record:**" in detail and "if the patient answers no" in detail
    assert f"**Evidence for prolotherapy:** {knee.evidence_grade.replace('_', ' ')}" in detail
    assert "Warfarin 5 mg" in detail and "Lidocaine" in detail  # shown beside the questions
    assert "Allergy to a local anaesthetic or to dextrose?" in detail
    assert card["links"] == [
        {
            "label": f"{knee.clinical_name}: evidence and protocol",
            "url": "http://testserver/conditions/knee-osteoarthritis",
            "type": "absolute",
        }
    ]
    assert card["selectionBehavior"] == "at-most-one"
    (suggestion,) = card["suggestions"]
    (action,) = suggestion["actions"]
    assert action["type"] == "create"
    request = ServiceRequest.model_validate(action["resource"])
    assert request.subject.reference == "Patient/1288992"
    assert request.reasonReference[0].reference == "Condition/c1"
    assert all(c.system for c in request.code.coding)


def test_the_engine_decides_from_what_the_record_says(client: TestClient, session: Session) -> None:
    # Insufficient evidence is a precaution the engine adds: the card carries its reason.
    insufficient = next(
        c
        for c in load_conditions().values()
        if c.evidence_grade == "insufficient" and c.codes.icd10cm
    )
    body = hook(
        **{
            **copy.deepcopy(FULL),
            "conditions": searchset(condition(insufficient.codes.icd10cm[0].code)),
        }
    )
    (card,) = call(client, session, body)["cards"]
    assert "candidate with precautions" in card["summary"]
    assert "insufficient" in card["detail"].lower()
    # A recent onset (under the chronic-pain threshold) is a reason too.
    recent = hook(
        **{**copy.deepcopy(FULL), "conditions": searchset(condition("M17.11", onset="2099-01-01"))}
    )
    recent["prefetch"]["conditions"]["entry"][0]["resource"]["onsetDateTime"] = _days_ago(20)
    (card,) = call(client, session, recent)["cards"]
    assert "candidate with precautions" in card["summary"]
    unknown_onset = hook(
        **{**copy.deepcopy(FULL), "conditions": searchset(condition("M17.11", onset=None))}
    )
    (card,) = call(client, session, unknown_onset)["cards"]
    assert "The record has no onset date" in card["detail"]


def _days_ago(days: int) -> str:
    import datetime as dt

    return (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=days)).isoformat()


def test_missing_prefetch_is_said_not_guessed(client: TestClient, session: Session) -> None:
    (card,) = call(client, session, hook())["cards"]
    assert "no conditions" in card["summary"]
    assert "`conditions`" in card["detail"] and "Nothing was assumed" in card["detail"]
    assert "suggestions" not in card
    partial = hook(conditions=searchset(condition("M17.11")))
    (card,) = call(client, session, partial)["cards"]
    assert "did not send the patient's medications" in card["detail"]
    assert "did not send the patient's allergies" in card["detail"]
    assert "Medications in the record" not in card["detail"]


def test_inactive_and_unrelated_conditions_give_no_card(
    client: TestClient, session: Session
) -> None:
    body = hook(
        **{
            **copy.deepcopy(FULL),
            "conditions": searchset(
                condition("M17.11", status="resolved"), condition("I10", cid="c2")
            ),
        }
    )
    assert call(client, session, body) == {"cards": []}


def test_the_service_needs_a_clinical_token_and_a_well_formed_request(
    client: TestClient, session: Session
) -> None:
    body = hook(**copy.deepcopy(FULL))
    assert client.post("/cds-services/prolo-candidacy", json=body).status_code == 401
    desk = headers(session, "front_desk")
    assert client.post("/cds-services/prolo-candidacy", json=body, headers=desk).status_code == 403
    mine = headers(session)
    r = client.post(
        "/cds-services/prolo-candidacy", json={**body, "hook": "order-sign"}, headers=mine
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "hook"
    r = client.post("/cds-services/prolo-candidacy", json={**body, "context": {}}, headers=mine)
    assert r.status_code == 422
    r = client.post("/cds-services/nope", json=body, headers=mine)
    assert r.status_code == 404
    r = client.post(
        "/cds-services/prolo-candidacy",
        content=b"{",
        headers={**mine, "Content-Type": "application/json"},
    )
    assert r.status_code == 422
    client.post("/cds-services/prolo-candidacy", json=body, headers=mine)
    logged = session.scalars(select(AuditEvent).where(AuditEvent.event == "cds.patient-view")).all()
    assert [(e.entity_id, e.detail) for e in logged][-1] == (body["hookInstance"], "1 cards")
