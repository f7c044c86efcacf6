"""Log in as the demo clinician in a real browser and reach the home page."""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import login

pytestmark = pytest.mark.browser


def test_clinician_logs_in_and_sees_home(page) -> None:
    login(page, "clinician")
    page.wait_for_url(re.compile(r".*/home$"))
    assert page.get_by_role("heading", level=1).inner_text().startswith("Good day")
    assert "Riverside Musculoskeletal Clinic" in page.content()
    page.get_by_role("link", name="Patients").click()
    page.wait_for_url(re.compile(r".*/patients$"))
    rows = page.locator("table tbody tr")
    assert rows.count() == 25


def test_wrong_password_shows_a_message(page) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill("clinician@demo.prolo.example.org")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Log in").click()
    assert page.get_by_role("alert").inner_text() == "The email or password is not right."


def test_registering_a_patient_shows_errors_next_to_fields(page) -> None:
    login(page, "clinician")
    page.goto("/patients/new")
    page.get_by_label("Given name").fill("Ana")
    page.get_by_role("button", name="Register patient").click()
    error = page.locator("#f-family_name-error")
    assert error.is_visible()
    page.get_by_label("Family name").fill("Silva")
    page.get_by_label("Date of birth").fill("1970-03-04")
    page.get_by_label("Sex").select_option("female")
    page.get_by_role("button", name="Register patient").click()
    page.wait_for_url(re.compile(r".*/patients/\d+$"))
    assert page.get_by_role("heading", level=1).inner_text() == "Silva, Ana"
