"""The patient portal in a real browser: a clinician asks for a questionnaire, the demo
patient logs in, answers it (after a validation message next to the question) and sees
the score."""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import login

pytestmark = pytest.mark.browser

NRS = "Pain intensity numeric rating scale (0-10)"


def test_patient_answers_a_due_questionnaire_and_sees_the_score(browser, live_server) -> None:
    staff = browser.new_context(base_url=live_server)
    page = staff.new_page()
    page.set_default_timeout(15_000)
    login(page, "clinician")
    page.wait_for_url(re.compile(r".*/home$"))
    page.goto("/patients/1/outcomes")  # the demo patient account is the first patient
    assert page.get_by_role("heading", level=1).inner_text() == "Outcomes"
    page.get_by_label("Ask the patient to answer now").select_option(label=NRS)
    page.get_by_role("button", name="Send request").click()
    page.wait_for_url(re.compile(r".*/outcomes\?requested=1"))
    assert page.get_by_role("status").inner_text().startswith("The patient will see")
    staff.close()

    patient = browser.new_context(base_url=live_server)
    page = patient.new_page()
    page.set_default_timeout(15_000)
    login(page, "patient")
    page.wait_for_url(re.compile(r".*/portal$"))
    todo = page.locator("section", has=page.get_by_role("heading", name="To do now"))
    request = todo.locator("li", has_text="Requested by your clinic").filter(has_text=NRS)
    request.get_by_role("link", name=re.compile("^(Start|Continue)")).click()
    page.wait_for_url(re.compile(r".*/portal/questionnaires/pain-nrs\?timepoint=ad_hoc"))

    # Sending without an answer shows the message next to the question, with focus on it.
    page.get_by_role("button", name="Send my answers").click()
    error = page.locator("#q-pain-nrs-error")
    assert error.inner_text() == "Please answer this question."
    question = page.get_by_role("group", name=re.compile("Pain intensity"))
    assert question.get_attribute("aria-describedby") == "q-pain-nrs-error"

    # Keyboard: the scale is a radio group; choose 4 and send.
    question.get_by_label("4", exact=True).check()
    page.get_by_role("button", name="Send my answers").click()
    page.wait_for_url(re.compile(r".*/portal/responses/\d+$"))
    assert page.get_by_role("heading", level=1).inner_text().startswith("Thank you")
    assert page.locator(".score-value").first.inner_text() == "4"

    page.get_by_role("link", name="See my scores over time").click()
    chart = page.get_by_role("img", name=re.compile(NRS.split(" (")[0]))
    assert chart.count() >= 1
    page.goto("/portal")
    remaining = page.locator("li", has_text="Requested by your clinic").filter(has_text=NRS)
    assert remaining.count() == 0
    patient.close()
