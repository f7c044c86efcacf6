"""The status search parameters of Condition and AllergyIntolerance (token search,
https://hl7.org/fhir/R4/search.html#token): Condition ``clinical-status`` and
``verification-status``, AllergyIntolerance ``clinical-status`` and
``verification-status``. Each finds what reads return: every diagnosis reads back
verificationStatus confirmed and its stored clinical status, every allergy clinicalStatus
active, and an allergy its recorded verification or none."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from prolo.fhir import codes
from prolo.patients.models import Allergy, Diagnosis
from tests.fhir.conftest import World
from tests.fhir.helpers import check_bundle, parse


def search(client: TestClient, world: World, type_name: str, **params: str) -> set[str]:
    """The ids a search of the world's patient matches; every resource parses as R4B."""
    r = client.get(
        f"/fhir/{type_name}",
        params={"patient": str(world.patient.id), **params},
        headers=world.headers,
    )
    assert r.status_code == 200, r.text
    bundle = r.json()
    check_bundle(client, world.headers, bundle)
    return {e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"}


def read_code(client: TestClient, world: World, url: str, key: str) -> str | None:
    r = client.get(url, headers=world.headers)
    assert r.status_code == 200, r.text
    parse(r.json())
    concept = r.json().get(key)
    return None if concept is None else str(concept["coding"][0]["code"])


@pytest.fixture
def resolved(session: Session, world: World) -> Diagnosis:
    row = Diagnosis(
        patient_id=world.patient.id,
        code_system="icd10cm",
        code="M54.50",
        display="Low back pain, unspecified",
        clinical_status="resolved",
    )
    session.add(row)
    session.flush()
    return row


@pytest.fixture
def allergies(session: Session, world: World) -> dict[str | None, str]:
    """The world's allergy (no verification recorded) and one of each kept code."""
    found: dict[str | None, str] = {None: str(world.allergy.id)}
    for code in ("confirmed", "unconfirmed"):
        row = Allergy(
            patient_id=world.patient.id,
            substance=f"Substance {code}",
            criticality="low",
            verification_status=code,
        )
        session.add(row)
        session.flush()
        found[code] = str(row.id)
    return found


def test_condition_statuses_find_what_reads_return(
    client: TestClient, world: World, resolved: Diagnosis
) -> None:
    active, gone = str(world.diagnosis.id), str(resolved.id)
    both = {active, gone}
    for row_id in both:
        url = f"/fhir/Condition/{row_id}"
        assert read_code(client, world, url, "verificationStatus") == "confirmed"
    assert read_code(client, world, f"/fhir/Condition/{gone}", "clinicalStatus") == "resolved"

    ver = codes.CONDITION_VER_STATUS
    cases: list[tuple[dict[str, str], set[str]]] = [
        ({"verification-status": "confirmed"}, both),
        ({"verification-status": f"{ver}|confirmed"}, both),
        ({"verification-status": f"{ver}|"}, both),
        ({"verification-status": "refuted"}, set()),
        ({"verification-status": "entered-in-error,unconfirmed"}, set()),
        ({"verification-status": f"{codes.ALLERGY_VERIFICATION}|confirmed"}, set()),
        ({"verification-status:not": "confirmed"}, set()),
        ({"verification-status:not": "refuted"}, both),
        ({"clinical-status": "active"}, {active}),
        ({"clinical-status": f"{codes.CONDITION_CLINICAL}|resolved"}, {gone}),
        ({"clinical-status": "active,resolved"}, both),
        ({"clinical-status": f"{codes.CONDITION_CLINICAL}|"}, both),
        # Reads never say recurrence (a recurrence written reads back active).
        ({"clinical-status": "recurrence"}, set()),
        ({"clinical-status": f"{codes.ALLERGY_CLINICAL}|active"}, set()),
        ({"clinical-status:not": "active"}, {gone}),
        ({"clinical-status": "active", "verification-status": "confirmed"}, {active}),
    ]
    for params, expected in cases:
        assert search(client, world, "Condition", **params) == expected, params


def test_allergy_statuses_find_what_reads_return(
    client: TestClient, world: World, allergies: dict[str | None, str]
) -> None:
    for code, row_id in allergies.items():
        url = f"/fhir/AllergyIntolerance/{row_id}"
        assert read_code(client, world, url, "verificationStatus") == code
        assert read_code(client, world, url, "clinicalStatus") == "active"
    every = set(allergies.values())
    none_recorded = allergies[None]
    confirmed, unconfirmed = allergies["confirmed"], allergies["unconfirmed"]
    ver, clin = codes.ALLERGY_VERIFICATION, codes.ALLERGY_CLINICAL
    cases: list[tuple[dict[str, str], set[str]]] = [
        ({"clinical-status": "active"}, every),
        ({"clinical-status": f"{clin}|active"}, every),
        ({"clinical-status": f"{clin}|"}, every),
        ({"clinical-status": "inactive,resolved"}, set()),
        ({"clinical-status": f"{codes.CONDITION_CLINICAL}|active"}, set()),
        ({"clinical-status:not": "active"}, set()),
        ({"clinical-status:not": "resolved"}, every),
        ({"verification-status": "confirmed"}, {confirmed}),
        ({"verification-status": f"{ver}|unconfirmed"}, {unconfirmed}),
        ({"verification-status": "confirmed,unconfirmed"}, {confirmed, unconfirmed}),
        # system| is any code of the system: an allergy with none recorded has none.
        ({"verification-status": f"{ver}|"}, {confirmed, unconfirmed}),
        ({"verification-status": "refuted"}, set()),
        ({"verification-status": f"{codes.CONDITION_VER_STATUS}|confirmed"}, set()),
        # :not includes resources without the element (search.html#token).
        ({"verification-status:not": "confirmed"}, {unconfirmed, none_recorded}),
        ({"verification-status:not": "refuted"}, every),
        ({"verification-status": "unconfirmed", "clinical-status": "active"}, {unconfirmed}),
    ]
    for params, expected in cases:
        assert search(client, world, "AllergyIntolerance", **params) == expected, params


def test_an_unsupported_modifier_is_a_search_error(client: TestClient, world: World) -> None:
    for type_name in ("Condition", "AllergyIntolerance"):
        for name in ("clinical-status", "verification-status"):
            r = client.get(
                f"/fhir/{type_name}", params={f"{name}:text": "active"}, headers=world.headers
            )
            assert r.status_code == 400, (type_name, name, r.text)
            parse(r.json())
            assert name in r.json()["issue"][0]["diagnostics"]


def test_the_capability_statement_lists_them(client: TestClient) -> None:
    r = client.get("/fhir/metadata")
    assert r.status_code == 200, r.text
    statement: dict[str, Any] = r.json()
    parse(statement)
    params = {
        entry["type"]: {p["name"]: p["type"] for p in entry.get("searchParam", [])}
        for entry in statement["rest"][0]["resource"]
    }
    for type_name in ("Condition", "AllergyIntolerance"):
        for name in ("clinical-status", "verification-status"):
            assert params[type_name].get(name) == "token", (type_name, name)
