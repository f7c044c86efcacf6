"""Importing FHIR files: Synthea-style transaction Bundles and NDJSON, unknown types
counted and skipped, unmappable resources reported, re-imports idempotent."""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from prolo.cli import app
from prolo.fhir import codes
from prolo.fhir.importer import Importer
from prolo.patients.models import Allergy, Diagnosis, Medication, Patient
from tests.factories import make_clinic, make_user, principal_for

SNOMED = "http://snomed.info/sct"


def urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def synthea_like(n_observations: int = 20, *, seed_id: str | None = None) -> dict[str, Any]:
    """One patient's transaction Bundle in the shape Synthea writes (invented content)."""
    patient_url = seed_id or urn()
    encounter_url = urn()

    def entry(url: str, resource: dict[str, Any]) -> dict[str, Any]:
        return {
            "fullUrl": url,
            "resource": resource,
            "request": {"method": "POST", "url": resource["resourceType"]},
        }

    subject = {"reference": patient_url}
    entries = [
        entry(
            encounter_url,
            {
                "resourceType": "Encounter",
                "status": "finished",
                "subject": subject,
                "participant": [
                    {
                        "individual": {
                            "reference": "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9999999999"
                        }
                    }
                ],
            },
        ),
        entry(
            urn(),
            {
                "resourceType": "Condition",
                "subject": subject,
                "encounter": {"reference": encounter_url},
                "clinicalStatus": {
                    "coding": [{"system": codes.CONDITION_CLINICAL, "code": "active"}]
                },
                "code": {
                    "coding": [
                        {"system": SNOMED, "code": "239873007", "display": "Osteoarthritis of knee"}
                    ]
                },
                "onsetDateTime": "2019-03-01T10:00:00+00:00",
            },
        ),
        entry(
            urn(),
            {
                "resourceType": "Condition",
                "subject": subject,
                "clinicalStatus": {
                    "coding": [{"system": codes.CONDITION_CLINICAL, "code": "resolved"}]
                },
                "code": {"coding": [{"system": codes.ICD10CM, "code": "M17"}]},
            },
        ),
        entry(
            urn(),
            {
                "resourceType": "MedicationRequest",
                "status": "active",
                "intent": "order",
                "subject": subject,
                "medicationCodeableConcept": {
                    "coding": [
                        {
                            "system": codes.RXNORM,
                            "code": "310965",
                            "display": "Ibuprofen 200 MG Oral Tablet",
                        }
                    ],
                    "text": "Ibuprofen 200 MG Oral Tablet",
                },
            },
        ),
        entry(
            urn(),
            {
                "resourceType": "MedicationRequest",
                "status": "cancelled",
                "intent": "order",
                "subject": subject,
                "medicationCodeableConcept": {"text": "Something cancelled"},
            },
        ),
        entry(
            urn(),
            {
                "resourceType": "AllergyIntolerance",
                "patient": subject,
                "criticality": "low",
                "code": {
                    "coding": [{"system": SNOMED, "code": "300916003", "display": "Latex allergy"}]
                },
            },
        ),
        entry(
            urn(),
            {
                "resourceType": "CarePlan",
                "status": "active",
                "intent": "order",
                "subject": subject,
                "category": [
                    {
                        "coding": [
                            {"system": SNOMED, "code": "53950000", "display": "Respiratory therapy"}
                        ]
                    }
                ],
            },
        ),
        entry(
            urn(),
            {"resourceType": "Location", "status": "active", "name": "SPRINGFIELD MEDICAL CENTER"},
        ),
        entry(urn(), {"resourceType": "Claim", "status": "active", "patient": subject}),
        entry(
            urn(), {"resourceType": "ExplanationOfBenefit", "status": "active", "patient": subject}
        ),
        entry(urn(), {"resourceType": "Immunization", "status": "completed", "patient": subject}),
    ]
    for i in range(n_observations):
        entries.append(
            entry(
                urn(),
                {
                    "resourceType": "Observation",
                    "status": "final",
                    "subject": subject,
                    "code": {
                        "coding": [
                            {"system": codes.LOINC, "code": "8302-2", "display": "Body Height"}
                        ]
                    },
                    "valueQuantity": {"value": 160 + i % 20, "unit": "cm"},
                },
            )
        )
    entries.insert(
        0,
        entry(
            patient_url,
            {
                "resourceType": "Patient",
                "identifier": [
                    {
                        "system": "https://github.com/synthetichealth/synthea",
                        "value": patient_url.removeprefix("urn:uuid:"),
                    },
                    {
                        "type": {"coding": [{"system": codes.IDENTIFIER_TYPE, "code": "SS"}]},
                        "system": "http://hl7.org/fhir/sid/us-ssn",
                        "value": "999-12-3456",
                    },
                ],
                "name": [
                    {
                        "use": "official",
                        "family": "Kling921",
                        "given": ["Rosa14"],
                        "prefix": ["Mrs."],
                    }
                ],
                "telecom": [{"system": "phone", "value": "555-861-2344", "use": "home"}],
                "gender": "female",
                "birthDate": "1958-07-21",
                "address": [
                    {"line": ["1 Test Way Unit 2"], "city": "Boston", "postalCode": "02110"}
                ],
            },
        ),
    )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def counts(session: Session) -> tuple[int, ...]:
    return tuple(
        session.scalar(select(func.count()).select_from(m)) or 0
        for m in (Patient, Diagnosis, Medication, Allergy)
    )


def test_a_synthea_bundle_imports_what_prolo_keeps_and_reports_the_rest(
    tmp_path: Path, session: Session, session_factory: sessionmaker[Session]
) -> None:
    clinic = make_clinic(session)
    principal = principal_for(make_user(session, clinic, "admin"))
    file = tmp_path / "Rosa.json"
    file.write_text(json.dumps(synthea_like()))
    before = counts(session)
    report = Importer(session_factory, principal).run(file)
    assert report.created == {
        "Patient": 1,
        "Condition": 1,
        "MedicationRequest": 1,
        "AllergyIntolerance": 1,
    }
    assert report.failed == {"Condition": 1, "MedicationRequest": 1, "CarePlan": 1, "Location": 1}
    assert report.unknown == {
        "Encounter": 1,
        "Claim": 1,
        "ExplanationOfBenefit": 1,
        "Immunization": 1,
    }
    assert report.not_imported == {"Observation": 20}
    reasons = " | ".join(report.reasons)
    assert (
        "billable" in reasons and "cancelled" in reasons and "knowledge-base condition" in reasons
    )
    assert counts(session) == (before[0] + 1, before[1] + 1, before[2] + 1, before[3] + 1)
    patient = session.scalars(select(Patient).where(Patient.clinic_id == clinic.id)).one()
    assert (patient.family_name, patient.given_name, patient.phone) == (
        "Kling921",
        "Rosa14",
        "555-861-2344",
    )
    diagnosis = session.scalars(select(Diagnosis).where(Diagnosis.patient_id == patient.id)).one()
    assert (diagnosis.code_system, diagnosis.code, diagnosis.onset_date.isoformat()) == (
        "snomed",
        "239873007",
        "2019-03-01",
    )
    again = Importer(session_factory, principal).run(file)
    assert again.created.total() == 0
    assert again.already == {
        "Patient": 1,
        "Condition": 1,
        "MedicationRequest": 1,
        "AllergyIntolerance": 1,
    }
    assert counts(session) == (before[0] + 1, before[1] + 1, before[2] + 1, before[3] + 1)


def test_private_identifiers_are_not_kept(
    tmp_path: Path, session: Session, session_factory: sessionmaker[Session]
) -> None:
    from prolo.fhir.models import ExternalIdentifier

    clinic = make_clinic(session)
    principal = principal_for(make_user(session, clinic, "admin"))
    file = tmp_path / "one.json"
    file.write_text(json.dumps(synthea_like(0)))
    Importer(session_factory, principal).run(file)
    systems = session.scalars(
        select(ExternalIdentifier.system).where(ExternalIdentifier.clinic_id == clinic.id)
    ).all()
    assert "http://hl7.org/fhir/sid/us-ssn" not in systems
    assert "https://github.com/synthetichealth/synthea" in systems


def test_ndjson_files_import_in_reference_order_with_their_own_ids(
    tmp_path: Path, session: Session, session_factory: sessionmaker[Session]
) -> None:
    clinic = make_clinic(session)
    principal = principal_for(make_user(session, clinic, "clinician"))
    folder = tmp_path / "export"
    folder.mkdir()
    conditions = [
        {
            "resourceType": "Condition",
            "id": f"c{i}",
            "subject": {"reference": f"Patient/{i}"},
            "code": {"coding": [{"system": codes.ICD10CM, "code": "M54.50"}]},
        }
        for i in (1, 2, 3)
    ]
    patients = [
        {
            "resourceType": "Patient",
            "id": str(i),
            "name": [{"family": f"N{i}", "given": ["A"]}],
            "gender": "other",
            "birthDate": "1990-01-0" + str(i),
        }
        for i in (1, 2)
    ]
    # "a-" sorts first: the importer still reads the Patient file before the Condition file.
    (folder / "a-Condition.ndjson").write_text("\n".join(json.dumps(c) for c in conditions) + "\n")
    (folder / "b-Patient.ndjson").write_text(
        "\n".join(json.dumps(p) for p in patients) + "\n{not json\n"
    )
    report = Importer(session_factory, principal, source="old-ehr").run(folder)
    assert report.files == 2
    assert report.created == {"Patient": 2, "Condition": 2}
    assert report.failed == {"Condition": 1}
    assert report.unknown == {"(unreadable)": 1}
    assert report.reasons == {
        "Condition: Condition.subject refers to Patient/…, which was not imported (yet)": 1
    }
    made = session.scalars(
        select(Diagnosis.patient_id).join(Patient).where(Patient.clinic_id == clinic.id)
    ).all()
    names = dict(
        session.execute(select(Patient.id, Patient.family_name).where(Patient.id.in_(made))).all()
    )
    assert sorted(names.values()) == ["N1", "N2"]
    again = Importer(session_factory, principal, source="old-ehr").run(folder)
    assert again.created.total() == 0 and again.already == {"Patient": 2, "Condition": 2}


def test_a_large_bundle_imports_in_reasonable_time(
    tmp_path: Path, session: Session, session_factory: sessionmaker[Session]
) -> None:
    clinic = make_clinic(session)
    principal = principal_for(make_user(session, clinic, "admin"))
    bundle = synthea_like(3000)
    file = tmp_path / "big.json"
    file.write_text(json.dumps(bundle))
    ticks: list[tuple[int, int]] = []
    start = time.perf_counter()
    report = Importer(session_factory, principal, progress=lambda d, t: ticks.append((d, t))).run(
        file
    )
    elapsed = time.perf_counter() - start
    assert report.seen == len(bundle["entry"]) == 3012
    assert report.not_imported["Observation"] == 3000
    assert elapsed < 20, elapsed
    assert ticks[-1][0] == ticks[-1][1] and [d for d, _ in ticks] == sorted(d for d, _ in ticks)


def test_the_cli_imports_with_a_summary(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"PROLO_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
    assert runner.invoke(app, ["db", "upgrade"], env=env).exit_code == 0
    assert runner.invoke(app, ["demo", "--patients", "2"], env=env).exit_code == 0
    file = tmp_path / "Rosa.json"
    file.write_text(json.dumps(synthea_like(5)))
    result = runner.invoke(app, ["import-fhir", str(file), "--quiet"], env=env)
    assert result.exit_code == 0, result.output
    assert "Patient" in result.output and "Claim 1" in result.output
    assert "could not map" in result.output and "billable" in result.output
    result = runner.invoke(
        app, ["import-fhir", str(file), "--as", "frontdesk@demo.prolo.example.org"], env=env
    )
    assert result.exit_code == 1 and "admin or a clinician" in result.output
    result = runner.invoke(app, ["import-fhir", str(tmp_path / "missing.json")], env=env)
    assert result.exit_code != 0


def test_a_resource_twice_in_one_file_is_kept_once_and_a_taken_identifier_is_refused(
    tmp_path: Path, session: Session, session_factory: sessionmaker[Session]
) -> None:
    """Source keys are checked a batch at a time, so a second copy later in the same
    batch must count as already imported; a kept identifier that another patient of
    the clinic holds is still refused with the reason, and the file goes on."""
    clinic = make_clinic(session)
    principal = principal_for(make_user(session, clinic, "clinician"))

    def patient(rid: str, family: str, ehr_id: str) -> dict[str, Any]:
        return {
            "resourceType": "Patient",
            "id": rid,
            "identifier": [{"system": "https://ehr.example.org/id", "value": ehr_id}],
            "name": [{"family": family, "given": ["A"]}],
            "birthDate": "1980-02-03",
        }

    rows = [
        patient("p1", "First", "E-1"),
        patient("p1", "First", "E-1"),  # the same resource again
        patient("p2", "Second", "E-1"),  # another resource claiming E-1
        patient("p3", "Third", "E-3"),
    ]
    file = tmp_path / "Patient.ndjson"
    file.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    report = Importer(session_factory, principal, source="ehr").run(file)
    assert report.created == {"Patient": 2}
    assert report.already == {"Patient": 1}
    assert report.failed == {"Patient": 1}
    assert any("already belongs to Patient/" in reason for reason in report.reasons)
    families = session.scalars(
        select(Patient.family_name).where(Patient.clinic_id == clinic.id)
    ).all()
    assert sorted(families) == ["First", "Third"]


def test_the_cli_validates_with_the_models_when_asked(tmp_path: Path) -> None:
    """Raw mapping reads only the elements prolo keeps, so an element FHIR does not have
    passes unnoticed; ``--validate`` checks each resource to be written with the R4B
    models and reports the one that breaks FHIR's structure."""
    runner = CliRunner()
    env = {"PROLO_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
    assert runner.invoke(app, ["db", "upgrade"], env=env).exit_code == 0
    assert runner.invoke(app, ["demo", "--patients", "1"], env=env).exit_code == 0
    patient = {
        "resourceType": "Patient",
        "name": [{"family": "Odd", "given": ["A"]}],
        "birthDate": "1970-01-01",
        "shoeSize": 44,  # not a Patient element
    }
    for name, flag, counts in (("a", "--no-validate", [1, 0, 0]), ("b", "--validate", [0, 0, 1])):
        file = tmp_path / f"{name}.ndjson"
        file.write_text(json.dumps({**patient, "id": name}) + "\n")
        result = runner.invoke(app, ["import-fhir", str(file), "--quiet", flag], env=env)
        assert result.exit_code == 0, result.output
        row = next(line for line in result.output.splitlines() if "Patient " in line)
        # created, already there, failed
        assert [int(n) for n in re.findall(r"\d+", row)][:3] == counts, result.output
    assert "shoeSize" in result.output
