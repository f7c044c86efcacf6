"""The CapabilityStatement parses, and claims exactly what the server does."""

from __future__ import annotations

from fastapi.testclient import TestClient
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from sqlalchemy.orm import Session

from prolo.fhir.resources import REGISTRY
from tests.factories import make_clinic, make_user
from tests.fhir.helpers import FHIR_JSON, fhir_token

MINIMAL = {
    "Patient": {
        "resourceType": "Patient",
        "name": [{"family": "A", "given": ["B"]}],
        "birthDate": "1980-01-01",
    },
}


def test_metadata_is_an_open_capability_statement(client: TestClient) -> None:
    r = client.get("/fhir/metadata")
    assert r.status_code == 200 and r.headers["content-type"].startswith(FHIR_JSON)
    statement = CapabilityStatement.model_validate(r.json())
    assert statement.fhirVersion == "4.0.1" and statement.kind == "instance"
    assert statement.format == ["json", "application/fhir+json"]
    served = {r.type for r in statement.rest[0].resource}
    expected = {
        "Patient",
        "Practitioner",
        "Location",
        "Condition",
        "AllergyIntolerance",
        "MedicationStatement",
        "CarePlan",
        "Appointment",
        "Procedure",
        "Questionnaire",
        "QuestionnaireResponse",
        "Observation",
        "AuditEvent",
        "Group",
    }
    assert expected <= served
    assert {i.code for i in statement.rest[0].interaction} == {"transaction", "batch"}


def test_claimed_interactions_are_true(client: TestClient, session: Session) -> None:
    """Every type answers reads and searches as claimed, and refuses create when it claims none."""
    clinic = make_clinic(session)
    headers = fhir_token(session, make_user(session, clinic, "admin"), "fhir", "write")
    statement = client.get("/fhir/metadata").json()
    for entry in statement["rest"][0]["resource"]:
        mapping = REGISTRY.get(entry["type"])
        if mapping is None:
            assert entry["type"] == "Group" and "interaction" not in entry
            continue
        claimed = {i["code"] for i in entry["interaction"]}
        assert claimed == set(mapping.interactions)
        params = {"_count": "1"}
        if entry["type"] == "Slot":  # Slots are computed for one schedule at a time
            params["schedule"] = "Schedule/1"
        search = client.get(f"/fhir/{entry['type']}", params=params, headers=headers)
        assert (search.status_code == 200) == ("search-type" in claimed), entry["type"]
        r = client.post(
            f"/fhir/{entry['type']}", json={"resourceType": entry["type"]}, headers=headers
        )
        if "create" not in claimed:
            assert r.status_code == 405, (entry["type"], r.text)
        else:
            assert r.status_code in (400, 422), (entry["type"], r.text)  # refused for its content
        for include in entry.get("searchInclude", []):
            found = client.get(
                f"/fhir/{entry['type']}", params={"_include": include}, headers=headers
            )
            assert found.status_code == 200, include
