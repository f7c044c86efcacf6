"""Procedure and Consent writes: through the courses domain, with its rules (sites, one
record per session, signing by the performer with consent on file, signed records
corrected only by amendment, consent statements and withdrawal); round trips; every
refusal is an OperationOutcome that keeps nothing."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from prolo.courses.consent import CURRENT_VERSION, V1
from prolo.courses.models import Consent, Procedure, TreatmentCourse
from prolo.fhir import codes
from prolo.fhir.resources import procedure as fp
from prolo.fhir.resources.consent import POLICY, SCOPE_SYSTEM, STATEMENT_EXT
from prolo.knowledge.safety import load_safety_rules
from prolo.scheduling.models import Appointment
from prolo.security.models import AuditEvent
from tests.factories import make_clinic, make_user
from tests.fhir.conftest import World
from tests.fhir.helpers import check_bundle, check_resource, fhir_token, parse
from tests.screening.factories import clear_history

EHR_ID = "https://ehr.example.org/procedure"


def outcome(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    parse(body)
    assert body["resourceType"] == "OperationOutcome", body
    assert body["issue"][0]["code"] == code, body
    return dict(body["issue"][0])


def count(session: Session, model: Any) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": codes.UCUM, "code": unit}


def performer_headers(session: Session, world: World) -> dict[str, str]:
    """A clinician whose login is the world's practitioner (who may sign their records)."""
    user = make_user(session, world.clinic, "clinician")
    user.practitioner_id = world.practitioner.id
    session.flush()
    return fhir_token(session, user, "fhir", "write")


def injection_visit(session: Session, world: World, course_id: int | None = None) -> Appointment:
    starts = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)
    visit = Appointment(
        clinic_id=world.clinic.id,
        patient_id=world.patient.id,
        practitioner_id=world.practitioner.id,
        course_id=course_id or world.course.id,
        kind="injection",
        status="arrived",
        starts_at=starts,
        ends_at=starts + dt.timedelta(minutes=30),
    )
    session.add(visit)
    session.flush()
    return visit


CHECKS: dict[str, Any] = {
    "pain_duration_weeks": 52.0,
    "history": clear_history(),
    "anticoagulant": False,
    "antiplatelet": False,
    "allergy_local_anaesthetic": False,
    "allergy_dextrose": False,
}


def checks_extension() -> dict[str, Any]:
    """The pre-procedure re-check answers, written out by hand as the docs describe."""
    flags = [{"url": q, "valueBoolean": False} for q in load_safety_rules().questions]
    history = [{"url": k, "valueBoolean": v} for k, v in CHECKS["history"].items()]
    plain = [{"url": k, "valueBoolean": v} for k, v in CHECKS.items() if isinstance(v, bool)]
    return {
        "url": fp.CHECK_EXT,
        "extension": [
            {"url": "pain_duration_weeks", "valueDecimal": 52.0},
            {"url": "red_flags", "extension": flags},
            {"url": "history", "extension": history},
            *plain,
        ],
    }


def procedure(
    patient_id: int,
    practitioner_id: int,
    *,
    course: str | None,
    appointment: str | None,
    status: str = "in-progress",
) -> dict[str, Any]:
    """A complete knee session; nothing in it argues against injecting."""
    extension: list[dict[str, Any]] = []
    if appointment is not None:
        extension.append(
            {"url": codes.PROLO_APPOINTMENT_EXT, "valueReference": {"reference": appointment}}
        )
    extension += [
        {"url": fp.REGION_EXT, "valueCoding": {"system": fp.REGION_SYSTEM, "code": "knee"}},
        {
            "url": fp.INJECTATE_EXT,
            "extension": [
                {"url": "solution", "valueString": "dextrose"},
                {"url": "concentration", "valueQuantity": quantity(25, "%")},
                {"url": "anaesthetic", "valueString": "lidocaine"},
                {"url": "anaesthetic-concentration", "valueQuantity": quantity(1, "%")},
                {"url": "total-volume", "valueQuantity": quantity(6.5, "mL")},
            ],
        },
        {
            "url": fp.GUIDANCE_EXT,
            "valueCoding": {"system": fp.GUIDANCE_SYSTEM, "code": "ultrasound"},
        },
        {
            "url": fp.NEEDLE_EXT,
            "extension": [
                {"url": "gauge", "valueInteger": 25},
                {"url": "length", "valueQuantity": quantity(38, "mm")},
            ],
        },
        checks_extension(),
    ]

    def site(code: str, side: str, volume: float) -> dict[str, Any]:
        return {
            "extension": [
                {"url": fp.SIDE_EXT, "valueCoding": {"system": fp.SIDE_SYSTEM, "code": side}},
                {"url": fp.VOLUME_EXT, "valueQuantity": quantity(volume, "mL")},
            ],
            "coding": [{"system": fp.SITE_SYSTEM, "code": code}],
        }

    resource: dict[str, Any] = {
        "resourceType": "Procedure",
        "identifier": [{"system": EHR_ID, "value": "P-1"}],
        "extension": extension,
        "status": status,
        "code": fp.SESSION,
        "subject": {"reference": f"Patient/{patient_id}"},
        "performedDateTime": (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=20))
        .replace(microsecond=0)
        .isoformat(),
        "performer": [{"actor": {"reference": f"Practitioner/{practitioner_id}"}}],
        "bodySite": [
            site("knee-intra-articular", "right", 6),
            site("knee-ligament-insertion", "right", 0.5),
        ],
        "complication": [
            {
                "extension": [
                    {
                        "url": fp.SEVERITY_EXT,
                        "valueCoding": {"system": fp.SEVERITY_SYSTEM, "code": "mild"},
                    }
                ],
                "coding": [{"system": fp.ADVERSE_SYSTEM, "code": "vasovagal"}],
                "text": "Felt faint, recovered lying down",
            }
        ],
        "followUp": [
            {"coding": [{"system": fp.AFTERCARE_SYSTEM, "code": "normal_activity"}]},
            {"coding": [{"system": fp.AFTERCARE_SYSTEM, "code": "when_to_call"}]},
            {"text": "Ice after 48 hours"},
        ],
        "note": [{"text": "Tolerated well."}],
    }
    if course is not None:
        resource["basedOn"] = [{"reference": course}]
    return resource


def session_of(world: World, visit: Appointment, **kw: Any) -> dict[str, Any]:
    return procedure(
        world.patient.id,
        world.practitioner.id,
        course=f"CarePlan/{world.course.id}",
        appointment=f"Appointment/{visit.id}",
        **kw,
    )


def without_meta(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "meta"}


def events(session: Session, entity_type: str, entity_id: int) -> list[str]:
    return list(
        session.scalars(
            select(AuditEvent.event)
            .where(AuditEvent.entity_type == entity_type, AuditEvent.entity_id == str(entity_id))
            .order_by(AuditEvent.id)
        ).all()
    )


# -- Procedure ----------------------------------------------------------------------------


def test_a_procedure_is_created_through_the_domain_with_every_part_mapped(
    client: TestClient, session: Session, world: World
) -> None:
    visit = injection_visit(session, world)
    r = client.post("/fhir/Procedure", json=session_of(world, visit), headers=world.headers)
    assert r.status_code == 201, r.text
    created = r.json()
    check_resource(client, world.headers, created)
    session.expire_all()
    row = session.get(Procedure, int(created["id"]))
    assert row is not None and row.status == "draft" and created["status"] == "in-progress"
    assert (row.patient_id, row.course_id, row.appointment_id, row.practitioner_id) == (
        world.patient.id,
        world.course.id,
        visit.id,
        world.practitioner.id,
    )
    assert row.body_region == "knee" and row.note == "Tolerated well."
    details = row.details
    assert details["injectate"] == {
        "solution": "dextrose",
        "concentration_percent": 25.0,
        "anaesthetic": "lidocaine",
        "anaesthetic_concentration_percent": 1.0,
        "total_volume_ml": 6.5,
    }
    assert details["sites"] == [
        {"site_id": "knee-intra-articular", "side": "right", "volume_ml": 6.0},
        {"site_id": "knee-ligament-insertion", "side": "right", "volume_ml": 0.5},
    ]
    assert (details["guidance"], details["needle"]) == (
        "ultrasound",
        {"gauge": 25, "length_mm": 38.0},
    )
    assert details["checks"]["red_flags"] == dict.fromkeys(load_safety_rules().questions, False)
    assert details["checks"]["pain_duration_weeks"] == 52.0
    assert details["adverse_events"] == [
        {"kind": "vasovagal", "severity": "mild", "description": "Felt faint, recovered lying down"}
    ]
    assert details["aftercare"] == {
        "normal_activity": True,
        "expected_inflammation": False,
        "pain_advice": False,
        "when_to_call": True,
        "note": "Ice after 48 hours",
    }
    # The domain's re-check ran and found the course's consent.
    assert details["pre_check"]["consent_on_file"] is True
    assert details["pre_check"]["consent_id"] == world.consent.id
    assert "procedure.create" in events(session, "Procedure", row.id)
    # What was sent reads back (texts and displays are the server's additions).
    assert created["bodySite"][0]["coding"][0]["code"] == "knee-intra-articular"
    assert created["bodySite"][0]["text"].endswith("(right)")
    assert created["usedCode"] == [{"text": "dextrose 25.0% with lidocaine 1.0%, 6.5 mL"}]
    assert created["identifier"] == [{"system": EHR_ID, "value": "P-1"}]
    found = client.get(f"/fhir/Procedure?identifier={EHR_ID}|P-1", headers=world.headers).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [created["id"]]


def test_conditional_create_on_the_identifier_is_idempotent(
    client: TestClient, session: Session, world: World
) -> None:
    visit = injection_visit(session, world)
    headers = {**world.headers, "If-None-Exist": f"identifier={EHR_ID}|P-1"}
    first = client.post("/fhir/Procedure", json=session_of(world, visit), headers=headers)
    before = count(session, Procedure)
    second = client.post("/fhir/Procedure", json=session_of(world, visit), headers=headers)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert count(session, Procedure) == before


def test_read_put_back_changes_nothing_and_edits_move_the_draft_on(
    client: TestClient, session: Session, world: World
) -> None:
    signer = performer_headers(session, world)
    visit = injection_visit(session, world)
    created = client.post("/fhir/Procedure", json=session_of(world, visit), headers=signer).json()
    url = f"/fhir/Procedure/{created['id']}"
    read = client.get(url, headers=signer).json()
    r = client.put(url, json=read, headers=signer)
    assert r.status_code == 200, r.text
    assert without_meta(r.json()) == without_meta(read)
    assert r.json()["meta"]["versionId"] == read["meta"]["versionId"]  # nothing was written
    edited = {**read, "note": [{"text": "Tolerated well; iced."}]}
    r = client.put(url, json=edited, headers=signer)
    assert r.status_code == 200, r.text
    assert r.json()["note"] == [{"text": "Tolerated well; iced."}]
    assert int(r.json()["meta"]["versionId"]) == int(read["meta"]["versionId"]) + 1
    # completed signs it (the performer, consent on file, a re-check that allows it)
    signed = client.put(url, json={**r.json(), "status": "completed"}, headers=signer)
    assert signed.status_code == 200, signed.text
    assert signed.json()["status"] == "completed"
    check_resource(client, signer, signed.json())
    session.expire_all()
    row = session.get_one(Procedure, int(created["id"]))
    assert row.status == "signed" and row.signed_at is not None
    assert events(session, "Procedure", row.id)[-1] == "procedure.sign"
    # A signed record read and put back unchanged: 200, nothing written.
    again = client.put(url, json=signed.json(), headers=signer)
    assert again.status_code == 200, again.text
    assert again.json() == signed.json()


def test_a_signed_record_is_corrected_by_an_amendment_only(
    client: TestClient, session: Session, world: World
) -> None:
    signer = performer_headers(session, world)
    visit = injection_visit(session, world)
    body = session_of(world, visit, status="completed")
    created = client.post("/fhir/Procedure", json=body, headers=signer)
    assert created.status_code == 201, created.text
    signed = created.json()
    assert signed["status"] == "completed"
    url = f"/fhir/Procedure/{signed['id']}"
    changed = {**signed, "note": [{"text": "Actually 5 mL at the joint line."}]}
    issue = outcome(client.put(url, json=changed, headers=signer), 409, "conflict")
    assert "is signed and cannot be changed" in issue["diagnostics"]
    assert codes.PROLO_AMENDS_EXT in issue["diagnostics"] and fp.REASON_EXT in issue["diagnostics"]
    reopened = {**signed, "status": "in-progress"}
    outcome(client.put(url, json=reopened, headers=signer), 409, "conflict")
    assert client.get(url, headers=signer).json() == signed  # untouched
    # The amendment: the corrected record, pointing at the signed one, with a reason.
    amendment = {k: v for k, v in changed.items() if k not in ("id", "meta", "identifier")}
    amendment["status"] = "in-progress"
    amendment["extension"] = [
        *signed["extension"],
        {
            "url": codes.PROLO_AMENDS_EXT,
            "valueReference": {"reference": f"Procedure/{signed['id']}"},
        },
    ]
    no_reason = client.post("/fhir/Procedure", json=amendment, headers=signer)
    assert fp.REASON_EXT in outcome(no_reason, 422, "business-rule")["diagnostics"]
    amendment["extension"].append({"url": fp.REASON_EXT, "valueString": "Volume misrecorded"})
    r = client.post("/fhir/Procedure", json=amendment, headers=signer)
    assert r.status_code == 201, r.text
    made = r.json()
    check_resource(client, signer, made)
    assert made["id"] != signed["id"] and made["status"] == "in-progress"
    assert {"url": fp.REASON_EXT, "valueString": "Volume misrecorded"} in made["extension"]
    session.expire_all()
    new = session.get_one(Procedure, int(made["id"]))
    assert (new.amends_id, new.amendment_reason) == (int(signed["id"]), "Volume misrecorded")
    assert client.get(url, headers=signer).json() == signed  # the original stays as it was
    # The draft amendment round-trips, and signs.
    back = client.put(f"/fhir/Procedure/{made['id']}", json=made, headers=signer)
    assert back.status_code == 200 and back.json() == made
    done = client.put(
        f"/fhir/Procedure/{made['id']}", json={**made, "status": "completed"}, headers=signer
    )
    assert done.status_code == 200 and done.json()["status"] == "completed", done.text
    # A record is amended once: the chain goes on from the amendment.
    twice = client.post("/fhir/Procedure", json=amendment, headers=signer)
    assert f"amend record {made['id']}" in outcome(twice, 409, "conflict")["diagnostics"]


def test_a_signed_record_stored_before_every_part_was_recorded_round_trips(
    client: TestClient, session: Session, world: World
) -> None:
    """The fixture's signed record has only injectate and sites: put back as read, 200."""
    url = f"/fhir/Procedure/{world.procedure.id}"
    read = client.get(url, headers=world.headers).json()
    r = client.put(url, json=read, headers=world.headers)
    assert r.status_code == 200, r.text
    assert r.json() == read


def test_signing_needs_the_performer_and_a_consent_on_file(
    client: TestClient, session: Session, world: World
) -> None:
    visit = injection_visit(session, world)
    before = count(session, Procedure)
    body = session_of(world, visit, status="completed")
    # world.headers is a clinician whose login is no practitioner: not the performer.
    r = client.post("/fhir/Procedure", json=body, headers=world.headers)
    assert "only the practitioner who performed" in outcome(r, 403, "forbidden")["diagnostics"]
    assert count(session, Procedure) == before  # the draft went with the refusal
    signer = performer_headers(session, world)
    withdraw = client.get(f"/fhir/Consent/{world.consent.id}", headers=signer).json()
    r = client.put(
        f"/fhir/Consent/{world.consent.id}",
        json={**withdraw, "status": "inactive"},
        headers=signer,
    )
    assert r.status_code == 200, r.text
    r = client.post("/fhir/Procedure", json=body, headers=signer)
    assert "consent" in outcome(r, 409, "conflict")["diagnostics"]
    assert count(session, Procedure) == before


def test_no_procedure_for_a_visit_that_did_not_take_place(
    client: TestClient, session: Session, world: World
) -> None:
    signer = performer_headers(session, world)
    before = count(session, Procedure)
    for status in ("cancelled", "noshow"):
        visit = injection_visit(session, world)
        visit.status = status
        session.flush()
        for wanted in ("in-progress", "completed"):  # a draft, or signed at once
            body = session_of(world, visit, status=wanted)
            r = client.post("/fhir/Procedure", json=body, headers=signer)
            issue = outcome(r, 409, "conflict")
            assert f"appointment {visit.id}" in issue["diagnostics"]
            assert f"(status {status})" in issue["diagnostics"]
    assert count(session, Procedure) == before


def test_bad_procedures_name_the_problem_and_keep_nothing(
    client: TestClient, session: Session, world: World
) -> None:
    visit = injection_visit(session, world)
    good = session_of(world, visit)
    before = count(session, Procedure)

    def post(change: Any) -> Any:
        body = copy.deepcopy(good)
        change(body)
        return client.post("/fhir/Procedure", json=body, headers=world.headers)

    outcome(post(lambda b: b.pop("subject")), 400, "invalid")
    outcome(post(lambda b: b.update(status="banana")), 400, "code-invalid")
    outcome(post(lambda b: b.update(status="not-done")), 422, "business-rule")
    outcome(post(lambda b: b.update(code={"text": "Knee arthroscopy"})), 422, "business-rule")
    issue = outcome(
        post(lambda b: b.update(basedOn=[{"reference": "CarePlan/987654"}])), 422, "invalid"
    )
    assert issue["expression"] == ["Procedure.basedOn"]
    issue = outcome(
        post(
            lambda b: b["extension"][0].update(valueReference={"reference": "Appointment/987654"})
        ),
        422,
        "invalid",
    )
    assert issue["expression"] == [f"Procedure.extension('{codes.PROLO_APPOINTMENT_EXT}')"]
    issue = outcome(
        post(lambda b: b.update(subject={"reference": "Patient/987654"})), 422, "business-rule"
    )
    assert issue["expression"] == ["Procedure.subject"]
    outcome(
        post(lambda b: b.update(subject={"reference": f"Patient/{world.other.id}"})),
        422,
        "invalid",  # the appointment is another patient's
    )
    issue = outcome(
        post(lambda b: b["bodySite"][0]["coding"][0].update(code="shoulder-subacromial")),
        422,
        "invalid",
    )
    assert issue["expression"] == ["Procedure.bodySite"]
    issue = outcome(
        post(lambda b: b["bodySite"][0]["extension"][1]["valueQuantity"].update(value=9)),
        422,
        "business-rule",
    )
    assert "add up" in issue["diagnostics"]
    issue = outcome(
        post(
            lambda b: b.update(
                extension=[e for e in b["extension"] if e["url"] != fp.INJECTATE_EXT]
            )
        ),
        422,
        "business-rule",
    )
    assert issue["expression"] == [f"Procedure.extension('{fp.INJECTATE_EXT}')"]
    issue = outcome(
        post(
            lambda b: b["bodySite"][0]["extension"][1]["valueQuantity"].update(code="L", unit="L")
        ),
        422,
        "business-rule",
    )
    assert "mL" in issue["diagnostics"]
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
    outcome(post(lambda b: b.update(performedDateTime=later)), 422, "business-rule")
    # The fixture's appointment already has its record: amend that one instead.
    taken = post(
        lambda b: b["extension"][0].update(
            valueReference={"reference": f"Appointment/{world.appointment.id}"}
        )
    )
    assert "amend that one" in outcome(taken, 409, "conflict")["diagnostics"]
    assert count(session, Procedure) == before


def test_who_may_write_procedures(client: TestClient, session: Session, world: World) -> None:
    visit = injection_visit(session, world)
    body = session_of(world, visit)
    front_desk = fhir_token(
        session, make_user(session, world.clinic, "front_desk"), "fhir", "write"
    )
    patient = fhir_token(
        session, make_user(session, world.clinic, "patient", patient=world.patient), "fhir", "write"
    )
    before = count(session, Procedure)
    for headers in (front_desk, patient):
        outcome(client.post("/fhir/Procedure", json=body, headers=headers), 403, "forbidden")
    read = client.get(f"/fhir/Procedure/{world.procedure.id}", headers=world.headers).json()
    url = f"/fhir/Procedure/{world.procedure.id}"
    for headers in (front_desk, patient):
        outcome(client.put(url, json=read, headers=headers), 403, "forbidden")
    outcome(client.get(url, headers=front_desk), 403, "forbidden")  # no clinical notes
    read_only = fhir_token(session, world.clinician, "fhir")
    outcome(client.post("/fhir/Procedure", json=body, headers=read_only), 403, "forbidden")
    # Another clinic's clinician: the record is not theirs (404), nor is the patient (422).
    elsewhere = fhir_token(session, make_user(session, make_clinic(session), "clinician"))
    outcome(client.put(url, json=read, headers=elsewhere), 404, "not-found")
    issue = outcome(
        client.post("/fhir/Procedure", json=body, headers=elsewhere), 422, "business-rule"
    )
    assert issue["expression"] == ["Procedure.subject"]
    assert count(session, Procedure) == before
    # The patient reads their own record, and no one else's.
    assert client.get(url, headers=patient).status_code == 200
    theirs = fhir_token(
        session, make_user(session, world.clinic, "patient", patient=world.other), "fhir"
    )
    outcome(client.get(url, headers=theirs), 404, "not-found")


# -- Consent ------------------------------------------------------------------------------


def planned_course(
    session: Session, world: World, patient_id: int | None = None
) -> TreatmentCourse:
    course = TreatmentCourse(
        clinic_id=world.clinic.id,
        patient_id=patient_id or world.other.id,
        condition_id="knee-osteoarthritis",
        status="planned",
        planned_sessions=3,
        interval_weeks_min=4,
        interval_weeks_max=4,
        injectate="dextrose 25%",
        created_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=2),
    )
    session.add(course)
    session.flush()
    return course


def consent(patient: str, course: str, **overrides: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Consent",
        "extension": [{"url": STATEMENT_EXT, "valueCode": s.id} for s in V1.statements],
        "identifier": [{"system": "https://ehr.example.org/consent", "value": "C-9"}],
        "status": "active",
        "scope": {"coding": [{"system": SCOPE_SYSTEM, "code": "treatment"}]},
        "category": [{"coding": [{"system": codes.LOINC, "code": "59284-0"}]}],
        "patient": {"reference": patient},
        "dateTime": (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
        .replace(microsecond=0)
        .isoformat(),
        "performer": [{"reference": patient}],
        "policy": [{"uri": f"{POLICY}{CURRENT_VERSION}"}],
        "provision": {
            "type": "permit",
            "data": [{"meaning": "related", "reference": {"reference": course}}],
        },
    }
    resource.update(overrides)
    return resource


def test_a_consent_is_recorded_round_trips_and_is_withdrawn(
    client: TestClient, session: Session, world: World
) -> None:
    course = planned_course(session, world)
    body = consent(f"Patient/{world.other.id}", f"CarePlan/{course.id}")
    r = client.post("/fhir/Consent", json=body, headers=world.headers)
    assert r.status_code == 201, r.text
    created = r.json()
    check_resource(client, world.headers, created)
    session.expire_all()
    row = session.get_one(Consent, int(created["id"]))
    assert (row.course_id, row.patient_id, row.text_version) == (
        course.id,
        world.other.id,
        CURRENT_VERSION,
    )
    assert row.items == [s.id for s in V1.statements]
    assert row.recorded_by_user_id == world.clinician.id and row.withdrawn_at is None
    assert created["dateTime"] == body["dateTime"].replace("+00:00", "Z")
    assert created["identifier"] == body["identifier"]
    assert "consent.create" in events(session, "Consent", row.id)
    # Posted again with its identifier as the condition: the same consent, nothing new.
    before = count(session, Consent)
    conditional = {
        **world.headers,
        "If-None-Exist": "identifier=https://ehr.example.org/consent|C-9",
    }
    again = client.post("/fhir/Consent", json=body, headers=conditional)
    assert (again.status_code, again.json()["id"]) == (200, created["id"])
    assert count(session, Consent) == before
    url = f"/fhir/Consent/{created['id']}"
    same = client.put(url, json=created, headers=world.headers)
    assert same.status_code == 200 and same.json() == created, same.text
    edited = {**created, "dateTime": "2026-01-01T00:00:00Z"}
    issue = outcome(client.put(url, json=edited, headers=world.headers), 409, "conflict")
    assert (
        "Consent.dateTime" in issue["diagnostics"]
        and "record a new Consent" in issue["diagnostics"]
    )
    fewer = {**created, "extension": created["extension"][:2]}
    outcome(client.put(url, json=fewer, headers=world.headers), 409, "conflict")
    r = client.put(url, json={**created, "status": "inactive"}, headers=world.headers)
    assert r.status_code == 200, r.text
    withdrawn = r.json()
    check_resource(client, world.headers, withdrawn)
    assert withdrawn["status"] == "inactive" and "end" in withdrawn["provision"]["period"]
    assert int(withdrawn["meta"]["versionId"]) == int(created["meta"]["versionId"]) + 1
    session.expire_all()
    assert session.get_one(Consent, row.id).withdrawn_at is not None
    assert events(session, "Consent", row.id)[-1] == "consent.withdraw"
    again = client.put(url, json={**withdrawn, "status": "active"}, headers=world.headers)
    assert "stays withdrawn" in outcome(again, 409, "conflict")["diagnostics"]
    assert client.put(url, json=withdrawn, headers=world.headers).json() == withdrawn


def test_bad_consents_name_the_problem_and_keep_nothing(
    client: TestClient, session: Session, world: World
) -> None:
    course = planned_course(session, world)
    good = consent(f"Patient/{world.other.id}", f"CarePlan/{course.id}")
    before = count(session, Consent)

    def post(**overrides: Any) -> Any:
        return client.post("/fhir/Consent", json={**good, **overrides}, headers=world.headers)

    issue = outcome(post(extension=good["extension"][:3]), 422, "invalid")
    assert "has not acknowledged" in issue["diagnostics"]
    assert issue["expression"] == ["Consent.extension"]
    issue = outcome(post(policy=[{"uri": f"{POLICY}1999-v0"}]), 422, "invalid")
    assert issue["expression"] == ["Consent.policy"]
    outcome(post(policy=[{"uri": "https://example.org/our-form"}]), 422, "business-rule")
    outcome(post(status="rejected"), 422, "business-rule")
    outcome(post(status="inactive"), 422, "business-rule")
    outcome(post(status="banana"), 400, "code-invalid")
    outcome(
        post(scope={"coding": [{"system": SCOPE_SYSTEM, "code": "research"}]}), 422, "business-rule"
    )
    outcome(post(patient={"reference": "Patient/987654"}), 422, "business-rule")
    outcome(
        post(
            provision={
                "type": "permit",
                "data": [{"meaning": "related", "reference": {"reference": "CarePlan/987654"}}],
            }
        ),
        422,
        "business-rule",
    )
    other_course = f"CarePlan/{world.course.id}"  # the first patient's course
    outcome(
        post(
            provision={
                "type": "permit",
                "data": [{"meaning": "related", "reference": {"reference": other_course}}],
            }
        ),
        422,
        "business-rule",
    )
    outcome(
        post(
            provision={
                "type": "deny",
                **{k: v for k, v in good["provision"].items() if k != "type"},
            }
        ),
        422,
        "business-rule",
    )
    outcome(
        post(performer=[{"reference": f"Practitioner/{world.practitioner.id}"}]),
        422,
        "business-rule",
    )
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).isoformat()
    assert "future" in outcome(post(dateTime=later), 422, "invalid")["diagnostics"]
    no_scope = {k: v for k, v in good.items() if k != "scope"}
    r = client.post("/fhir/Consent", json=no_scope, headers=world.headers)
    assert outcome(r, 400, "invalid")["expression"] == ["Consent.scope"]
    course.status, course.stop_reason = "stopped", "patient_choice"
    session.flush()
    outcome(post(), 409, "conflict")  # a stopped course takes no consent
    assert count(session, Consent) == before


def test_who_may_record_a_consent(client: TestClient, session: Session, world: World) -> None:
    course = planned_course(session, world)
    body = consent(f"Patient/{world.other.id}", f"CarePlan/{course.id}")
    before = count(session, Consent)
    front_desk = fhir_token(
        session, make_user(session, world.clinic, "front_desk"), "fhir", "write"
    )
    patient = fhir_token(
        session, make_user(session, world.clinic, "patient", patient=world.other), "fhir", "write"
    )
    for headers in (front_desk, patient):
        outcome(client.post("/fhir/Consent", json=body, headers=headers), 403, "forbidden")
    read = client.get(f"/fhir/Consent/{world.consent.id}", headers=world.headers).json()
    withdraw = {**read, "status": "inactive"}
    for headers in (front_desk, patient):
        r = client.put(f"/fhir/Consent/{world.consent.id}", json=withdraw, headers=headers)
        outcome(r, 403, "forbidden")
    assert count(session, Consent) == before
    r = client.post("/fhir/Consent", json=body, headers=world.admin_headers)
    assert r.status_code == 201, r.text


def test_a_new_consent_supersedes_the_older_which_never_counts_again(
    client: TestClient, session: Session, world: World
) -> None:
    """Withdrawing the newest consent leaves none on file: the older one stays inactive."""
    signer = performer_headers(session, world)
    body = consent(f"Patient/{world.patient.id}", f"CarePlan/{world.course.id}")
    r = client.post("/fhir/Consent", json=body, headers=signer)
    assert r.status_code == 201, r.text
    newer = r.json()
    older_url = f"/fhir/Consent/{world.consent.id}"
    older = client.get(older_url, headers=signer).json()
    assert older["status"] == "inactive" and "end" in older["provision"]["period"]
    assert "consent.supersede" in events(session, "Consent", world.consent.id)
    active = client.get(
        f"/fhir/Consent?data=CarePlan/{world.course.id}&status=active", headers=signer
    ).json()
    assert [e["resource"]["id"] for e in active.get("entry", [])] == [newer["id"]]
    again = client.put(older_url, json={**older, "status": "active"}, headers=signer)
    assert "superseded" in outcome(again, 409, "conflict")["diagnostics"]
    # inactive as stored: nothing written
    assert client.put(older_url, json=older, headers=signer).json() == older
    r = client.put(
        f"/fhir/Consent/{newer['id']}", json={**newer, "status": "inactive"}, headers=signer
    )
    assert r.status_code == 200, r.text
    session.expire_all()
    assert session.get_one(Consent, world.consent.id).superseded_at is not None
    assert client.get(older_url, headers=signer).json()["status"] == "inactive"
    active = client.get(
        f"/fhir/Consent?data=CarePlan/{world.course.id}&status=active", headers=signer
    ).json()
    assert not active.get("entry")
    # a procedure cannot be signed on the strength of the superseded consent
    visit = injection_visit(session, world)
    before = count(session, Procedure)
    r = client.post(
        "/fhir/Procedure", json=session_of(world, visit, status="completed"), headers=signer
    )
    assert "consent" in outcome(r, 409, "conflict")["diagnostics"]
    assert count(session, Procedure) == before


def test_a_consent_signed_before_the_one_on_file_is_refused(
    client: TestClient, session: Session, world: World
) -> None:
    body = consent(f"Patient/{world.patient.id}", f"CarePlan/{world.course.id}")
    on_file = client.post("/fhir/Consent", json=body, headers=world.headers).json()
    before = count(session, Consent)
    earlier = dt.datetime.fromisoformat(body["dateTime"]) - dt.timedelta(minutes=30)
    r = client.post(
        "/fhir/Consent",
        json={**body, "identifier": [], "dateTime": earlier.isoformat()},
        headers=world.headers,
    )
    issue = outcome(r, 422, "invalid")
    assert f"before the consent on file (consent {on_file['id']}" in issue["diagnostics"]
    assert count(session, Consent) == before
    session.expire_all()
    assert session.get_one(Consent, int(on_file["id"])).superseded_at is None


# -- Bundles and the CapabilityStatement ---------------------------------------------------


COURSE_URL = "urn:uuid:5b7e1f0a-3c2d-4e8f-9a1b-2c3d4e5f6a7b"


def course_consent_session(world: World) -> dict[str, Any]:
    """A transaction: plan a course, record its consent and a signed session, by urn:uuid."""
    plan = {
        "resourceType": "CarePlan",
        "status": "active",
        "intent": "plan",
        "subject": {"reference": f"Patient/{world.other.id}"},
        "category": [codes.concept(codes.PROLO_CONDITION, "knee-osteoarthritis")],
        "author": {"reference": f"Practitioner/{world.practitioner.id}"},
        "activity": [
            {
                "detail": {
                    "status": "not-started",
                    "scheduledTiming": {
                        "repeat": {"count": 3, "period": 4, "periodMax": 6, "periodUnit": "wk"}
                    },
                    "productCodeableConcept": {"text": "Dextrose 25%"},
                }
            }
        ],
    }
    treatment = procedure(
        world.other.id,
        world.practitioner.id,
        course=COURSE_URL,
        appointment=None,
        status="completed",
    )
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {  # listed first: the server writes it after the course and the consent
                "fullUrl": "urn:uuid:0d1c2b3a-4f5e-4d6c-8b7a-9e8f7a6b5c4d",
                "resource": treatment,
                "request": {"method": "POST", "url": "Procedure"},
            },
            {
                "fullUrl": "urn:uuid:1a2b3c4d-5e6f-4a8b-9c0d-1e2f3a4b5c6d",
                "resource": consent(f"Patient/{world.other.id}", COURSE_URL),
                "request": {"method": "POST", "url": "Consent"},
            },
            {
                "fullUrl": COURSE_URL,
                "resource": plan,
                "request": {"method": "POST", "url": "CarePlan"},
            },
        ],
    }


def test_a_transaction_plans_consents_and_documents_in_one_go(
    client: TestClient, session: Session, world: World
) -> None:
    signer = performer_headers(session, world)
    r = client.post("/fhir", json=course_consent_session(world), headers=signer)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert [e["response"]["status"] for e in answer["entry"]] == ["201 Created"] * 3
    treatment, given, plan = (e["resource"] for e in answer["entry"])
    check_bundle(
        client,
        signer,
        {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": x} for x in (treatment, given, plan)],
        },
    )
    assert treatment["basedOn"] == [{"reference": f"CarePlan/{plan['id']}"}]
    assert treatment["status"] == "completed"
    assert given["provision"]["data"][0]["reference"] == {"reference": f"CarePlan/{plan['id']}"}
    session.expire_all()
    # Signing the first session moved the planned course on.
    assert session.get_one(TreatmentCourse, int(plan["id"])).status == "active"


def test_a_failing_entry_rolls_the_whole_transaction_back(
    client: TestClient, session: Session, world: World
) -> None:
    signer = performer_headers(session, world)
    before = [count(session, m) for m in (TreatmentCourse, Consent, Procedure)]
    bundle = course_consent_session(world)
    bundle["entry"][0]["resource"]["bodySite"][0]["coding"][0]["code"] = "no-such-site"
    r = client.post("/fhir", json=bundle, headers=signer)
    issue = outcome(r, 422, "invalid")
    assert (
        issue["diagnostics"].startswith("Bundle.entry[0]")
        and "no-such-site" in issue["diagnostics"]
    )
    assert [count(session, m) for m in (TreatmentCourse, Consent, Procedure)] == before
    dangling = course_consent_session(world)
    dangling["entry"][1]["resource"]["provision"]["data"][0]["reference"] = {
        "reference": "urn:uuid:00000000-0000-4000-8000-000000000000"
    }
    r = client.post("/fhir", json=dangling, headers=signer)
    assert "not in this Bundle" in outcome(r, 422, "business-rule")["diagnostics"]
    assert [count(session, m) for m in (TreatmentCourse, Consent, Procedure)] == before


@pytest.mark.parametrize("type_name", ["Procedure", "Consent"])
def test_the_capability_statement_lists_the_writes(client: TestClient, type_name: str) -> None:
    statement = client.get("/fhir/metadata").json()
    entry = next(r for r in statement["rest"][0]["resource"] if r["type"] == type_name)
    assert {i["code"] for i in entry["interaction"]} == {"read", "search-type", "create", "update"}
    assert entry["conditionalCreate"] is True
    assert "identifier" in {p["name"] for p in entry["searchParam"]}
