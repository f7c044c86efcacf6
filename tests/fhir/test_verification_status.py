"""Condition.verificationStatus, AllergyIntolerance.clinicalStatus and
AllergyIntolerance.verificationStatus on writes. A clinical-safety matter: a refuted or
mistaken diagnosis, or an allergy that was ruled out or no longer applies, used to be
kept as an active one (diagnoses feed screening; allergies the procedure pre-check).

Each element is a CodeableConcept FHIR R4 binds to a value set with a *required*
binding (the lists below are R4's v4.0.1 expansions, each page naming the binding
Required). A code outside the value set, or a status without a coding of its system, is
a 400 ``code-invalid``; a code prolo cannot represent is a 422 ``business-rule`` naming
the element and why, and nothing is stored; a code prolo keeps is written and reads
back the same. Over REST create and update, transaction and batch Bundles, the importer
(``prolo import-fhir``), and what screening then sees of the chart.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from prolo.cli import app
from prolo.courses.models import Procedure
from prolo.fhir import codes
from prolo.fhir.importer import Importer
from prolo.patients.models import Allergy, Diagnosis
from tests.factories import PASSWORD, make_clinic, make_patient, make_user, principal_for
from tests.fhir.conftest import World
from tests.fhir.helpers import parse
from tests.fhir.test_conditional_create import BODIES, footprint

Resource = dict[str, Any]
TEXT_ONLY = "(text only)"  # a status with text and no coding of the value set's system
BUNDLE_PREFIX = "Bundle.entry[1].resource."


@dataclass(frozen=True)
class Case:
    """One element: ``allowed`` FHIR R4's codes, ``outside`` a code not among them,
    ``refused`` the codes prolo cannot represent with words its 422 must say, ``kept``
    the codes prolo takes and reads back the same."""

    type_name: str
    path: str
    system: str
    allowed: tuple[str, ...]
    outside: str
    refused: dict[str, str]
    kept: tuple[str, ...]

    @property
    def key(self) -> str:
        return self.path.split(".")[1]

    def with_code(self, resource: Resource, code: str) -> Resource:
        changed = copy.deepcopy(resource)
        if code == TEXT_ONLY:
            changed[self.key] = {"text": "Whatever the sender meant"}
        else:
            changed[self.key] = codes.concept(self.system, code)
        return changed

    def read_code(self, resource: Resource) -> str | None:
        concept = resource.get(self.key)
        return None if concept is None else str(concept["coding"][0]["code"])


NOT_CONFIRMED = "prolo records confirmed diagnoses only"
WITHDRAWN = "ruled-out or mistaken diagnosis"
CONDITION_VERIFICATION = Case(
    "Condition",
    "Condition.verificationStatus",
    codes.CONDITION_VER_STATUS,
    # https://hl7.org/fhir/R4/valueset-condition-ver-status.html
    ("unconfirmed", "provisional", "differential", "confirmed", "refuted", "entered-in-error"),
    outside="suspected",
    refused={
        "unconfirmed": NOT_CONFIRMED,
        "provisional": NOT_CONFIRMED,
        "differential": NOT_CONFIRMED,
        "refuted": WITHDRAWN,
        "entered-in-error": WITHDRAWN,
    },
    kept=("confirmed",),
)
ALLERGY_CLINICAL = Case(
    "AllergyIntolerance",
    "AllergyIntolerance.clinicalStatus",
    codes.ALLERGY_CLINICAL,
    # https://hl7.org/fhir/R4/valueset-allergyintolerance-clinical.html
    ("active", "inactive", "resolved"),
    outside="current",
    refused={"inactive": "current allergies only", "resolved": "current allergies only"},
    kept=("active",),
)
ALLERGY_VERIFICATION = Case(
    "AllergyIntolerance",
    "AllergyIntolerance.verificationStatus",
    codes.ALLERGY_VERIFICATION,
    # https://hl7.org/fhir/R4/valueset-allergyintolerance-verification.html
    ("unconfirmed", "confirmed", "refuted", "entered-in-error"),
    outside="suspected",
    refused={
        "refuted": "ruled out or entered in error",
        "entered-in-error": "ruled out or entered in error",
    },
    kept=("confirmed", "unconfirmed"),
)
CASES = (CONDITION_VERIFICATION, ALLERGY_CLINICAL, ALLERGY_VERIFICATION)
# Every (element, code) a write may carry: each FHIR code, one outside, and text only.
CODES = [(case, code) for case in CASES for code in (*case.allowed, case.outside, TEXT_ONLY)]


def code_id(value: Any) -> str:
    return value.path if isinstance(value, Case) else str(value)


def issue_of(r: Any, status: int, code: str) -> dict[str, Any]:
    """The only issue of an OperationOutcome answer, which must parse as R4B."""
    assert r.status_code == status, r.text
    body = r.json()
    parse(body)
    assert body["resourceType"] == "OperationOutcome", body
    assert len(body["issue"]) == 1 and body["issue"][0]["code"] == code, body
    return dict(body["issue"][0])


def assert_refusal(issue: dict[str, Any], case: Case, code: str, *, prefix: str = "") -> None:
    """The issue a refused write gets: which, for ``code``, the module docstring says."""
    assert issue["expression"] == [f"{prefix}{case.path}"], issue
    text = issue["diagnostics"]
    if code in case.refused:
        assert issue["code"] == "business-rule", issue
        assert f"{code!r} is not supported by prolo" in text, issue
        assert case.refused[code] in text, issue
    else:
        assert issue["code"] == "code-invalid", issue
        assert ", ".join(case.allowed) in text, issue
        assert (case.system if code == TEXT_ONLY else repr(code)) in text, issue


def refusal(r: Any, case: Case, code: str) -> dict[str, Any]:
    """The issue of a refused write: 422 business-rule for a code prolo cannot represent,
    400 code-invalid for one outside FHIR's value set."""
    if code in case.refused:
        return issue_of(r, 422, "business-rule")
    return issue_of(r, 400, "code-invalid")


def new_body(session: Session, world: World, case: Case) -> Resource:
    return BODIES[case.type_name](session, world, 1)


def stored_url(world: World, case: Case) -> str:
    row_id = world.diagnosis.id if case.type_name == "Condition" else world.allergy.id
    return f"/fhir/{case.type_name}/{row_id}"


@pytest.mark.parametrize(("case", "code"), CODES, ids=code_id)
def test_a_create_keeps_what_prolo_can_say_and_refuses_the_rest(
    client: TestClient, session: Session, world: World, case: Case, code: str
) -> None:
    body = case.with_code(new_body(session, world, case), code)
    before = footprint(session)
    r = client.post(f"/fhir/{case.type_name}", json=body, headers=world.headers)
    if code not in case.kept:
        assert_refusal(refusal(r, case, code), case, code)
        assert footprint(session) == before
        return
    assert r.status_code == 201, r.text
    created = r.json()
    parse(created)
    assert case.read_code(created) == code
    again = client.get(f"/fhir/{case.type_name}/{created['id']}", headers=world.headers)
    assert again.status_code == 200, again.text
    parse(again.json())
    assert case.read_code(again.json()) == code


@pytest.mark.parametrize(("case", "code"), CODES, ids=code_id)
def test_an_update_keeps_what_prolo_can_say_and_refuses_the_rest(
    client: TestClient, session: Session, world: World, case: Case, code: str
) -> None:
    """A PUT of the stored record as read, with the status changed: a refusal leaves the
    record as it was (same version, same content)."""
    url = stored_url(world, case)
    current = client.get(url, headers=world.headers).json()
    parse(current)
    before = footprint(session)
    r = client.put(url, json=case.with_code(current, code), headers=world.headers)
    if code not in case.kept:
        assert_refusal(refusal(r, case, code), case, code)
        assert footprint(session) == before
        assert client.get(url, headers=world.headers).json() == current
        return
    assert r.status_code == 200, r.text
    parse(r.json())
    assert case.read_code(r.json()) == code
    assert case.read_code(client.get(url, headers=world.headers).json()) == code


def test_absent_statuses_keep_todays_behaviour(
    client: TestClient, session: Session, world: World
) -> None:
    """No verificationStatus: the Condition is taken as a diagnosis, as before, and reads
    back confirmed (all prolo keeps); an allergy with neither status is current, and
    reads back with no verificationStatus, as one added on the chart does."""
    body = BODIES["Condition"](session, world, 1)
    assert "verificationStatus" not in body
    r = client.post("/fhir/Condition", json=body, headers=world.headers)
    assert r.status_code == 201, r.text
    parse(r.json())
    assert CONDITION_VERIFICATION.read_code(r.json()) == "confirmed"
    assert r.json()["clinicalStatus"]["coding"][0]["code"] == "active"

    body = BODIES["AllergyIntolerance"](session, world, 1)
    r = client.post("/fhir/AllergyIntolerance", json=body, headers=world.headers)
    assert r.status_code == 201, r.text
    parse(r.json())
    assert "verificationStatus" not in r.json()
    assert ALLERGY_CLINICAL.read_code(r.json()) == "active"
    row = session.get(Allergy, int(r.json()["id"]))
    assert row is not None and row.verification_status is None
    chart_allergy = client.get(stored_url(world, ALLERGY_VERIFICATION), headers=world.headers)
    parse(chart_allergy.json())
    assert "verificationStatus" not in chart_allergy.json()


def test_an_unconfirmed_allergy_stays_on_the_chart_for_the_pre_check(
    client: TestClient, session: Session, world: World
) -> None:
    """A suspected lidocaine allergy is kept, marked unconfirmed, and the procedure
    pre-check matches it against the injectate's anaesthetic; a PUT replaces the whole
    record, so without the element nothing is said about how certain it is."""
    body = {
        **BODIES["AllergyIntolerance"](session, world, 1),
        "patient": {"reference": f"Patient/{world.patient.id}"},
        "code": {"text": "Lidocaine"},
    }
    body = ALLERGY_VERIFICATION.with_code(body, "unconfirmed")
    r = client.post("/fhir/AllergyIntolerance", json=body, headers=world.headers)
    assert r.status_code == 201, r.text
    parse(r.json())
    row = session.get(Allergy, int(r.json()["id"]))
    assert row is not None and row.verification_status == "unconfirmed"

    procedure = client.post(
        "/fhir/Procedure", json=BODIES["Procedure"](session, world, 1), headers=world.headers
    )
    assert procedure.status_code == 201, procedure.text
    parse(procedure.json())
    recorded = session.get(Procedure, int(procedure.json()["id"]))
    assert recorded is not None
    assert recorded.details["pre_check"]["chart_allergies_matched"] == ["Lidocaine"]
    sign_in(client, world)
    chart = client.get(f"/patients/{world.patient.id}").text
    item = next(li for li in chart.split("</li>") if "<strong>Lidocaine</strong>" in li)
    assert '<span class="badge badge-warn">unconfirmed</span>' in item, item

    current = r.json()
    del current["verificationStatus"]
    r = client.put(f"/fhir/AllergyIntolerance/{row.id}", json=current, headers=world.headers)
    assert r.status_code == 200, r.text
    parse(r.json())
    assert "verificationStatus" not in r.json()
    session.refresh(row)
    assert row.verification_status is None


def transaction(kind: str, *resources: Resource) -> Resource:
    return {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [
            {"resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}
            for resource in resources
        ],
    }


@pytest.mark.parametrize(
    ("case", "code"),
    [(c, code) for c in CASES for code in (*c.refused, c.outside)],
    ids=code_id,
)
def test_a_transaction_with_a_refused_status_writes_nothing(
    client: TestClient, session: Session, world: World, case: Case, code: str
) -> None:
    """The first entry (a valid new patient) is not kept when the second is refused."""
    patient = BODIES["Patient"](session, world, 1)
    refused = case.with_code(new_body(session, world, case), code)
    before = footprint(session)
    r = client.post(
        "/fhir", json=transaction("transaction", patient, refused), headers=world.headers
    )
    assert_refusal(refusal(r, case, code), case, code, prefix=BUNDLE_PREFIX)
    assert footprint(session) == before


def test_a_batch_refuses_the_refuted_condition_and_keeps_the_confirmed_one(
    client: TestClient, session: Session, world: World
) -> None:
    refuted = CONDITION_VERIFICATION.with_code(BODIES["Condition"](session, world, 1), "refuted")
    confirmed = CONDITION_VERIFICATION.with_code(
        BODIES["Condition"](session, world, 2), "confirmed"
    )
    r = client.post("/fhir", json=transaction("batch", refuted, confirmed), headers=world.headers)
    assert r.status_code == 200, r.text
    answer = r.json()
    parse(answer)
    assert [e["response"]["status"] for e in answer["entry"]] == ["422", "201 Created"]
    outcome = answer["entry"][0]["response"]["outcome"]
    parse(outcome)
    assert outcome["issue"][0]["code"] == "business-rule"
    assert outcome["issue"][0]["expression"] == ["Condition.verificationStatus"]
    kept = session.scalars(select(Diagnosis.code).where(Diagnosis.patient_id == world.other.id))
    assert sorted(kept) == ["M17.11", "M54.50"]  # the confirmed one, and the one before


def import_bundle() -> Resource:
    """A patient with a refuted and a confirmed Condition, and three allergies: resolved,
    refuted, and unconfirmed."""
    patient_url = f"urn:uuid:{uuid.uuid4()}"
    subject = {"reference": patient_url}

    def condition(code: str, verification: str) -> Resource:
        return {
            "resourceType": "Condition",
            "subject": subject,
            "clinicalStatus": codes.concept(codes.CONDITION_CLINICAL, "active"),
            "verificationStatus": codes.concept(codes.CONDITION_VER_STATUS, verification),
            "code": {"coding": [{"system": codes.ICD10CM, "code": code}]},
        }

    def allergy(substance: str, clinical: str, verification: str) -> Resource:
        return {
            "resourceType": "AllergyIntolerance",
            "patient": subject,
            "clinicalStatus": codes.concept(codes.ALLERGY_CLINICAL, clinical),
            "verificationStatus": codes.concept(codes.ALLERGY_VERIFICATION, verification),
            "code": {"text": substance},
        }

    resources = [
        (
            patient_url,
            {
                "resourceType": "Patient",
                "name": [{"family": "Refuted", "given": ["Ruth"]}],
                "gender": "female",
                "birthDate": "1970-03-04",
            },
        ),
        (f"urn:uuid:{uuid.uuid4()}", condition("M17.11", "refuted")),
        (f"urn:uuid:{uuid.uuid4()}", condition("M54.50", "confirmed")),
        (f"urn:uuid:{uuid.uuid4()}", allergy("Penicillin", "resolved", "confirmed")),
        (f"urn:uuid:{uuid.uuid4()}", allergy("Latex", "active", "refuted")),
        (f"urn:uuid:{uuid.uuid4()}", allergy("Lidocaine", "active", "unconfirmed")),
    ]
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": url,
                "resource": resource,
                "request": {"method": "POST", "url": resource["resourceType"]},
            }
            for url, resource in resources
        ],
    }


def test_an_import_takes_the_confirmed_condition_and_reports_the_refuted_one(
    tmp_path: Path, session: Session, session_factory: sessionmaker[Session]
) -> None:
    clinic = make_clinic(session)
    principal = principal_for(make_user(session, clinic, "clinician"))
    bundle = import_bundle()
    parse(bundle)  # valid FHIR: what is refused is refused for prolo's reasons
    file = tmp_path / "Ruth.json"
    file.write_text(json.dumps(bundle))
    report = Importer(session_factory, principal).run(file)
    assert report.created == {"Patient": 1, "Condition": 1, "AllergyIntolerance": 1}
    assert report.failed == {"Condition": 1, "AllergyIntolerance": 2}
    reasons = list(report.reasons)
    assert len(reasons) == 3, reasons
    assert any(
        r.startswith("Condition: Condition.verificationStatus 'refuted' is not supported")
        and WITHDRAWN in r
        for r in reasons
    ), reasons
    assert any("AllergyIntolerance.clinicalStatus 'resolved'" in r for r in reasons), reasons
    assert any("AllergyIntolerance.verificationStatus 'refuted'" in r for r in reasons), reasons
    diagnoses = session.execute(
        select(Diagnosis.code, Diagnosis.clinical_status).where(
            Diagnosis.patient.has(clinic_id=clinic.id)
        )
    ).all()
    assert [tuple(d) for d in diagnoses] == [("M54.50", "active")]
    allergies = session.execute(
        select(Allergy.substance, Allergy.verification_status).where(
            Allergy.patient.has(clinic_id=clinic.id)
        )
    ).all()
    assert [tuple(a) for a in allergies] == [("Lidocaine", "unconfirmed")]


def test_the_import_command_reports_the_refused_resources(tmp_path: Path) -> None:
    """``prolo import-fhir`` prints each refusal's reason and imports the rest."""
    runner = CliRunner()
    env = {"PROLO_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
    assert runner.invoke(app, ["db", "upgrade"], env=env).exit_code == 0
    assert runner.invoke(app, ["demo", "--patients", "1"], env=env).exit_code == 0
    file = tmp_path / "Ruth.json"
    file.write_text(json.dumps(import_bundle()))
    result = runner.invoke(app, ["import-fhir", str(file), "--quiet"], env=env)
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "could not map" in output, output
    assert "Condition.verificationStatus 'refuted' is not supported by prolo" in output, output


def sign_in(client: TestClient, world: World) -> None:
    """The clinician's browser session, for the pages."""
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
    assert token
    signed_in = client.post(
        "/login",
        data={"email": world.clinician.email, "password": PASSWORD, "csrf_token": token[1]},
        follow_redirects=False,
    )
    assert signed_in.status_code == 303, signed_in.text


def selected_condition(page: str) -> str | None:
    select_html = re.search(r'<select id="f-condition_id".*?</select>', page, re.S)
    assert select_html, "the screening form has no condition list"
    chosen = re.search(r'<option value="([^"]*)" selected>', select_html[0])
    return chosen[1] if chosen else None


def test_screening_never_sees_a_refuted_condition_sent_over_fhir(
    client: TestClient, session: Session, world: World
) -> None:
    """The patient's screening preselects the condition of their one active diagnosis
    linked to the knowledge base; a refuted Condition for the knee is refused, so the
    chart has no such diagnosis and screening proposes nothing. The same Condition,
    confirmed, is what screening then picks up."""
    patient = make_patient(session, world.clinic, given_name="Rae", family_name="Refuted")
    body = {
        "resourceType": "Condition",
        "subject": {"reference": f"Patient/{patient.id}"},
        "verificationStatus": codes.concept(codes.CONDITION_VER_STATUS, "refuted"),
        "code": {"coding": [{"system": codes.ICD10CM, "code": "M17.11"}]},
    }
    r = client.post("/fhir/Condition", json=body, headers=world.headers)
    assert_refusal(issue_of(r, 422, "business-rule"), CONDITION_VERIFICATION, "refuted")
    session.refresh(patient)
    assert patient.diagnoses == []
    sign_in(client, world)
    page = client.get(f"/patients/{patient.id}/screening")
    assert page.status_code == 200
    assert selected_condition(page.text) in (None, "")

    confirmed = {
        **body,
        "verificationStatus": codes.concept(codes.CONDITION_VER_STATUS, "confirmed"),
    }
    r = client.post("/fhir/Condition", json=confirmed, headers=world.headers)
    assert r.status_code == 201, r.text
    parse(r.json())
    assert selected_condition(client.get(f"/patients/{patient.id}/screening").text) == (
        "knee-osteoarthritis"
    )
