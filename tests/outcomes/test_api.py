"""The outcomes API, pages and research export, through the app, on a synthetic clinic."""

from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile

import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from prolo.clinic.models import Clinic
from prolo.courses.models import TreatmentCourse
from prolo.outcomes.export import REDCAP_COLUMNS
from prolo.outcomes.mme import CONVERSION_FACTORS
from prolo.outcomes.models import CourseFollowUp
from prolo.outcomes.schemas import Drug
from prolo.patients.models import Patient
from prolo.security.models import AuditEvent
from prolo.synth import SynthConfig, generate
from tests.factories import make_clinic, make_patient, make_user, token_for

TODAY = dt.date(2026, 6, 1)


@pytest.fixture
def clinic(session: Session) -> Clinic:
    summary = generate(session, SynthConfig(patients=30, seed=11, today=TODAY, calendar=False))
    return session.get_one(Clinic, summary.clinic_id)


def _headers(session: Session, clinic: Clinic, role: str) -> dict[str, str]:
    patient = None
    if role == "patient":
        patient = session.scalars(select(Patient).where(Patient.clinic_id == clinic.id)).first()
        patient = patient or make_patient(session, clinic)
    return token_for(session, make_user(session, clinic, role, patient=patient))


def test_a_clinician_gets_the_report_with_every_figure(
    client: TestClient, session: Session, clinic: Clinic
) -> None:
    response = client.get("/api/outcomes/report", headers=_headers(session, clinic, "clinician"))
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["courses"]["courses"] == 30
    pain = next(i for i in report["instruments"] if i["id"] == "pain-nrs")
    assert [r["timepoint"] for r in pain["follow_ups"]] == [
        "week_6",
        "month_3",
        "month_6",
        "month_12",
    ]
    week6 = pain["follow_ups"][0]
    assert week6["change"]["n"] + week6["missing"] == week6["eligible"]
    assert report["medicine"][0]["recorded"] > 0  # synth writes baseline facts
    assert report["flares"]["available"] in (True, False)
    assert report["evidence"] and all("svg" not in e for e in report["evidence"])
    audit = session.scalars(select(AuditEvent).where(AuditEvent.event == "outcomes.report")).all()
    assert audit and audit[-1].detail == "30 courses"


def test_a_filter_that_matches_nothing_says_so(
    client: TestClient, session: Session, clinic: Clinic
) -> None:
    response = client.get(
        "/api/outcomes/report",
        params={"started_from": "2090-01-01"},
        headers=_headers(session, clinic, "admin"),
    )
    assert response.status_code == 200
    assert response.json()["empty"] is True
    bad = client.get(
        "/api/outcomes/report",
        params={"started_from": "not-a-date"},
        headers=_headers(session, clinic, "admin"),
    )
    assert bad.status_code == 422


@pytest.mark.parametrize("role", ["front_desk", "patient", "researcher"])
def test_other_roles_may_not_read_the_report(
    client: TestClient, session: Session, clinic: Clinic, role: str
) -> None:
    response = client.get("/api/outcomes/report", headers=_headers(session, clinic, role))
    assert response.status_code == 403


def test_the_report_covers_only_the_callers_clinic(
    client: TestClient, session: Session, clinic: Clinic
) -> None:
    other = make_clinic(session)
    response = client.get("/api/outcomes/report", headers=_headers(session, other, "clinician"))
    assert response.status_code == 200
    assert response.json()["courses"]["courses"] == 0


def test_follow_up_facts_compute_mme_and_stay_in_the_clinic(
    client: TestClient, session: Session, clinic: Clinic
) -> None:
    course = session.scalars(
        select(TreatmentCourse).where(TreatmentCourse.clinic_id == clinic.id).limit(1)
    ).one()
    headers = _headers(session, clinic, "clinician")
    body = {
        "timepoint": "month_3",
        "surgery_planned": False,
        "surgery_done": False,
        "pain_medicine_use": True,
        # CDC worked examples: oxycodone 20 mg/day = 30 MME; fentanyl 25 mcg/hr = 60 MME.
        "opioids": [
            {"drug": "oxycodone", "daily_dose": 20},
            {"drug": "fentanyl_transdermal", "daily_dose": 25},
        ],
    }
    response = client.put(
        f"/api/outcomes/courses/{course.id}/follow-ups", json=body, headers=headers
    )
    assert response.status_code == 200, response.text
    saved = response.json()
    assert saved["opioid_mme_per_day"] == pytest.approx(90.0)
    assert saved["opioid_use"] is True
    listed = client.get(f"/api/outcomes/courses/{course.id}/follow-ups", headers=headers).json()
    assert any(r["timepoint"] == "month_3" and r["opioid_mme_per_day"] == 90.0 for r in listed)
    bad = client.put(
        f"/api/outcomes/courses/{course.id}/follow-ups",
        json={"timepoint": "baseline", "surgery_done": True},
        headers=headers,
    )
    assert bad.status_code == 422
    unknown = client.put(
        f"/api/outcomes/courses/{course.id}/follow-ups",
        json={"timepoint": "week_6", "opioids": [{"drug": "heroin", "daily_dose": 1}]},
        headers=headers,
    )
    assert unknown.status_code == 422
    stranger = _headers(session, make_clinic(session), "clinician")
    hidden = client.get(f"/api/outcomes/courses/{course.id}/follow-ups", headers=stranger)
    assert hidden.status_code == 404


def test_the_api_drug_list_is_the_cdc_table() -> None:
    assert set(Drug.__args__) == set(CONVERSION_FACTORS)


def _unzip(content: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(content)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def test_the_research_export_is_de_identified(
    client: TestClient, session: Session, clinic: Clinic
) -> None:
    old = session.scalars(select(Patient).where(Patient.clinic_id == clinic.id).limit(1)).one()
    old.birth_date = dt.date(1925, 3, 1)  # 101 years old: must appear as 90+
    session.flush()
    headers = _headers(session, clinic, "researcher")
    response = client.get("/api/research/export", params={"format": "csv"}, headers=headers)
    assert response.status_code == 200
    files = _unzip(response.content)
    assert set(files) == {"records.csv", "data_dictionary.csv", "README.txt"}
    text = files["records.csv"].decode()
    patients = session.scalars(select(Patient).where(Patient.clinic_id == clinic.id)).all()
    for p in patients:
        for identifier in (p.family_name, p.email, p.mrn, p.phone, p.postal_code, p.address_line):
            assert identifier and identifier not in text
        assert p.birth_date.isoformat() not in text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 30
    assert "90+" in {r["age_at_start"] for r in rows}
    assert all(r["age_at_start"] == "90+" or int(r["age_at_start"]) <= 89 for r in rows)
    assert sorted(int(r["record_id"]) for r in rows) == list(range(1, 31))
    # Dates are shifted, and the shift keeps each course's real start-to-answer intervals.
    started = {
        c.id: c.started_on
        for c in session.scalars(
            select(TreatmentCourse).where(TreatmentCourse.clinic_id == clinic.id)
        )
    }
    real_starts = {d.isoformat() for d in started.values() if d}
    shifted = [r["start_date_shifted"] for r in rows if r["start_date_shifted"]]
    assert shifted and sum(s in real_starts for s in shifted) < len(shifted)
    assert any(r["pain_nrs_week_6_day"] for r in rows)
    dictionary = list(csv.reader(io.StringIO(files["data_dictionary.csv"].decode())))
    assert tuple(dictionary[0]) == REDCAP_COLUMNS and len(REDCAP_COLUMNS) == 18
    assert [row[0] for row in dictionary[1:]] == list(rows[0].keys())
    assert all(row[10] == "" for row in dictionary[1:])  # no field is an identifier
    events = session.scalars(select(AuditEvent).where(AuditEvent.event == "research.export")).all()
    assert events and events[-1].detail == "30 de-identified records as csv"


def test_the_parquet_export_matches_the_dictionary(
    client: TestClient, session: Session, clinic: Clinic
) -> None:
    headers = _headers(session, clinic, "researcher")
    response = client.get("/api/research/export", params={"format": "parquet"}, headers=headers)
    files = _unzip(response.content)
    table = pq.read_table(io.BytesIO(files["records.parquet"]))
    dictionary = list(csv.reader(io.StringIO(files["data_dictionary.csv"].decode())))
    assert table.column_names == [row[0] for row in dictionary[1:]]
    assert table.num_rows == 30


@pytest.mark.parametrize("role", ["clinician", "admin", "front_desk", "patient"])
def test_only_researchers_export(
    client: TestClient, session: Session, clinic: Clinic, role: str
) -> None:
    response = client.get("/api/research/export", headers=_headers(session, clinic, role))
    assert response.status_code == 403


def test_surgery_and_medicine_come_from_the_follow_up_table(
    client: TestClient, session: Session, clinic: Clinic
) -> None:
    facts = session.scalars(
        select(CourseFollowUp).where(CourseFollowUp.clinic_id == clinic.id)
    ).all()
    planned = {f.course_id for f in facts if f.timepoint == "baseline" and f.surgery_planned}
    report = client.get(
        "/api/outcomes/report", headers=_headers(session, clinic, "clinician")
    ).json()
    surgery = report["surgery"]
    assert surgery["planned_at_baseline"] == len(planned)
    assert surgery["done_by_12_months"] + surgery["avoided_at_12_months"] + surgery[
        "unknown"
    ] == len(planned)
    baseline = report["medicine"][0]
    assert baseline["recorded"] == sum(1 for f in facts if f.timepoint == "baseline")


def test_adverse_events_count_the_newest_signed_record_of_each_session(
    client: TestClient, session: Session, clinic: Clinic
) -> None:
    from prolo.courses.models import Procedure
    from prolo.db import utcnow

    course = session.scalars(
        select(TreatmentCourse).where(
            TreatmentCourse.clinic_id == clinic.id, TreatmentCourse.practitioner_id.is_not(None)
        )
    ).first()
    assert course is not None and course.practitioner_id is not None
    signer = make_user(session, clinic, "clinician")
    common = {
        "clinic_id": clinic.id,
        "patient_id": course.patient_id,
        "course_id": course.id,
        "practitioner_id": course.practitioner_id,
        "performed_at": utcnow(),
        "status": "signed",
        "signed_at": utcnow(),
        "signed_by_user_id": signer.id,
    }
    original = Procedure(**common, details={"adverse_events": [{"kind": "vasovagal"}]})
    session.add(original)
    session.flush()
    amended = Procedure(
        **common,
        amends_id=original.id,
        amendment_reason="wrong kind",
        details={"adverse_events": [{"kind": "bruising"}, {"kind": "pain_flare"}]},
    )
    draft = Procedure(
        **{**common, "status": "draft", "signed_at": None, "signed_by_user_id": None},
        details={"adverse_events": [{"kind": "infection"}]},
    )
    session.add_all([amended, draft])
    session.flush()
    report = client.get(
        "/api/outcomes/report", headers=_headers(session, clinic, "clinician")
    ).json()
    events = report["adverse_events"]
    assert events["available"] is True
    assert events["by_kind"] == {"bruising": 1, "pain_flare": 1} and events["total"] == 2


def test_the_app_answers_other_requests_while_a_report_runs(
    client: TestClient, session: Session, clinic: Clinic, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading
    import time

    from prolo.outcomes import engine

    started = threading.Event()
    real = engine.compute

    def slow_compute(*args: object, **kwargs: object) -> object:
        started.set()
        time.sleep(1.5)  # a long report, computed in the thread pool
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(engine, "compute", slow_compute)
    headers = _headers(session, clinic, "clinician")
    result: dict[str, int] = {}
    worker = threading.Thread(
        target=lambda: result.update(
            status=client.get("/api/outcomes/report", headers=headers).status_code
        )
    )
    worker.start()
    assert started.wait(10)
    t0 = time.perf_counter()
    assert client.get("/health").status_code == 200
    assert time.perf_counter() - t0 < 1.0  # answered while the report was still running
    assert worker.is_alive()
    worker.join(30)
    assert result["status"] == 200
