"""The outcomes dashboard, its HTML and PDF reports, and the research page."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from prolo.clinic.models import Clinic
from prolo.synth import SynthConfig, generate
from tests.factories import PASSWORD, make_patient, make_user


@pytest.fixture
def clinic(session: Session) -> Clinic:
    summary = generate(
        session, SynthConfig(patients=25, seed=5, today=dt.date(2026, 6, 1), calendar=False)
    )
    return session.get_one(Clinic, summary.clinic_id)


def _login(client: TestClient, session: Session, clinic: Clinic, role: str) -> None:
    patient = make_patient(session, clinic) if role == "patient" else None
    user = make_user(session, clinic, role, patient=patient)
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    response = client.post(
        "/login",
        data={"email": user.email, "password": PASSWORD, "csrf_token": token.group(1)},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text


def test_the_dashboard_shows_figures_pictures_and_evidence(
    client: TestClient, session: Session, clinic: Clinic
) -> None:
    _login(client, session, clinic, "clinician")
    page = client.get("/outcomes")
    assert page.status_code == 200
    html = page.text
    assert "Pain NRS: change from baseline" in html
    assert html.count("<svg") >= 3 and 'role="img"' in html
    assert "Missing follow-ups." in html
    assert "Your results beside the published trials" in html
    assert "How these figures were computed: from " in html  # kept facts or raw rows
    assert "<script>" not in html and ' style="' not in html  # the CSP forbids inline code
    narrowed = client.get("/outcomes", params={"started_from": "2090-01-01"})
    assert "No treatment course matches this selection" in narrowed.text
    # The published evidence for a chosen condition shows even with no courses of its own.
    knee = client.get(
        "/outcomes",
        params={"started_from": "2090-01-01", "condition": "knee-osteoarthritis"},
    )
    assert "No treatment course matches this selection" in knee.text
    assert "Your results beside the published trials" in knee.text
    assert "Pooled mean difference" in knee.text
    wrong = client.get("/outcomes", params={"started_from": "31/31/2020"})
    assert wrong.status_code == 422 and 'aria-invalid="true"' in wrong.text


def test_the_reports_download_as_html_and_pdf(
    client: TestClient, session: Session, clinic: Clinic
) -> None:
    _login(client, session, clinic, "admin")
    html = client.get("/outcomes/report.html")
    assert html.status_code == 200 and "attachment" in html.headers["content-disposition"]
    assert "<style>" in html.text and "<svg" in html.text
    pdf = client.get("/outcomes/report.pdf")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF") and len(pdf.content) > 5000


def test_front_desk_cannot_open_the_dashboard(
    client: TestClient, session: Session, clinic: Clinic
) -> None:
    _login(client, session, clinic, "front_desk")
    assert client.get("/outcomes").status_code == 403
    assert client.get("/research").status_code == 403


def test_the_research_page_offers_the_downloads(
    client: TestClient, session: Session, clinic: Clinic
) -> None:
    _login(client, session, clinic, "researcher")
    page = client.get("/research")
    assert page.status_code == 200
    assert "/research/export?format=parquet" in page.text and "Safe Harbor" in page.text
    download = client.get("/research/export", params={"format": "csv"})
    assert download.status_code == 200 and download.content[:2] == b"PK"


def test_a_clinician_records_follow_up_facts_on_the_page(
    client: TestClient, session: Session, clinic: Clinic
) -> None:
    from sqlalchemy import select

    from prolo.courses.models import TreatmentCourse
    from prolo.outcomes.models import CourseFollowUp

    course = session.scalars(
        select(TreatmentCourse).where(TreatmentCourse.clinic_id == clinic.id).limit(1)
    ).one()
    _login(client, session, clinic, "clinician")
    page = client.get(f"/outcomes/courses/{course.id}/follow-ups")
    assert page.status_code == 200 and "Record a timepoint" in page.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    form = {
        "csrf_token": token.group(1),
        "timepoint": "month_6",
        "surgery_planned": "no",
        "surgery_done": "yes",
        "pain_medicine_use": "yes",
        "drug_1": "tramadol",
        "dose_1": "200",  # 200 mg/day x 0.2 = 40 MME
        "drug_2": "",
        "dose_2": "",
    }
    saved = client.post(
        f"/outcomes/courses/{course.id}/follow-ups", data=form, follow_redirects=False
    )
    assert saved.status_code == 303, saved.text
    row = session.scalars(
        select(CourseFollowUp).where(
            CourseFollowUp.course_id == course.id, CourseFollowUp.timepoint == "month_6"
        )
    ).one()
    assert (row.surgery_done, row.opioid_use, row.opioid_mme_per_day) == (True, True, 40.0)
    wrong = client.post(
        f"/outcomes/courses/{course.id}/follow-ups",
        data={**form, "dose_1": "lots"},
        follow_redirects=False,
    )
    assert wrong.status_code == 422
    assert 'id="f-dose_1-error"' in wrong.text and 'aria-invalid="true"' in wrong.text
    baseline_done = client.post(
        f"/outcomes/courses/{course.id}/follow-ups",
        data={**form, "timepoint": "baseline"},
        follow_redirects=False,
    )
    assert baseline_done.status_code == 422 and "not at baseline" in baseline_done.text
