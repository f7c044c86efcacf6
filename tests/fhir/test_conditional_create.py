"""Conditional create on identifier, for every type the CapabilityStatement says takes it.

The types are read from the CapabilityStatement itself (``conditionalCreate``), so a type
that starts to claim it is tested here, and fails until it has a body to test with. For
each: a resource created with an identifier is found by it, a conditional create on it
answers 200 with that resource and writes nothing (REST and transaction Bundle), several
matches are a 412, a transaction stays all or nothing, and another resource with the same
identifier is a 409. The statement's claims are checked against what the server does,
including the types that refuse ``If-None-Exist``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import prolo.models  # noqa: F401  (every table, for the footprint)
from prolo.db import Base
from prolo.fhir import codes
from prolo.fhir.capability import capability_statement
from prolo.fhir.models import ResourceVersion
from prolo.fhir.resources.location import ROOM
from tests.factories import make_practitioner
from tests.fhir.conftest import World
from tests.fhir.helpers import check_resource, parse
from tests.fhir.test_calendar_writes import closure_slot, future_day, window
from tests.fhir.test_observation_audit_writes import reading, reported
from tests.fhir.test_procedure_consent_write import (
    consent,
    injection_visit,
    planned_course,
    session_of,
)
from tests.fhir.test_service_writes import course, next_start, visit

EHR = "https://ehr.example.org/id"
Body = Callable[[Session, World, int], dict[str, Any]]


def _resources(statement: dict[str, Any]) -> list[dict[str, Any]]:
    return list(statement["rest"][0]["resource"])


# The types to test, from the statement the server serves (checked equal below).
CLAIMED = sorted(
    r["type"]
    for r in _resources(capability_statement("http://x/fhir"))
    if r.get("conditionalCreate")
)


def _patient(session: Session, world: World, n: int) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "name": [{"use": "official", "family": f"Idem{n}", "given": ["Ida"]}],
        "gender": "female",
        "birthDate": f"1970-01-0{n}",
    }


def _practitioner(session: Session, world: World, n: int) -> dict[str, Any]:
    return {"resourceType": "Practitioner", "name": [{"family": f"Idem{n}", "given": ["Ida"]}]}


def _location(session: Session, world: World, n: int) -> dict[str, Any]:
    return {
        "resourceType": "Location",
        "status": "active",
        "name": f"Room idem {n}",
        "mode": "instance",
        "physicalType": ROOM,
    }


def _condition(session: Session, world: World, n: int) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "subject": {"reference": f"Patient/{world.other.id}"},
        "code": {
            "coding": [{"system": codes.ICD10CM, "code": ("M17.12", "M17.11", "M17.0")[n - 1]}]
        },
        "onsetDateTime": f"2023-02-0{n}T10:00:00Z",
    }


def _allergy(session: Session, world: World, n: int) -> dict[str, Any]:
    return {
        "resourceType": "AllergyIntolerance",
        "patient": {"reference": f"Patient/{world.other.id}"},
        "code": {"text": f"Substance {n}"},
        "criticality": "low",
    }


def _medication(session: Session, world: World, n: int) -> dict[str, Any]:
    return {
        "resourceType": "MedicationStatement",
        "status": "active",
        "subject": {"reference": f"Patient/{world.other.id}"},
        "medicationCodeableConcept": {"text": f"Medicine {n}"},
    }


def _care_plan(session: Session, world: World, n: int) -> dict[str, Any]:
    return course(world)


def _consent(session: Session, world: World, n: int) -> dict[str, Any]:
    planned = planned_course(session, world)
    return consent(f"Patient/{world.other.id}", f"CarePlan/{planned.id}")


def _schedule(session: Session, world: World, n: int) -> dict[str, Any]:
    newcomer = make_practitioner(session, world.clinic)  # no working hours yet
    return {
        "resourceType": "Schedule",
        "actor": [{"reference": f"Practitioner/{newcomer.id}"}],
        "extension": [window("mon", "09:00:00", "17:00:00")],
    }


def _appointment(session: Session, world: World, n: int) -> dict[str, Any]:
    return visit(world, next_start(n + 1))


def _procedure(session: Session, world: World, n: int) -> dict[str, Any]:
    visit = injection_visit(session, world)  # an hour ago: moved, so visits do not overlap
    visit.starts_at -= dt.timedelta(hours=n)
    visit.ends_at -= dt.timedelta(hours=n)
    session.flush()
    performed = (visit.starts_at + dt.timedelta(minutes=10)).isoformat()
    return {**session_of(world, visit), "performedDateTime": performed}


def _questionnaire_response(session: Session, world: World, n: int) -> dict[str, Any]:
    return {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": "https://prolo.example.org/fhir/Questionnaire/pain-nrs",
        "status": "completed",
        "subject": {"reference": f"Patient/{world.patient.id}"},
        "authored": f"2026-03-0{n}T09:00:00Z",
        "item": [{"linkId": "pain-nrs", "answer": [{"valueInteger": n}]}],
    }


def _observation(session: Session, world: World, n: int) -> dict[str, Any]:
    return reading(world, valueInteger=n)


# A valid new resource of each type; each call (n = 1, 2, 3) a distinct one.
BODIES: dict[str, Body] = {
    "Patient": _patient,
    "Practitioner": _practitioner,
    "Location": _location,
    "Condition": _condition,
    "AllergyIntolerance": _allergy,
    "MedicationStatement": _medication,
    "CarePlan": _care_plan,
    "Consent": _consent,
    "Schedule": _schedule,
    "Appointment": _appointment,
    "Procedure": _procedure,
    "QuestionnaireResponse": _questionnaire_response,
    "Observation": _observation,
}


def tagged(body: dict[str, Any], value: str) -> dict[str, Any]:
    """``body`` carrying ``EHR|value`` as its only identifier."""
    ident = {"system": EHR, "value": value}
    single = body["resourceType"] == "QuestionnaireResponse"  # 0..1 in R4
    return {**body, "identifier": ident if single else [ident]}


def footprint(session: Session) -> dict[str, int]:
    """Rows of every table but the audit log's, and the sum of all resource versions."""
    counts = {
        table.name: session.scalar(select(func.count()).select_from(table)) or 0
        for table in Base.metadata.sorted_tables
        if table.name not in ("audit_event", "audit_head")
    }
    counts["versions"] = session.scalar(select(func.sum(ResourceVersion.version))) or 0
    return counts


def outcome(r: Any, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    parse(body)
    assert body["resourceType"] == "OperationOutcome", body
    assert body["issue"][0]["code"] == code, body
    return str(body["issue"][0]["diagnostics"])


def found(client: TestClient, headers: dict[str, str], type_name: str, **params: str) -> list[str]:
    r = client.get(f"/fhir/{type_name}", params=params, headers=headers)
    assert r.status_code == 200, r.text
    parse(r.json())
    assert not [e for e in r.json().get("entry", []) if e["search"]["mode"] == "outcome"]
    return [e["resource"]["id"] for e in r.json().get("entry", [])]


def transaction(*entries: tuple[dict[str, Any], str | None]) -> dict[str, Any]:
    """A transaction of POSTs, each with its ``ifNoneExist`` (None: unconditional)."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": resource,
                "request": {
                    "method": "POST",
                    "url": resource["resourceType"],
                    **({"ifNoneExist": criteria} if criteria else {}),
                },
            }
            for resource, criteria in entries
        ],
    }


@pytest.mark.parametrize("type_name", CLAIMED)
def test_a_conditional_create_on_identifier_writes_a_resource_once(
    client: TestClient, session: Session, world: World, type_name: str
) -> None:
    assert type_name in BODIES, f"{type_name} claims conditionalCreate: add a body to test it"
    make = BODIES[type_name]
    headers = world.admin_headers  # admins write every type
    url = f"/fhir/{type_name}"
    value = f"{type_name}-1"
    condition = {**headers, "If-None-Exist": f"identifier={EHR}|{value}"}

    body = tagged(make(session, world, 1), value)
    first = client.post(url, json=body, headers=condition)
    assert first.status_code == 201, first.text
    created = first.json()
    check_resource(client, headers, created)
    shown = created["identifier"]
    assert {"system": EHR, "value": value} in (shown if isinstance(shown, list) else [shown])
    assert found(client, headers, type_name, identifier=f"{EHR}|{value}") == [created["id"]]
    assert found(client, headers, type_name, identifier=value) == [created["id"]]  # any system
    assert found(client, headers, type_name, identifier=f"{EHR}|") == [created["id"]]
    assert found(client, headers, type_name, identifier=f"|{value}") == []  # it has a system
    assert found(client, headers, type_name, identifier=f"{EHR}|{value}-x") == []
    assert created["id"] not in found(
        client, headers, type_name, **{"identifier:not": f"{EHR}|{value}", "_count": "1000"}
    )

    # Sent again on the same condition: the stored resource, 200, nothing written.
    before = footprint(session)
    again = client.post(url, json=body, headers=condition)
    assert again.status_code == 200, again.text
    parse(again.json())
    assert again.json() == client.get(f"{url}/{created['id']}", headers=headers).json()
    assert again.json()["id"] == created["id"]
    assert again.json()["meta"]["versionId"] == created["meta"]["versionId"]
    assert again.headers["ETag"] == f'W/"{created["meta"]["versionId"]}"'
    assert footprint(session) == before

    # The same in a transaction Bundle: the entry answers 200 OK with it.
    r = client.post("/fhir", json=transaction((body, f"identifier={EHR}|{value}")), headers=headers)
    assert r.status_code == 200, r.text
    parse(r.json())
    (entry,) = r.json()["entry"]
    assert entry["response"]["status"] == "200 OK" and entry["resource"]["id"] == created["id"]
    assert footprint(session) == before

    # A transaction whose conditional entry would create, but a later entry fails,
    # keeps nothing at all.
    fresh = tagged(make(session, world, 3), f"{type_name}-3")
    bad = reading(world, valueInteger=11)  # out of the 0-10 range: a 422 when applied
    before = footprint(session)
    r = client.post(
        "/fhir",
        json=transaction((fresh, f"identifier={EHR}|{type_name}-3"), (bad, None)),
        headers=headers,
    )
    assert "Bundle.entry[1]" in outcome(r, 422, "invalid")
    assert footprint(session) == before
    assert found(client, headers, type_name, identifier=f"{EHR}|{type_name}-3") == []

    # Another resource with the same identifier, without the condition: a clash that
    # names the identifier, and nothing kept.
    second = make(session, world, 2)
    before = footprint(session)
    clash = client.post(url, json=tagged(second, value), headers=headers)
    assert f"{EHR}|{value}" in outcome(clash, 409, "conflict")
    assert footprint(session) == before
    r = client.post(url, json=tagged(second, f"{type_name}-2"), headers=headers)
    assert r.status_code == 201, r.text  # the same resource under its own identifier

    # Two resources in the system now: a condition on the system alone matches both.
    before = footprint(session)
    system_only = {**headers, "If-None-Exist": f"identifier={EHR}|"}
    refused = outcome(client.post(url, json=fresh, headers=system_only), 412, "multiple-matches")
    assert f"more than one {type_name}" in refused
    r = client.post("/fhir", json=transaction((fresh, f"identifier={EHR}|")), headers=headers)
    assert "Bundle.entry[0]" in outcome(r, 412, "multiple-matches")
    assert footprint(session) == before


def test_the_capability_statement_claims_what_the_server_does(
    client: TestClient, session: Session, world: World
) -> None:
    statement = client.get("/fhir/metadata").json()
    parse(statement)
    resources = _resources(statement)
    assert sorted(r["type"] for r in resources if r.get("conditionalCreate")) == CLAIMED
    headers = world.admin_headers
    for resource in resources:
        type_name = resource["type"]
        interactions = {i["code"] for i in resource.get("interaction", [])}
        params = {p["name"]: p["type"] for p in resource.get("searchParam", [])}
        if resource.get("conditionalCreate"):
            # Tested type by type above; here: it is created and searched by identifier.
            assert "create" in interactions and params.get("identifier") == "token", type_name
            continue
        assert resource.get("conditionalCreate", False) is False
        if "create" not in interactions:
            continue
        # A type that is created but claims no conditional create refuses the header,
        # saying why, and writes nothing.
        refusing: dict[str, Callable[[], dict[str, Any]]] = {
            "Slot": lambda: closure_slot(world, future_day(30)),
            "AuditEvent": lambda: reported(world),
        }
        assert type_name in refusing, f"{type_name} is created: add a body to test its refusal"
        body = refusing[type_name]()
        before = footprint(session)
        refused = outcome(
            client.post(
                f"/fhir/{type_name}",
                json=body,
                headers={**headers, "If-None-Exist": "identifier=urn:x|1"},
            ),
            400,
            "not-supported",
        )
        assert f"{type_name} does not support conditional create" in refused
        assert "identifier" in refused  # why: it keeps none, or has none
        assert footprint(session) == before
        r = client.post(
            "/fhir",
            json=transaction((body, "identifier=urn:x|1")),
            headers=headers,
        )
        assert "Bundle.entry[0]" in outcome(r, 400, "not-supported")
        assert footprint(session) == before


def test_row_identifiers_and_kept_ones_both_match(
    client: TestClient, session: Session, world: World
) -> None:
    headers = world.admin_headers
    mrn_system = codes.mrn_system(world.clinic.id)
    body = tagged(_patient(session, world, 1), "P-9")
    created = client.post("/fhir/Patient", json=body, headers=headers).json()
    check_resource(client, headers, created)
    mrn = next(i["value"] for i in created["identifier"] if i["system"] == mrn_system)
    for token in (f"{mrn_system}|{mrn}", mrn, f"{EHR}|P-9", "P-9"):
        assert found(client, headers, "Patient", identifier=token) == [created["id"]], token
    assert found(client, headers, "Patient", identifier=f"|{mrn}") == []
    everyone = found(client, headers, "Patient", identifier=f"{mrn_system}|", _count="1000")
    assert {created["id"], str(world.patient.id), str(world.other.id)} <= set(everyone)
    other_clinic = codes.mrn_system(world.clinic.id + 1)
    assert found(client, headers, "Patient", identifier=f"{other_clinic}|{mrn}") == []
    before = footprint(session)
    for token in (f"{mrn_system}|{mrn}", f"{EHR}|P-9"):
        r = client.post(
            "/fhir/Patient", json=body, headers={**headers, "If-None-Exist": f"identifier={token}"}
        )
        assert (r.status_code, r.json()["id"]) == (200, created["id"]), r.text
    assert footprint(session) == before

    # A practitioner: the NPI on the row and an identifier kept with it.
    npi = world.practitioner.npi
    assert npi is not None
    r = client.put(
        f"/fhir/Practitioner/{world.practitioner.id}",
        json={
            **client.get(f"/fhir/Practitioner/{world.practitioner.id}", headers=headers).json(),
            "identifier": [{"system": codes.NPI, "value": npi}, {"system": EHR, "value": "D-1"}],
        },
        headers=headers,
    )
    assert r.status_code == 200, r.text
    parse(r.json())
    doctor = str(world.practitioner.id)
    for token in (f"{codes.NPI}|{npi}", npi, f"{EHR}|D-1", f"{codes.NPI}|"):
        assert found(client, headers, "Practitioner", identifier=token) == [doctor], token
    unnumbered = make_practitioner(session, world.clinic)  # no NPI: :not keeps it
    assert str(unnumbered.id) in found(
        client, headers, "Practitioner", **{"identifier:not": f"{codes.NPI}|{npi}"}
    )
    assert doctor not in found(
        client, headers, "Practitioner", **{"identifier:not": f"{codes.NPI}|{npi}"}
    )

    # A questionnaire response: the submission key.
    submitted = {
        **_questionnaire_response(session, world, 4),
        "identifier": {"system": codes.QR_IDEMPOTENCY, "value": "key-0004"},
    }
    r = client.post("/fhir/QuestionnaireResponse", json=submitted, headers=headers)
    assert r.status_code == 201, r.text
    key = {**headers, "If-None-Exist": f"identifier={codes.QR_IDEMPOTENCY}|key-0004"}
    before = footprint(session)
    again = client.post("/fhir/QuestionnaireResponse", json=submitted, headers=key)
    assert (again.status_code, again.json()["id"]) == (200, r.json()["id"])
    assert footprint(session) == before
    assert found(client, headers, "QuestionnaireResponse", identifier="key-0004") == [
        r.json()["id"]
    ]


def test_identifier_values_that_name_nothing_are_refused(client: TestClient, world: World) -> None:
    for params in ({"identifier": "|"}, {"identifier:text": "x"}, {"identifier:above": "a|b"}):
        r = client.get("/fhir/Condition", params=params, headers=world.headers)
        assert "identifier" in outcome(r, 400, "invalid")


def test_national_identity_numbers_are_never_kept(
    client: TestClient, session: Session, world: World
) -> None:
    # A Social Security number (by its system, or typed SS) or a driver's licence sent
    # on a REST create is not kept, shown or searchable; the EHR's own identifier is.
    headers = world.admin_headers
    body = tagged(_patient(session, world, 3), "P-SSN")
    body["identifier"] += [
        {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "123-45-6789"},
        {
            "type": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "DL"}
                ]
            },
            "system": "urn:oid:2.16.840.1.113883.4.3.25",
            "value": "S9999",
        },
    ]
    created = client.post("/fhir/Patient", json=body, headers=headers)
    assert created.status_code == 201, created.text
    shown = client.get(f"/fhir/Patient/{created.json()['id']}", headers=headers)
    check_resource(client, headers, shown.json())
    assert "123-45-6789" not in shown.text and "S9999" not in shown.text
    assert {"system": EHR, "value": "P-SSN"} in shown.json()["identifier"]
    assert found(client, headers, "Patient", identifier="123-45-6789") == []
    assert found(client, headers, "Patient", identifier="S9999") == []
