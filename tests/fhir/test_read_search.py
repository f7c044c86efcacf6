"""FHIR reads and searches: every resource parses (R4B), codes carry systems,
references resolve; search parameters, paging, _include and Bundles."""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from prolo.fhir import codes
from prolo.security.models import AuditEvent
from tests.factories import make_patient
from tests.fhir.conftest import World
from tests.fhir.helpers import FHIR_JSON, check_bundle, check_resource

TYPES = {
    "Patient": "patient",
    "Practitioner": "practitioner",
    "Location": "room",
    "Condition": "diagnosis",
    "AllergyIntolerance": "allergy",
    "MedicationStatement": "medication",
    "CarePlan": "course",
    "Appointment": "appointment",
    "Procedure": "procedure",
    "QuestionnaireResponse": "response",
    "Observation": "score",
    "Consent": "consent",
    "Schedule": "practitioner",
}


def test_every_type_reads_as_valid_fhir_with_resolving_references(
    client: TestClient, world: World
) -> None:
    for type_name, attribute in TYPES.items():
        row = getattr(world, attribute)
        r = client.get(f"/fhir/{type_name}/{row.id}", headers=world.headers)
        assert r.status_code == 200, (type_name, r.text)
        assert r.headers["content-type"].startswith(FHIR_JSON)
        body = r.json()
        assert body["resourceType"] == type_name and body["id"] == str(row.id)
        assert r.headers["etag"] == f'W/"{body["meta"]["versionId"]}"'
        check_resource(client, world.headers, body)
    r = client.get("/fhir/AuditEvent?_count=5", headers=world.admin_headers)
    assert r.status_code == 200 and r.json()["total"] > 0
    check_bundle(client, world.admin_headers, r.json())


def test_mapped_values_say_what_the_rows_say(client: TestClient, world: World) -> None:
    patient = client.get(f"/fhir/Patient/{world.patient.id}", headers=world.headers).json()
    assert patient["name"] == [{"use": "official", "family": "Lopez", "given": ["Ana"]}]
    assert patient["birthDate"] == "1961-04-02" and patient["gender"] == "female"
    assert patient["identifier"][0]["system"] == codes.mrn_system(world.clinic.id)
    assert patient["identifier"][0]["value"] == world.patient.mrn
    condition = client.get(f"/fhir/Condition/{world.diagnosis.id}", headers=world.headers).json()
    assert condition["code"]["coding"] == [
        {
            "system": codes.ICD10CM,
            "code": "M17.11",
            "display": "Unilateral primary osteoarthritis, right knee",
        }
    ]
    assert condition["subject"] == {"reference": f"Patient/{world.patient.id}"}
    assert condition["onsetDateTime"] == "2024-05-01"
    plan = client.get(f"/fhir/CarePlan/{world.course.id}", headers=world.headers).json()
    repeat = plan["activity"][0]["detail"]["scheduledTiming"]["repeat"]
    assert repeat == {"count": 4, "period": 4, "periodMax": 6, "periodUnit": "wk"}
    assert plan["status"] == "active" and plan["activity"][0]["detail"]["status"] == "in-progress"
    response = client.get(
        f"/fhir/QuestionnaireResponse/{world.response.id}", headers=world.headers
    ).json()
    assert response["item"] == [{"linkId": "pain-nrs", "answer": [{"valueInteger": 7}]}]
    assert response["questionnaire"] == "https://prolo.example.org/fhir/Questionnaire/pain-nrs"
    observation = client.get(f"/fhir/Observation/{world.score.id}", headers=world.headers).json()
    assert observation["valueQuantity"]["value"] == 7.0
    assert {"system": codes.LOINC, "code": "72514-3"} in observation["code"]["coding"]
    assert observation["derivedFrom"] == [
        {"reference": f"QuestionnaireResponse/{world.response.id}"}
    ]


def test_questionnaires_are_the_instrument_files(client: TestClient, world: World) -> None:
    r = client.get(
        "/fhir/Questionnaire?url=https://prolo.example.org/fhir/Questionnaire/odi",
        headers=world.headers,
    )
    bundle = r.json()
    assert bundle["total"] == 1
    assert bundle["entry"][0]["resource"]["id"] == "odi"
    check_bundle(client, world.headers, bundle)
    assert client.get("/fhir/Questionnaire/nope", headers=world.headers).status_code == 404


def test_search_by_patient_returns_a_searchset_with_total(client: TestClient, world: World) -> None:
    for type_name in (
        "Condition",
        "AllergyIntolerance",
        "MedicationStatement",
        "CarePlan",
        "Appointment",
        "Procedure",
        "QuestionnaireResponse",
        "Observation",
        "Consent",
    ):
        r = client.get(
            f"/fhir/{type_name}", params={"patient": world.patient.id}, headers=world.headers
        )
        assert r.status_code == 200, (type_name, r.text)
        bundle = r.json()
        assert bundle["type"] == "searchset" and bundle["total"] == 1, type_name
        assert bundle["entry"][0]["search"] == {"mode": "match"}
        check_bundle(client, world.headers, bundle)
    r = client.get(
        "/fhir/Condition", params={"subject": f"Patient/{world.other.id}"}, headers=world.headers
    )
    assert [e["resource"]["code"]["coding"][0]["code"] for e in r.json()["entry"]] == ["M54.50"]


def test_token_date_string_and_identifier_parameters(client: TestClient, world: World) -> None:
    def ids(type_name: str, **params: str) -> list[str]:
        r = client.get(f"/fhir/{type_name}", params=params, headers=world.headers)
        assert r.status_code == 200, r.text
        return [
            e["resource"]["id"] for e in r.json().get("entry", []) if e["search"]["mode"] == "match"
        ]

    mine = str(world.diagnosis.id)
    assert ids("Condition", code=f"{codes.ICD10CM}|M17.11") == [mine]
    assert ids("Condition", code="M17.11") == [mine]
    assert ids("Condition", code=f"{codes.SNOMED}|M17.11") == []
    assert mine not in ids("Condition", **{"code:not": "M17.11"})
    assert ids("Condition", **{"clinical-status": "active", "patient": str(world.patient.id)}) == [
        mine
    ]
    assert ids("Condition", **{"onset-date": "2024-05"}) == [mine]
    assert ids("Condition", **{"onset-date": "gt2024-05-01"}) == []
    assert ids("Condition", **{"onset-date": "ge2024-05-01"}) == [mine]
    assert ids("Condition", **{"onset-date": "lt2024"}) == []
    pid = str(world.patient.id)
    assert ids("Patient", family="lop") == [pid]
    assert ids("Patient", name="ANA") == [pid]
    assert ids("Patient", birthdate="1961") == [pid]
    assert ids("Patient", birthdate="ne1961-04-02", _id=pid) == []
    assert ids(
        "Patient", identifier=f"{codes.mrn_system(world.clinic.id)}|{world.patient.mrn}"
    ) == [pid]
    assert ids("Patient", identifier=world.patient.mrn) == [pid]
    assert (
        ids("Patient", identifier=f"{codes.mrn_system(world.clinic.id + 1)}|{world.patient.mrn}")
        == []
    )
    appt = str(world.appointment.id)
    assert ids("Appointment", date="2026-03-02") == [appt]
    assert ids("Appointment", date="ge2026-03-02T15:00:00Z") == [appt]
    assert ids("Appointment", date="gt2026-03-02T15:00:00Z") == []  # after the whole second
    assert ids("Appointment", date="lt2026-03-02T10:00:00-05:00") == []  # same instant, not before
    assert ids("Appointment", date="le2026-03-02T10:00:00-05:00") == [appt]
    assert ids("Appointment", date="sa2026-03-01") == [appt]
    assert ids("Appointment", date="eb2026-03-01") == []
    assert ids("Appointment", date="ap2026-03-02") == [appt]
    assert ids("Appointment", actor=f"Location/{world.room.id}") == [appt]
    assert ids("Appointment", status="fulfilled,booked") == [appt]
    assert ids("Practitioner", identifier=f"{codes.NPI}|{world.practitioner.npi}") == [
        str(world.practitioner.id)
    ]
    assert ids("Observation", code="pain-nrs.total") == [str(world.score.id)]
    assert ids("Observation", code=f"{codes.LOINC}|72514-3") == [str(world.score.id)]


def test_bad_search_values_are_400_operation_outcomes(client: TestClient, world: World) -> None:
    for params in (
        {"birthdate": "yesterday"},
        {"_count": "many"},
        {"patient": "Practitioner/1"},
        {"_include": "Condition:nothing"},
        {"_sort": "name"},
    ):
        r = client.get(
            "/fhir/Patient"
            if "birthdate" in params or "_count" in params or "_sort" in params
            else "/fhir/Condition",
            params=params,
            headers=world.headers,
        )
        assert r.status_code == 400, (params, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"
        assert r.json()["issue"][0]["code"] == "invalid"


def test_unknown_parameters_are_ignored_and_said_or_refused_when_strict(
    client: TestClient, world: World
) -> None:
    r = client.get("/fhir/Patient", params={"shoe-size": "44"}, headers=world.headers)
    bundle = r.json()
    outcome = [e for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    assert "shoe-size" in outcome[0]["resource"]["issue"][0]["diagnostics"]
    assert "shoe-size" not in bundle["link"][0]["url"]  # the self link shows what was applied
    r = client.get(
        "/fhir/Patient",
        params={"shoe-size": "44"},
        headers={**world.headers, "Prefer": "handling=strict"},
    )
    assert r.status_code == 400


def test_paging_links_walk_every_match_once(
    client: TestClient, session: Session, world: World
) -> None:
    for _ in range(5):
        make_patient(session, world.clinic)
    url = "/fhir/Patient?_count=3&_sort=-_id"
    seen: list[str] = []
    pages = 0
    while url:
        bundle = client.get(url, headers=world.headers).json()
        assert bundle["total"] == 7
        seen += [e["resource"]["id"] for e in bundle["entry"]]
        links = {link["relation"]: link["url"] for link in bundle["link"]}
        url = links.get("next", "").replace("http://testserver", "")
        pages += 1
    assert pages == 3 and len(seen) == 7 == len(set(seen))
    assert seen == sorted(seen, key=int, reverse=True)
    last = client.get(links["last"].replace("http://testserver", ""), headers=world.headers).json()
    assert len(last["entry"]) == 1
    counted = client.get("/fhir/Patient?_summary=count", headers=world.headers).json()
    assert counted["total"] == 7 and "entry" not in counted


def test_include_adds_the_referenced_resources_once(client: TestClient, world: World) -> None:
    r = client.get(
        "/fhir/Condition",
        params=[("_include", "Condition:patient"), ("_count", "50")],
        headers=world.headers,
    )
    bundle = r.json()
    included = [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "include"]
    assert sorted(p["id"] for p in included) == sorted([str(world.patient.id), str(world.other.id)])
    assert all(p["resourceType"] == "Patient" for p in included)
    check_bundle(client, world.headers, bundle)
    r = client.get(
        "/fhir/Appointment",
        params=[("_include", "Appointment:practitioner"), ("_include", "Appointment:location")],
        headers=world.headers,
    )
    kinds = sorted(e["resource"]["resourceType"] for e in r.json()["entry"])
    assert kinds == ["Appointment", "Location", "Practitioner"]


def test_last_updated_follows_changes_made_anywhere(
    client: TestClient, session: Session, world: World
) -> None:
    before = client.get(f"/fhir/Patient/{world.patient.id}", headers=world.headers).json()["meta"]
    cut = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
    world.allergy.reaction = "Hives"  # an ordinary ORM change, not through FHIR
    session.flush()
    r = client.get(
        "/fhir/AllergyIntolerance", params={"_lastUpdated": f"gt{cut}"}, headers=world.headers
    )
    found = r.json()["entry"]
    assert [e["resource"]["id"] for e in found] == [str(world.allergy.id)]
    assert found[0]["resource"]["meta"]["versionId"] == "2"
    r = client.get("/fhir/Patient", params={"_lastUpdated": f"gt{cut}"}, headers=world.headers)
    assert r.json()["total"] == 0
    assert before["versionId"] == "1"


def test_reads_and_searches_are_audited(client: TestClient, session: Session, world: World) -> None:
    client.get(f"/fhir/Condition/{world.diagnosis.id}", headers=world.headers)
    client.get("/fhir/Condition", params={"patient": world.patient.id}, headers=world.headers)
    rows = session.execute(
        select(AuditEvent.event, AuditEvent.entity_type, AuditEvent.patient_id, AuditEvent.user_id)
        .where(AuditEvent.event.like("fhir.%"))
        .order_by(AuditEvent.id)
    ).all()
    assert [tuple(r) for r in rows] == [
        ("fhir.read", "Condition", world.patient.id, world.clinician.id),
        ("fhir.search", "Condition", world.patient.id, world.clinician.id),
    ]


@pytest.mark.parametrize("type_name", ["Patient", "Condition", "Appointment", "AuditEvent"])
def test_capability_search_parameters_all_work(
    client: TestClient, world: World, type_name: str
) -> None:
    statement = client.get("/fhir/metadata").json()
    entry = next(r for r in statement["rest"][0]["resource"] if r["type"] == type_name)
    samples = {
        "token": "x",
        "reference": "1",
        "date": "2026",
        "string": "a",
        "uri": "x",
        "number": "1",
    }
    for param in entry["searchParam"]:
        value = samples[param["type"]]
        if param["type"] == "reference" and param["name"] == "actor":
            value = "Patient/1"
        r = client.get(
            f"/fhir/{type_name}", params={param["name"]: value}, headers=world.admin_headers
        )
        assert r.status_code == 200, (param, r.text)


def test_total_none_pages_without_counting(
    client: TestClient, session: Session, world: World
) -> None:
    """``_total=none``: no Bundle.total and no last link, yet next links still walk
    every match once and stop at the end (the page is read one row long)."""
    for _ in range(4):
        make_patient(session, world.clinic)
    accurate = client.get("/fhir/Patient?_summary=count", headers=world.headers).json()["total"]
    url = "/fhir/Patient?_count=2&_total=none"
    seen: list[str] = []
    while url:
        r = client.get(url, headers=world.headers)
        assert r.status_code == 200, r.text
        bundle = r.json()
        check_bundle(client, world.headers, bundle)
        assert "total" not in bundle
        links = {link["relation"]: link["url"] for link in bundle["link"]}
        assert "last" not in links and "_total=none" in links["self"]
        seen += [e["resource"]["id"] for e in bundle["entry"]]
        url = links.get("next", "").replace("http://testserver", "")
    assert len(seen) == accurate == len(set(seen))
    estimate = client.get("/fhir/Patient?_count=2&_total=estimate", headers=world.headers)
    assert estimate.json()["total"] == accurate
    bad = client.get("/fhir/Patient?_total=lots", headers=world.headers)
    assert bad.status_code == 400 and bad.json()["issue"][0]["code"] == "invalid"


def test_bundle_urls_follow_the_host_the_client_used(client: TestClient, world: World) -> None:
    """Base URLs are remembered per host and scheme: one client's host never leaks into
    another's links."""
    for host in ("ehr-a.example.org", "ehr-b.example.org:8443", "ehr-a.example.org"):
        bundle = client.get(
            "/fhir/Patient?_count=1", headers={**world.headers, "Host": host}
        ).json()
        assert bundle["link"][0]["url"].startswith(f"http://{host}/fhir/Patient?")
        assert bundle["entry"][0]["fullUrl"].startswith(f"http://{host}/fhir/Patient/")
