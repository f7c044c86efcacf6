"""Codes of elements FHIR binds to a value set with a *required* binding: a code outside
FHIR's value set breaks FHIR's rules (400 ``code-invalid`` naming the element and the
codes FHIR allows); a code FHIR allows that prolo has no state for is valid FHIR prolo
cannot take (422 ``business-rule`` saying prolo does not support it); a supported code
is written as before. Over REST (create, and update where prolo updates the type) and
inside a transaction Bundle, which then writes nothing. FHIR's rules come first: a code
outside FHIR's value set is the 400 even when prolo would refuse something else too.

The code lists below are FHIR R4's (v4.0.1) value set expansions, each page naming the
element's binding as Required, e.g. https://hl7.org/fhir/R4/valueset-slotstatus.html;
they are written out here again so a change to a mapping's list fails a test.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from prolo.fhir import codes
from prolo.fhir.resources.audit_event import ACTIONS, OUTCOMES
from prolo.fhir.resources.consent import SCOPE_SYSTEM
from prolo.security.models import AUDIT_ACTIONS, AUDIT_OUTCOMES
from tests.fhir.conftest import World
from tests.fhir.helpers import parse
from tests.fhir.test_calendar_writes import closure_slot, future_day
from tests.fhir.test_conditional_create import BODIES, footprint
from tests.fhir.test_observation_audit_writes import reading, reported
from tests.fhir.test_service_writes import course, next_start, visit

Resource = dict[str, Any]
UNIT = "CarePlan.activity[0].detail.scheduledTiming.repeat.periodUnit"


def _set_status(resource: Resource, code: str) -> None:
    resource["status"] = code


def _set_intent(resource: Resource, code: str) -> None:
    resource["intent"] = code


def _set_activity_status(resource: Resource, code: str) -> None:
    resource["activity"][0]["detail"]["status"] = code


def _set_period_unit(resource: Resource, code: str) -> None:
    resource["activity"][0]["detail"]["scheduledTiming"]["repeat"]["periodUnit"] = code


def _set_provision_type(resource: Resource, code: str) -> None:
    resource["provision"]["type"] = code


def _set_outcome(resource: Resource, code: str) -> None:
    resource["outcome"] = code


def _set_action(resource: Resource, code: str) -> None:
    resource["action"] = code


def _set_clinical_status(resource: Resource, code: str) -> None:
    resource["clinicalStatus"] = codes.concept(codes.CONDITION_CLINICAL, code)


def _body(session: Session, world: World, type_name: str) -> Resource:
    """A valid new resource of ``type_name`` that prolo takes."""
    made: dict[str, Callable[[], Resource]] = {
        "Observation": lambda: reading(world),
        "Slot": lambda: closure_slot(world, future_day(30)),
        "Appointment": lambda: visit(world, next_start(3)),
        "CarePlan": lambda: course(world),
        "AuditEvent": lambda: reported(world),
    }
    return made[type_name]() if type_name in made else BODIES[type_name](session, world, 1)


@dataclass(frozen=True)
class Case:
    """One required-bound element: ``allowed`` FHIR R4's codes, ``outside`` a code not
    among them, ``unsupported`` one FHIR allows and prolo cannot take (None: prolo takes
    every code), ``supported`` one prolo takes."""

    type_name: str
    path: str
    put: Callable[[Resource, str], None]
    allowed: tuple[str, ...]
    outside: str
    unsupported: str | None
    supported: str
    prolo: dict[str, Any]  # valid FHIR prolo refuses elsewhere (422); None drops the element

    @property
    def id(self) -> str:
        return self.path.replace("[0]", "")

    def with_code(self, resource: Resource, code: str) -> Resource:
        changed = copy.deepcopy(resource)
        self.put(changed, code)
        return changed

    def with_prolo_fault(self, resource: Resource) -> Resource:
        changed = copy.deepcopy(resource)
        for key, value in self.prolo.items():
            if value is None:
                changed.pop(key, None)
            else:
                changed[key] = value
        return changed


CASES = (
    Case(
        "Observation",
        "Observation.status",
        _set_status,
        # https://hl7.org/fhir/R4/valueset-observation-status.html
        (
            "registered",
            "preliminary",
            "final",
            "amended",
            "corrected",
            "cancelled",
            "entered-in-error",
            "unknown",
        ),
        outside="done",
        unsupported="preliminary",
        supported="final",
        prolo={"code": {"text": "Blood pressure"}},
    ),
    Case(
        "Slot",
        "Slot.status",
        _set_status,
        # https://hl7.org/fhir/R4/valueset-slotstatus.html
        ("busy", "free", "busy-unavailable", "busy-tentative", "entered-in-error"),
        outside="closed",
        unsupported="entered-in-error",
        supported="busy-unavailable",
        prolo={"serviceType": [codes.concept(codes.PROLO_APPOINTMENT_KIND, "injection")]},
    ),
    Case(
        "Appointment",
        "Appointment.status",
        _set_status,
        # https://hl7.org/fhir/R4/valueset-appointmentstatus.html
        (
            "proposed",
            "pending",
            "booked",
            "arrived",
            "fulfilled",
            "cancelled",
            "noshow",
            "entered-in-error",
            "checked-in",
            "waitlist",
        ),
        outside="confirmed",
        unsupported="waitlist",
        supported="booked",
        prolo={"serviceType": [codes.concept(codes.PROLO_APPOINTMENT_KIND, "massage")]},
    ),
    Case(
        "Location",
        "Location.status",
        _set_status,
        # https://hl7.org/fhir/R4/valueset-location-status.html
        ("active", "suspended", "inactive"),
        outside="closed",
        unsupported="suspended",
        supported="inactive",
        prolo={"physicalType": codes.concept(codes.LOCATION_PHYSICAL_TYPE, "wa", "Ward")},
    ),
    Case(
        "CarePlan",
        "CarePlan.status",
        _set_status,
        # https://hl7.org/fhir/R4/valueset-request-status.html
        ("draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"),
        outside="planned",
        unsupported="on-hold",
        supported="active",
        prolo={"category": None},
    ),
    Case(
        "CarePlan",
        "CarePlan.intent",
        _set_intent,
        # https://hl7.org/fhir/R4/valueset-care-plan-intent.html
        ("proposal", "plan", "order", "option"),
        outside="directive",
        unsupported="proposal",
        supported="plan",
        prolo={"category": None},
    ),
    Case(
        "CarePlan",
        "CarePlan.activity[0].detail.status",
        _set_activity_status,
        # https://hl7.org/fhir/R4/valueset-care-plan-activity-status.html
        (
            "not-started",
            "scheduled",
            "in-progress",
            "on-hold",
            "completed",
            "cancelled",
            "stopped",
            "unknown",
            "entered-in-error",
        ),
        outside="planned",
        unsupported="on-hold",
        supported="scheduled",
        prolo={"category": None},
    ),
    Case(
        "CarePlan",
        UNIT,
        _set_period_unit,
        # https://hl7.org/fhir/R4/valueset-units-of-time.html
        ("s", "min", "h", "d", "wk", "mo", "a"),
        outside="week",
        unsupported="d",
        supported="wk",
        prolo={"category": None},
    ),
    Case(
        "QuestionnaireResponse",
        "QuestionnaireResponse.status",
        _set_status,
        # https://hl7.org/fhir/R4/valueset-questionnaire-answers-status.html
        ("in-progress", "completed", "amended", "entered-in-error", "stopped"),
        outside="submitted",
        unsupported="amended",
        supported="completed",
        prolo={"questionnaire": "https://ehr.example.org/Questionnaire/intake"},
    ),
    Case(
        "Consent",
        "Consent.provision.type",
        _set_provision_type,
        # https://hl7.org/fhir/R4/valueset-consent-provision-type.html
        ("deny", "permit"),
        outside="allow",
        unsupported="deny",
        supported="permit",
        prolo={"scope": codes.concept(SCOPE_SYSTEM, "research")},
    ),
    Case(
        "AuditEvent",
        "AuditEvent.outcome",
        _set_outcome,
        # https://hl7.org/fhir/R4/valueset-audit-event-outcome.html
        ("0", "4", "8", "12"),
        outside="1",
        unsupported=None,
        supported="8",
        prolo={"action": None},
    ),
    Case(
        "AuditEvent",
        "AuditEvent.action",
        _set_action,
        # https://hl7.org/fhir/R4/valueset-audit-event-action.html
        ("C", "R", "U", "D", "E"),
        outside="X",
        unsupported=None,
        supported="E",
        prolo={"entity": [{"what": {"reference": "Patient/2147483000"}}]},
    ),
    Case(
        "Condition",
        "Condition.clinicalStatus",
        _set_clinical_status,
        # https://hl7.org/fhir/R4/valueset-condition-clinical.html
        ("active", "recurrence", "relapse", "inactive", "remission", "resolved"),
        outside="cured",
        unsupported=None,
        supported="remission",
        prolo={"code": {"text": "Sore knee"}},
    ),
)
ADMIN_ONLY = frozenset({"Location", "Slot", "AuditEvent"})


def headers_for(world: World, type_name: str) -> dict[str, str]:
    return world.admin_headers if type_name in ADMIN_ONLY else world.headers


def issue_of(r: Any, status: int, code: str) -> dict[str, Any]:
    """The only issue of an OperationOutcome answer, which must parse as R4B."""
    assert r.status_code == status, r.text
    body = r.json()
    parse(body)
    assert body["resourceType"] == "OperationOutcome", body
    assert len(body["issue"]) == 1 and body["issue"][0]["code"] == code, body
    return dict(body["issue"][0])


def assert_code_invalid(r: Any, case: Case, *, prefix: str = "") -> None:
    issue = issue_of(r, 400, "code-invalid")
    assert issue["expression"] == [f"{prefix}{case.path}"], issue
    assert repr(case.outside) in issue["diagnostics"], issue
    assert ", ".join(case.allowed) in issue["diagnostics"], issue


def assert_unsupported(r: Any, case: Case, *, prefix: str = "") -> None:
    issue = issue_of(r, 422, "business-rule")
    assert issue["expression"] == [f"{prefix}{case.path}"], issue
    assert f"{case.unsupported!r} is not supported by prolo" in issue["diagnostics"], issue


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_a_create_reports_fhirs_value_set_before_prolos_states(
    client: TestClient, session: Session, world: World, case: Case
) -> None:
    body = _body(session, world, case.type_name)
    headers = headers_for(world, case.type_name)
    url = f"/fhir/{case.type_name}"
    before = footprint(session)

    assert_code_invalid(
        client.post(url, json=case.with_code(body, case.outside), headers=headers), case
    )
    if case.unsupported is not None:
        unsupported = case.with_code(body, case.unsupported)
        assert_unsupported(client.post(url, json=unsupported, headers=headers), case)
    assert footprint(session) == before

    r = client.post(url, json=case.with_code(body, case.supported), headers=headers)
    assert r.status_code == 201, r.text
    parse(r.json())


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_fhirs_value_set_is_reported_before_prolos_other_rules(
    client: TestClient, session: Session, world: World, case: Case
) -> None:
    """A code outside FHIR's value set and a fault prolo refuses elsewhere: 400."""
    body = _body(session, world, case.type_name)
    headers = headers_for(world, case.type_name)
    url = f"/fhir/{case.type_name}"

    both = case.with_prolo_fault(case.with_code(body, case.outside))
    assert_code_invalid(client.post(url, json=both, headers=headers), case)
    issue = issue_of(
        client.post(url, json=case.with_prolo_fault(body), headers=headers), 422, "business-rule"
    )
    assert issue["expression"] != [case.path], issue


def transaction(*resources: Resource) -> Resource:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}
            for resource in resources
        ],
    }


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_a_transaction_with_such_a_code_writes_nothing(
    client: TestClient, session: Session, world: World, case: Case
) -> None:
    """The first entry (a valid new patient) is not kept when the second is refused."""
    body = _body(session, world, case.type_name)
    headers = headers_for(world, case.type_name)
    patient = BODIES["Patient"](session, world, 1)
    before = footprint(session)
    prefix = "Bundle.entry[1].resource."

    bundle = transaction(patient, case.with_code(body, case.outside))
    assert_code_invalid(client.post("/fhir", json=bundle, headers=headers), case, prefix=prefix)
    if case.unsupported is not None:
        bundle = transaction(patient, case.with_code(body, case.unsupported))
        assert_unsupported(client.post("/fhir", json=bundle, headers=headers), case, prefix=prefix)
    assert footprint(session) == before

    r = client.post("/fhir", json=transaction(patient, body), headers=headers)
    assert r.status_code == 200, r.text
    parse(r.json())
    assert [e["response"]["status"][:3] for e in r.json()["entry"]] == ["201", "201"]


def _stored(world: World, type_name: str) -> int:
    return {
        "Location": world.room.id,
        "Appointment": world.appointment.id,
        "CarePlan": world.course.id,
        "QuestionnaireResponse": world.response.id,
        "Consent": world.consent.id,
        "Condition": world.diagnosis.id,
    }[type_name]


UPDATED = [c for c in CASES if c.type_name not in ("Observation", "Slot", "AuditEvent")]


@pytest.mark.parametrize("case", UPDATED, ids=lambda c: c.id)
def test_an_update_reports_fhirs_value_set_before_prolos_states(
    client: TestClient, session: Session, world: World, case: Case
) -> None:
    """A PUT of a stored record as read, with the code changed; unchanged, it is a 200."""
    headers = headers_for(world, case.type_name)
    url = f"/fhir/{case.type_name}/{_stored(world, case.type_name)}"
    current = client.get(url, headers=headers).json()
    if case.type_name == "CarePlan" and case.path == UNIT:
        assert current["activity"][0]["detail"]["scheduledTiming"]["repeat"]["periodUnit"] == "wk"
    before = footprint(session)

    assert_code_invalid(
        client.put(url, json=case.with_code(current, case.outside), headers=headers), case
    )
    if case.unsupported is not None:
        unsupported = case.with_code(current, case.unsupported)
        assert_unsupported(client.put(url, json=unsupported, headers=headers), case)
    assert footprint(session) == before

    r = client.put(url, json=current, headers=headers)
    assert r.status_code == 200, r.text
    parse(r.json())


def test_a_slot_that_is_a_computed_free_start_hears_about_fhirs_codes_first(
    client: TestClient, session: Session, world: World
) -> None:
    """A PUT of a free Slot (never writable) with a code outside FHIR's value set."""
    r = client.get(
        "/fhir/Slot",
        params={"schedule": f"Schedule/{world.practitioner.id}"},
        headers=world.admin_headers,
    )
    assert r.status_code == 200, r.text
    free = next(e["resource"] for e in r.json()["entry"] if e["resource"]["status"] == "free")
    url = f"/fhir/Slot/{free['id']}"
    slot_case = next(c for c in CASES if c.type_name == "Slot")
    assert_code_invalid(
        client.put(url, json={**free, "status": "closed"}, headers=world.admin_headers), slot_case
    )
    issue_of(client.put(url, json=free, headers=world.admin_headers), 422, "business-rule")


def test_prolo_keeps_every_action_outcome_and_clinical_status_fhir_has() -> None:
    """The elements with no unsupported case: every FHIR code has a place in prolo."""
    assert set(OUTCOMES) == set(AUDIT_OUTCOMES)
    assert set(ACTIONS) == set(AUDIT_ACTIONS)
    clinical = next(c for c in CASES if c.type_name == "Condition").allowed
    assert set(codes.CONDITION_STATUSES) == set(clinical)


# Condition.clinicalStatus is a CodeableConcept with a required binding: FHIR R4 asks for
# at least one coding, one of them from the value set, and text is no substitute
# (https://hl7.org/fhir/R4/terminologies.html#required). Absent, it is left to prolo.
NO_CLINICAL_CODING = {
    "text-only": {"text": "Active"},
    "other-system": {
        "coding": [{"system": "https://ehr.example.org/problem-status", "code": "active"}]
    },
    "system-without-code": {
        "coding": [{"system": codes.CONDITION_CLINICAL, "display": "Active"}],
        "text": "Active",
    },
}
CLINICAL = next(c for c in CASES if c.type_name == "Condition")


def assert_no_clinical_coding(r: Any, *, prefix: str = "") -> None:
    issue = issue_of(r, 400, "code-invalid")
    assert issue["expression"] == [f"{prefix}Condition.clinicalStatus"], issue
    assert codes.CONDITION_CLINICAL in issue["diagnostics"], issue
    assert ", ".join(CLINICAL.allowed) in issue["diagnostics"], issue


@pytest.mark.parametrize("concept", list(NO_CLINICAL_CODING.values()), ids=list(NO_CLINICAL_CODING))
def test_a_clinical_status_without_a_condition_clinical_coding_is_code_invalid(
    client: TestClient, session: Session, world: World, concept: Resource
) -> None:
    """Over REST create and update and in a transaction, which writes nothing; with a
    fault prolo refuses elsewhere too (a code it cannot file), it is still the 400."""
    body = {**_body(session, world, "Condition"), "clinicalStatus": concept}
    before = footprint(session)

    assert_no_clinical_coding(client.post("/fhir/Condition", json=body, headers=world.headers))
    both = CLINICAL.with_prolo_fault(body)
    assert_no_clinical_coding(client.post("/fhir/Condition", json=both, headers=world.headers))
    bundle = transaction(BODIES["Patient"](session, world, 1), body)
    assert_no_clinical_coding(
        client.post("/fhir", json=bundle, headers=world.headers), prefix="Bundle.entry[1].resource."
    )
    url = f"/fhir/Condition/{world.diagnosis.id}"
    current = client.get(url, headers=world.headers).json()
    assert current["clinicalStatus"]["coding"][0]["system"] == codes.CONDITION_CLINICAL
    changed = {**current, "clinicalStatus": concept}
    assert_no_clinical_coding(client.put(url, json=changed, headers=world.headers))
    assert footprint(session) == before


def test_a_condition_without_a_clinical_status_is_taken_as_before(
    client: TestClient, session: Session, world: World
) -> None:
    """Absent: active, or resolved when the Condition says it abated; a condition-clinical
    coding next to text and another system's coding is what counts."""
    body = _body(session, world, "Condition")
    assert "clinicalStatus" not in body
    r = client.post("/fhir/Condition", json=body, headers=world.headers)
    assert r.status_code == 201, r.text
    parse(r.json())
    assert r.json()["clinicalStatus"]["coding"][0]["code"] == "active"

    abated = {**BODIES["Condition"](session, world, 2), "abatementDateTime": "2024-05-01"}
    r = client.post("/fhir/Condition", json=abated, headers=world.headers)
    assert r.status_code == 201, r.text
    parse(r.json())
    assert r.json()["clinicalStatus"]["coding"][0]["code"] == "resolved"

    other = NO_CLINICAL_CODING["other-system"]["coding"]
    mixed = {
        "coding": [*other, codes.coding(codes.CONDITION_CLINICAL, "remission")],
        "text": "In remission",
    }
    body = {**BODIES["Condition"](session, world, 3), "clinicalStatus": mixed}
    r = client.post("/fhir/Condition", json=body, headers=world.headers)
    assert r.status_code == 201, r.text
    parse(r.json())
    assert r.json()["clinicalStatus"]["coding"][0]["code"] == "inactive"
