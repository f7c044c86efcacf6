"""A resource that breaks FHIR's own rules and also misses something prolo needs hears
about FHIR's rules first (400), for every writable type: breaking FHIR is the more
fundamental error. The prolo fault alone is still a 422.

Each case is one valid resource with two faults: one FHIR forbids (a code outside a
required value set, a malformed date, time or instant) and one FHIR allows but prolo
cannot take. Faults the mapping itself checks (codes; dates on the importer's path,
which may skip the R4B structure check) are also checked with structure checking off,
so the mapping's own order is tested, not only the structure check's coming first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from prolo.errors import AppError
from prolo.fhir import codes, service
from prolo.fhir.errors import outcome_for
from prolo.fhir.resources.base import Context
from prolo.fhir.resources.consent import SCOPE_SYSTEM
from tests.factories import principal_for
from tests.fhir.conftest import World
from tests.fhir.helpers import parse
from tests.fhir.test_calendar_writes import closure_slot, future_day
from tests.fhir.test_conditional_create import BODIES
from tests.fhir.test_observation_audit_writes import reported

# Types only admins write (Slot: admins and the front desk).
ADMIN_ONLY = frozenset({"Practitioner", "Location", "Schedule", "Slot", "AuditEvent"})
RESEARCH = {"coding": [{"system": SCOPE_SYSTEM, "code": "research"}]}
NOT_OURS = {"text": "Knee injection"}  # a Procedure.code without prolo's session coding


def _body(session: Session, world: World, type_name: str) -> dict[str, Any]:
    """A valid new resource of ``type_name`` that prolo takes."""
    if type_name == "Slot":
        return closure_slot(world, future_day(30))
    if type_name == "AuditEvent":
        return reported(world)
    return BODIES[type_name](session, world, 1)


@dataclass(frozen=True)
class Case:
    """Two faults for one type: ``fhir`` breaks FHIR's rules at ``path`` (issue ``issue``),
    ``prolo`` is valid FHIR that prolo refuses (422). A value None leaves the element out."""

    type_name: str
    fhir: dict[str, Any]
    path: str
    issue: str
    prolo: dict[str, Any]
    in_mapping: bool = field(default=True)  # the mapping checks the FHIR fault itself

    @property
    def id(self) -> str:
        return f"{self.path}-{self.issue}"


CASES = (
    Case("Patient", {"gender": "banana"}, "Patient.gender", "code-invalid", {"birthDate": None}),
    Case(
        "Patient",
        {"birthDate": "1970-02-30"},
        "Patient.birthDate",
        "invalid",
        {"name": [{"use": "official", "family": "Idem"}]},
    ),
    Case(
        "Practitioner",
        {"birthDate": "1970-02-30"},
        "Practitioner.birthDate",
        "invalid",
        {"name": [{"family": "Idem"}]},
        in_mapping=False,
    ),
    Case(
        "Location",
        {"mode": " instance"},
        "Location.mode",
        "invalid",
        {"physicalType": codes.concept(codes.LOCATION_PHYSICAL_TYPE, "wa", "Ward")},
        in_mapping=False,
    ),
    Case(
        "Condition",
        {"onsetDateTime": "2023-02-30T10:00:00Z"},
        "Condition.onsetDateTime",
        "invalid",
        {"code": {"text": "Sore knee"}},
    ),
    Case(
        "AllergyIntolerance",
        {"criticality": "extreme"},
        "AllergyIntolerance.criticality",
        "code-invalid",
        {"patient": {"reference": "Patient/999999"}},
    ),
    Case(
        "MedicationStatement",
        {"status": "taking"},
        "MedicationStatement.status",
        "code-invalid",
        {"medicationCodeableConcept": {"coding": [{"system": codes.RXNORM, "code": "29046"}]}},
    ),
    Case(
        "CarePlan",
        {"created": "2026-02-30"},
        "CarePlan.created",
        "invalid",
        {"category": None},
        in_mapping=False,
    ),
    Case("Consent", {"status": "signed"}, "Consent.status", "code-invalid", {"scope": RESEARCH}),
    Case(
        "Consent",
        {"dateTime": "2026-02-30T10:00:00Z"},
        "Consent.dateTime",
        "invalid",
        {"scope": RESEARCH},
    ),
    Case(
        "Schedule",
        {
            "extension": [
                {
                    "url": f"{codes.PROLO}/StructureDefinition/working-hours",
                    "extension": [
                        {"url": "daysOfWeek", "valueCode": "mon"},
                        {"url": "availableStartTime", "valueTime": "25:00:00"},
                        {"url": "availableEndTime", "valueTime": "17:00:00"},
                    ],
                }
            ]
        },
        "Schedule.extension.0.extension.1.valueTime",  # as the R4B models name it
        "invalid",
        {"planningHorizon": {"start": "2026-01-01"}},
        in_mapping=False,
    ),
    Case(
        "Slot",
        {"start": "2026-02-30T00:00:00Z"},
        "Slot.start",
        "invalid",
        {"status": "free"},
    ),
    Case(
        "Appointment",
        {"start": "2026-02-30T16:00:00Z"},
        "Appointment.start",
        "invalid",
        {"serviceType": [codes.concept(codes.PROLO_APPOINTMENT_KIND, "massage")]},
    ),
    Case("Procedure", {"status": "done"}, "Procedure.status", "code-invalid", {"code": NOT_OURS}),
    Case(
        "Procedure",
        {"performedDateTime": "2026-02-30T10:00:00Z"},
        "Procedure.performedDateTime",
        "invalid",
        {"code": NOT_OURS},
    ),
    Case(
        "QuestionnaireResponse",
        {"authored": "2026-02-30T09:00:00Z"},
        "QuestionnaireResponse.authored",
        "invalid",
        {"questionnaire": "https://ehr.example.org/Questionnaire/intake"},
    ),
    Case(
        "Observation",
        {"effectiveDateTime": "2026-02-30T14:00:00Z"},
        "Observation.effectiveDateTime",
        "invalid",
        {"status": "preliminary"},
    ),
    Case(
        "AuditEvent",
        {"recorded": "2026-02-30T14:00:00Z"},
        "AuditEvent.recorded",
        "invalid",
        {"action": None},
        in_mapping=False,
    ),
)


def with_faults(body: dict[str, Any], *faults: dict[str, Any]) -> dict[str, Any]:
    resource = dict(body)
    for fault in faults:
        for key, value in fault.items():
            if value is None:
                resource.pop(key, None)
            else:
                resource[key] = value
    return resource


def issue_of(r: Any, status: int, code: str) -> dict[str, Any]:
    """The first issue of an OperationOutcome answer, which must parse as R4B."""
    assert r.status_code == status, r.text
    body = r.json()
    parse(body)
    assert body["resourceType"] == "OperationOutcome", body
    assert body["issue"][0]["code"] == code, body
    return dict(body["issue"][0])


def transaction(resource: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}
        ],
    }


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_fhirs_rules_are_reported_before_prolos(
    client: TestClient, session: Session, world: World, case: Case
) -> None:
    body = _body(session, world, case.type_name)
    headers = world.admin_headers if case.type_name in ADMIN_ONLY else world.headers
    url = f"/fhir/{case.type_name}"
    both = with_faults(body, case.fhir, case.prolo)

    issue = issue_of(client.post(url, json=both, headers=headers), 400, case.issue)
    assert issue["expression"] == [case.path], issue
    issue = issue_of(client.post("/fhir", json=transaction(both), headers=headers), 400, case.issue)
    assert issue["expression"] == [f"Bundle.entry[0].resource.{case.path}"], issue

    # Each fault alone answers as it always did.
    alone = with_faults(body, case.fhir)
    issue_of(client.post(url, json=alone, headers=headers), 400, case.issue)
    issue = issue_of(
        client.post(url, json=with_faults(body, case.prolo), headers=headers), 422, "business-rule"
    )
    assert issue["expression"] != [case.path], issue


def _refusal(call: Callable[[], Any]) -> tuple[int, dict[str, Any]]:
    """The status and first issue of the error ``call`` raises; the outcome parses as R4B."""
    with pytest.raises(AppError) as raised:
        call()
    status, body = outcome_for(raised.value)
    parse(body)
    return status, body["issue"][0]


@pytest.mark.parametrize("case", [c for c in CASES if c.in_mapping], ids=lambda c: c.id)
def test_the_mapping_checks_fhirs_rules_first_without_the_structure_check(
    session: Session, world: World, case: Case
) -> None:
    """As the importer writes when told not to validate: the mapping's own order."""
    body = _body(session, world, case.type_name)
    user = world.admin if case.type_name in ADMIN_ONLY else world.clinician
    ctx = Context(session=session, principal=principal_for(user))
    both = with_faults(body, case.fhir, case.prolo)

    status, issue = _refusal(lambda: service.create(ctx, both, validate=False))
    assert (status, issue["code"], issue["expression"]) == (400, case.issue, [case.path]), issue
    prolo_only = with_faults(body, case.prolo)
    status, issue = _refusal(lambda: service.create(ctx, prolo_only, validate=False))
    assert (status, issue["code"]) == (422, "business-rule"), issue


def _stored(world: World, type_name: str) -> int:
    return {
        "Patient": world.patient.id,
        "AllergyIntolerance": world.allergy.id,
        "MedicationStatement": world.medication.id,
        "Consent": world.consent.id,
        "Procedure": world.procedure.id,
    }[type_name]


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.issue == "code-invalid"], ids=lambda c: c.id
)
def test_an_update_hears_about_fhirs_rules_first(
    client: TestClient, world: World, case: Case
) -> None:
    """The codes the mappings check (the R4B models do not) on a PUT of a stored record."""
    url = f"/fhir/{case.type_name}/{_stored(world, case.type_name)}"
    current = client.get(url, headers=world.headers).json()

    both = with_faults(current, case.fhir, case.prolo)
    issue = issue_of(client.put(url, json=both, headers=world.headers), 400, case.issue)
    assert issue["expression"] == [case.path], issue
    prolo_only = with_faults(current, case.prolo)
    issue_of(client.put(url, json=prolo_only, headers=world.headers), 422, "business-rule")
