"""The self-check in a real browser: answers in, an explained result out, errors by the field."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser


def _answer_everything_no(page, *, region: str = "knee", months: str = "6") -> None:
    page.goto("/self-check")
    page.get_by_label("Where is the pain?").select_option(region)
    page.get_by_label("How long have you had this pain?").fill(months)
    radios = page.locator("input[type=radio][value=no]:not([name='history.diabetes_controlled'])")
    for n in range(radios.count()):
        radios.nth(n).check()
    page.locator("input[name=pregnant][value=not_applicable]").check()


def test_a_visitor_gets_an_explained_result_and_how_to_book(page) -> None:
    _answer_everything_no(page)
    page.get_by_label("Do you know what it is called?").select_option("knee-osteoarthritis")
    page.get_by_role("button", name="See my result").click()
    result = page.locator("#result")
    result.wait_for()
    text = result.inner_text()
    assert "Candidate" in text
    assert "Prolotherapy may be an option worth discussing with a clinician." in text
    assert "not a diagnosis" in text
    assert "To book a consultation" in text and "Riverside Musculoskeletal Clinic" in text
    # app.js moves focus once the page has loaded; wait for it rather than race it.
    page.wait_for_function("document.activeElement && document.activeElement.id === 'result'")
    assert "This is information, not a diagnosis." in page.locator("main").inner_text()


def test_a_red_flag_tells_the_visitor_to_see_a_doctor_first(page) -> None:
    _answer_everything_no(page, region="lower_back")
    page.locator("input[name='red_flags.fever'][value=yes]").check()
    page.get_by_role("button", name="See my result").click()
    result = page.locator("#result")
    assert "Refer for medical assessment" in result.inner_text()
    assert "See a doctor about this pain first" in result.inner_text()
    result.locator("details.sources summary").first.click()
    assert result.locator("details.sources a").first.is_visible()


def test_missing_and_contradictory_answers_show_next_to_the_field(page) -> None:
    page.goto("/self-check")
    page.get_by_role("button", name="See my result").click()
    assert page.get_by_role("alert").is_visible()
    error = page.locator("#f-complaint-error")
    assert error.inner_text() == "Choose where the pain is."
    assert page.evaluate("document.activeElement.id") == "f-complaint"
    assert page.locator("#f-red_flags-fever-error").inner_text() == "Answer yes or no."

    _answer_everything_no(page)
    page.get_by_label("Sex assigned at birth").select_option("male")
    page.locator("input[name=pregnant][value=yes]").check()
    page.get_by_role("button", name="See my result").click()
    error = page.locator("#f-pregnant-error")
    assert "sex at birth" in error.inner_text().lower()
    assert page.locator("#result").count() == 0
    assert page.get_by_label("How long have you had this pain?").input_value() == "6"

    page.locator("input[name=pregnant][value=no]").check()
    page.get_by_role("button", name="See my result").click()
    assert page.locator("#result").is_visible()
